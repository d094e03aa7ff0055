"""Mapping a per-member function over a stack: one vmap, vmap in chunks, or a plain loop.

On a GPU one vmap over the whole stack is the fast path. On a CPU it is not: a stack of 64 tiny
models makes activations of hundreds of MB, and buffers that large are fresh ``mmap``s that the
kernel page-faults in on every step (measured: half of a step's wall time was system time, and a
stack of 64 ran at 0.4x the one-at-a-time loop). Mapping in chunks keeps each chunk's buffers
small and in cache; a chunk of one runs without vmap at all, i.e. exactly the one-at-a-time
computation with the stack's single optimizer update.
"""

from __future__ import annotations

import torch
from torch.func import grad_and_value, vmap
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

#: Largest buffer a CPU chunk may make. glibc serves allocations above its mmap threshold
#: (at most 32 MiB) with fresh mappings; half of that leaves room for fused temporaries.
CPU_CHUNK_BYTES = 16 * 2**20
#: A member whose largest buffer is above this already does enough work per op to hide the
#: per-op overhead that vmap amortizes, so on a CPU it runs in a plain loop: batched kernels
#: gain nothing there and some are slower (this CPU's fp32 bmm for [5120 x 64] @ [64 x 256] runs
#: at half the speed of a loop of mm). Measured (docs/benchmarks.md): d 16 models gain 3x from
#: vmap; a d 64, batch 256 model (5 MiB buffers) ran at 0.9x vmapped and 0.98x looped.
CPU_LOOP_ABOVE_BYTES = 2**20


def _member(tree, i):
    """Member (or slice of members) i of a tree of dicts, tuples and [M, ...] tensors; cheaper
    than a pytree map, which matters in a loop that runs once per member and step."""
    if isinstance(tree, torch.Tensor):
        return tree[i]
    if isinstance(tree, dict):
        return {k: _member(v, i) for k, v in tree.items()}
    return type(tree)(_member(v, i) for v in tree)


def _joined(trees: list, join):
    """The trees' tensors joined leaf by leaf (``torch.stack`` for members, ``torch.cat`` for
    chunks); one tree needs no copy."""
    first = trees[0]
    if isinstance(first, torch.Tensor):
        if len(trees) == 1:
            return first.unsqueeze(0) if join is torch.stack else first
        return join(trees)
    if isinstance(first, dict):
        return {k: _joined([t[k] for t in trees], join) for k in first}
    return type(first)(_joined([t[j] for t in trees], join) for j in range(len(first)))


def _n_members(args) -> int:
    return tree_flatten(args)[0][0].shape[0]


def _loop_map(fn):
    def mapped(*args):
        return _joined([fn(*_member(args, i)) for i in range(_n_members(args))], torch.stack)
    return mapped


def _chunk_map(fn, chunk: int):
    """``fn`` (already mapped over a leading dim) applied to consecutive chunks of ``chunk``."""
    def mapped(*args):
        m = _n_members(args)
        return _joined([fn(*_member(args, slice(i, i + chunk))) for i in range(0, m, chunk)],
                       torch.cat)
    return mapped


def member_map(fn, chunk: int | None):
    """``fn`` over the leading dim of every argument: whole (``None``), in chunks, or a loop (1)."""
    if chunk is None:
        return vmap(fn)
    return _loop_map(fn) if chunk == 1 else _chunk_map(vmap(fn), chunk)


def _autograd_value_and_grad(loss_fn):
    """(grads, loss) of one member with plain autograd: what a one-at-a-time loop does."""
    def one(params, *rest):
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            loss = loss_fn(leaves, *rest)
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        grads = {k: torch.zeros_like(leaves[k]) if g is None else g for k, g in zip(leaves, grads)}
        return grads, loss.detach()
    return one


def member_grad_map(loss_fn, chunk: int | None, wrap=None):
    """(grads, losses) of ``loss_fn(params, *rest)`` for every member of a stack.

    ``chunk`` None: one vmap over the stack. Otherwise the stack is cut into chunks of
    ``chunk`` members (a divisor of M, so all chunks have one shape), each chunk one vmap, or,
    for chunk 1 in eager mode, one plain autograd call per member as a one-at-a-time loop
    would make. ``wrap`` (e.g. ``torch.compile``) is applied to the per-chunk function, so a
    compiled chunk is compiled once and reused by every chunk.
    """
    if chunk == 1 and wrap is None:
        return _loop_map(_autograd_value_and_grad(loss_fn))
    fn = vmap(grad_and_value(loss_fn))
    fn = wrap(fn) if wrap else fn
    return fn if chunk is None else _chunk_map(fn, chunk)


class _PeakBuffer(TorchDispatchMode):
    """Records the largest tensor any op outputs."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.peak = max(self.peak, t.numel() * t.element_size())
        return out


def peak_buffer_bytes(loss_fn, member_args: tuple) -> int:
    """Largest buffer one member's forward and backward make (one probe call, no vmap)."""
    mode = _PeakBuffer()
    with mode:
        _autograd_value_and_grad(loss_fn)(*member_args)
    return mode.peak


def auto_chunk(device: torch.device, n_members: int, peak_bytes: int) -> int | None:
    """The chunk for a stack of ``n_members``: the whole stack (None) on an accelerator; on a
    CPU, a loop (1) for members with buffers over ``CPU_LOOP_ABOVE_BYTES``, else the largest
    divisor of M whose chunk keeps every buffer under ``CPU_CHUNK_BYTES``."""
    if device.type != "cpu":
        return None
    if peak_bytes > CPU_LOOP_ABOVE_BYTES:
        return 1
    return chunk_at_most(n_members, max(1, CPU_CHUNK_BYTES // max(peak_bytes, 1)))


def chunk_at_most(n_members: int, most: int) -> int | None:
    """The largest divisor of M not above ``most`` (chunks of one shape); None = the whole stack,
    1 = a loop (also for a single member, which then needs no vmap at all)."""
    if most >= n_members:
        return None if n_members > 1 else 1
    return max(c for c in range(1, most + 1) if n_members % c == 0)
