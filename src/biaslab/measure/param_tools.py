"""Plumbing shared by the loss-landscape measures (``landscape.py``: sharpness; ``curvature.py``:
Hessian-vector products, traces, top eigenvalues, loss slices): parameter dicts of a module,
keys, batches of a stack, flat views of parameter trees. Public so that each measure module
imports it by name rather than another module's private helpers."""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call

from .. import rng
from ..models.roles import parameter_roles

Batch = tuple[torch.Tensor, torch.Tensor]


def as_loss_fn(loss_fn) -> Callable:
    """Accept a callable, a ``Loss`` object, or a loss name."""
    if isinstance(loss_fn, str):
        from ..train.losses import get_loss

        return get_loss(loss_fn).fn
    return getattr(loss_fn, "fn", loss_fn)


def module_fn(model: nn.Module):
    """A plain module as (apply(params, buffers, x), params, buffers) with detached tensors; a
    stack's member (``lift.StackMember``) as its stack's ``apply`` and its tensors."""
    if hasattr(model, "stack") and not isinstance(model, nn.Module):
        return model.stack.apply, model.params, model.buffers
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def apply(p, b, x):
        return functional_call(model, (p, b), (x,))

    return apply, params, buffers


def params_device(params: dict) -> torch.device:
    return next(iter(params.values())).device


def included_names(params: dict, exclude: Sequence[str]) -> list[str]:
    """Names of the parameters a measure acts on (those not starting with an excluded prefix)."""
    return [n for n in params if not n.startswith(tuple(exclude))]


def name_salt(name: str) -> int:
    """A stable per-parameter salt, so a parameter's noise ignores which others are included."""
    return zlib.crc32(name.encode())


def as_key(key, device) -> torch.Tensor:
    """An int64 key tensor. ``None`` draws a seed from torch's global generator: fresh noise on
    every call, reproducible under ``torch.manual_seed``; pass a key to record it."""
    if key is None:
        key = int(torch.randint(0, 2**31 - 1, ()))
    if isinstance(key, torch.Tensor):
        return key.to(device=device, dtype=torch.int64)
    return rng.key_of(key, device)


def stack_keys(stack, key) -> torch.Tensor:
    """[M] keys: a scalar key is shared by all members (common random numbers)."""
    k = as_key(key, stack.device)
    return k.expand(stack.M).contiguous() if k.dim() == 0 else k


def as_batches(batch) -> list[Batch]:
    """One (x, y) batch or a list of them -> list of (x, y)."""
    if isinstance(batch[0], torch.Tensor):
        return [tuple(batch)]
    return [tuple(b) for b in batch]


def batch_dim(batch: Batch, shared: bool | None):
    """``Stack.map`` in_dim of a stacked batch: None (shared by members) or 0 (one per member)."""
    per_member = batch[0].dim() == 3 if shared is None else not shared
    return 0 if per_member else None


def split_batches(batches: list[Batch], shared: bool | None):
    """(per-member batches, shared batches, order): ``Stack.map`` maps whole arguments, so the
    batches of one call are split by kind; ``order`` restores their sequence."""
    mapped, common, order = [], [], []
    for x, y in batches:
        per_member = x.dim() == 3 if shared is None else not shared
        (mapped if per_member else common).append((x, y))
        order.append((per_member, len(mapped if per_member else common) - 1))
    return mapped, common, order


def in_order(mapped: list, common: list, order: list) -> list:
    return [mapped[i] if per_member else common[i] for per_member, i in order]


def chunk_rule(member_chunk):
    """A measure's ``member_chunk`` as a ``Stack.map`` chunk: None = the automatic rule."""
    from ..train.members import AUTO

    return AUTO if member_chunk is None else member_chunk


def exclusions(model_or_stack, exclude: Sequence[str] | None) -> tuple:
    """``exclude``, or by default the positional embeddings (by their role)."""
    if exclude is not None:
        return tuple(exclude)
    roles = getattr(model_or_stack, "roles", None)
    if roles is None:
        roles = parameter_roles(model_or_stack)
    return roles.position_embeddings


def rademacher(key, shape, dtype):
    return ((rng.bits32(key, shape) & 1) * 2 - 1).to(dtype)


def flatten_tree(tree: dict) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def unflatten_tree(vec: torch.Tensor, like: dict) -> dict:
    out, i = {}, 0
    for n, t in like.items():
        out[n] = vec[i:i + t.numel()].view_as(t)
        i += t.numel()
    return out
