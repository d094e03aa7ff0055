"""Lifting a per-member measure over a stack: a measure is written once, for one model.

A ``Stack`` is a model with a leading member axis (the Equinox-ensemble idea). ``over_stack``
runs a measure written for one model on every member, through ``Stack.map`` (the one mapping:
one vmap on an accelerator; on a CPU cache-sized vmapped chunks or a plain loop, by the
chunking rule of ``train/members.py``), and stacks its results along a new dim 0. Each call
sees its member as a ``StackMember``: callable like the module (``member(x, acts=...)``), with
the member's ``params``, ``buffers`` and the stack's ``roles`` and ``task``.

``@per_member`` makes a measure ``fn(model, ...)`` accept a stack in place of the model (then
``fn(stack, ...)`` is ``over_stack(fn, stack, ...)``, every other argument shared by the
members). A measure whose stack form needs more -- inputs per member, or a batched fast path
that a per-member map cannot express -- tests ``is_stack`` itself and keeps that branch inside
the one measure, never as a second public function.

A dict of stacked parameters ([M, ...] tensors, no module) lifts too: the member is then its
parameter dict.
"""

from __future__ import annotations

import functools

import torch
from torch import nn
from torch.func import functional_call

from ..train.members import AUTO, map_members, resolve_chunk


def is_stack(obj) -> bool:
    """Duck-typed, so a measure needs no import of the ``Stack`` class."""
    return all(hasattr(obj, a) for a in ("params", "buffers", "base", "forward", "members"))


class MethodCall(nn.Module):
    """Calls another method of a module through ``functional_call`` (which only calls forward)."""

    def __init__(self, base: nn.Module, method: str):
        super().__init__()
        self.base = base
        self.method = method

    def forward(self, *args):
        return getattr(self.base, self.method)(*args)


class StackMember:
    """One member of a stack inside ``Stack.map``: its forward, parameters and buffers."""

    def __init__(self, stack, params: dict, buffers: dict):
        self.stack, self.params, self.buffers = stack, params, buffers

    def __call__(self, x: torch.Tensor, acts: bool = False):
        return self.stack.apply(self.params, self.buffers, x, acts)

    def __getattr__(self, name: str):
        """Another method of the module (e.g. ``embed``, ``forward_embedded``) on this member."""
        base = self.__dict__["stack"].base
        if name.startswith("_") or not callable(getattr(type(base), name, None)):
            raise AttributeError(name)
        call = MethodCall(base, name)
        tensors = ({"base." + k: v for k, v in self.params.items()},
                   {"base." + k: v for k, v in self.buffers.items()})
        return lambda *args: functional_call(call, tensors, args)

    @property
    def roles(self):
        return self.stack.roles

    @property
    def task(self):
        return self.stack.task

    @property
    def device(self) -> torch.device:
        return self.stack.device


def _dims(in_dims, n: int) -> tuple:
    return tuple(in_dims) if isinstance(in_dims, (tuple, list)) else (in_dims,) * n


def over_stack(fn, stack, *args, in_dims=None, chunk=AUTO, peak_bytes=None, **kwargs):
    """``fn(member, *args, **kwargs)`` for every member of ``stack``, stacked along dim 0.

    ``stack``: a ``Stack`` (members are ``StackMember``s) or a dict of [M, ...] parameter
    tensors (members are their parameter dicts). ``in_dims``: for each of ``args``, 0 (dim 0
    is the member dim: each member gets its own slice) or None (shared; the default for all);
    keyword arguments are always shared. ``chunk`` and ``peak_bytes`` as in ``Stack.map``:
    "auto" (the chunking rule), None (one vmap), k (chunks of at most k; 1 = a plain loop).
    """
    dims = _dims(in_dims, len(args))
    if len(dims) != len(args):
        raise ValueError(f"in_dims names {len(dims)} arguments, the call has {len(args)}")
    if isinstance(stack, dict):
        first = next(iter(stack.values()))
        n = first.shape[0]
        c = resolve_chunk(first.device, n, chunk, lambda: int(peak_bytes or 0), backward=False)
        return map_members(lambda p, *a: fn(p, *a, **kwargs), c, in_dims=(0, *dims))(stack, *args)
    return stack.map(lambda p, b, *a: fn(StackMember(stack, p, b), *a, **kwargs),
                     stack.params, stack.buffers, *args, in_dims=(0, 0, *dims), chunk=chunk,
                     peak_bytes=peak_bytes)


def per_member(fn):
    """``fn(model, ...)`` that also takes a stack: ``fn(stack, ...)`` = ``over_stack(fn, stack,
    ...)`` with every other argument shared (the keywords ``in_dims``, ``chunk`` and
    ``peak_bytes`` go to ``over_stack``). ``fn.lifts_stacks`` marks it for generic runners."""
    @functools.wraps(fn)
    def either(model_or_stack, *args, **kwargs):
        if is_stack(model_or_stack):
            return over_stack(fn, model_or_stack, *args, **kwargs)
        return fn(model_or_stack, *args, **kwargs)
    either.lifts_stacks = True
    return either


def forward_of(model_or_stack):
    """``(forward, device)``: a stack's ``forward`` (every member in one ``Stack.map``, outputs
    [M, ...]) and its device, or a model / callable as it is (device None). For measures that
    broadcast over leading member dims of the outputs, so a stack needs no per-member map."""
    if is_stack(model_or_stack):
        return model_or_stack.forward, model_or_stack.device
    return model_or_stack, None
