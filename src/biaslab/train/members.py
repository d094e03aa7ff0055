"""Mapping a per-member function over a stack: one vmap, vmap in chunks, or a plain loop.

``map_members`` is the one mapping and ``resolve_chunk`` the one rule that picks its chunk;
``Stack.map`` joins them for measures, the trainer for its step and evaluation.

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
from torch.utils._pytree import tree_flatten, tree_map

from .optim import unflatten

#: Largest buffer a CPU chunk may make. glibc serves allocations above its mmap threshold
#: (at most 32 MiB) with fresh mappings; half of that leaves room for fused temporaries.
CPU_CHUNK_BYTES = 16 * 2**20
#: A member whose largest buffer is above this already does enough work per op to hide the
#: per-op overhead that vmap amortizes, so on a CPU it runs in a plain loop: batched kernels
#: gain nothing there and some are slower (this CPU's fp32 bmm for [5120 x 64] @ [64 x 256] runs
#: at half the speed of a loop of mm; a vmapped linear is a bmm and a separate bias add where the
#: loop's is one addmm). Measured by benchmarks/bench_chunk_rule.py (docs/benchmarks.md, issue
#: 26): the loop's time / the vmap's per member-step, stacks of 4 and 8, five model families —
#: peaks of 3-80 KiB 0.95-2.34 (vmap faster in all but one), 108-256 KiB 0.92-1.30 (even or
#: vmap faster), 288 KiB to 5 MiB 0.61-1.01 (the loop faster, or even at 8 members up to
#: 768 KiB). Was 1 MiB (an earlier, narrower measurement).
CPU_LOOP_ABOVE_BYTES = 256 * 2**10
#: The threshold for forward-only maps (measures, evaluation), measured on its own: without a
#: backward pass and an optimizer update there is less per-op overhead to amortize, and this CPU's softmax over
#: short rows runs 3x slower per element once its input outgrows ~600 KB (a vmapped stack of 8
#: d 32 models at batch 256 makes 1.6 MB patterns). Measured on 8 members' forwards (ms per
#: member, whole vmap / loop): 12 KB peak 2.1 / 3.3, 80 KB 3.7 / 8.7, 160 KB 11.4 / 11.7,
#: 320 KB 32 / 24.
CPU_FORWARD_LOOP_ABOVE_BYTES = 256 * 2**10


#: ``chunk`` value that asks for the automatic rule (``resolve_chunk``).
AUTO = "auto"


def _member(tree, i):
    """Member (or slice of members) i of a tree of dicts, tuples and [M, ...] tensors; cheaper
    than a pytree map, which matters in a loop that runs once per member and step."""
    if isinstance(tree, torch.Tensor):
        return tree[i]
    if isinstance(tree, dict):
        return {k: _member(v, i) for k, v in tree.items()}
    return type(tree)(_member(v, i) for v in tree)


def _pick(args: tuple, dims: tuple, i):
    """Member (or slice) i of the arguments mapped over (dim 0); shared ones (None) as they are."""
    return tuple(a if d is None else _member(a, i) for a, d in zip(args, dims))


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


def _flat_rows(grads: list[dict]) -> dict:
    """Per-member gradient dicts -> [M, ...] tensors that are ``optim.unflatten``'s views of
    one [M, P] buffer, member i's gradients concatenated into row i (one copy, the values of
    ``torch.stack``)."""
    first = grads[0]
    flat = torch.empty((len(grads), sum(g.numel() for g in first.values())),
                       dtype=next(iter(first.values())).dtype, device=next(iter(first.values())).device)
    for i, g in enumerate(grads):
        torch.cat([t.reshape(-1) for t in g.values()], out=flat[i])
    return unflatten(flat, {k: v.expand(len(grads), *v.shape) for k, v in first.items()})


def _dims(in_dims, n_args: int) -> tuple:
    dims = (in_dims,) * n_args if in_dims is None or isinstance(in_dims, int) else tuple(in_dims)
    if any(d not in (0, None) for d in dims):
        raise ValueError(f"in_dims must be 0 (mapped) or None (shared), got {in_dims}")
    return dims


def _n_members(args, dims=None) -> int:
    mapped = args if dims is None else [a for a, d in zip(args, dims) if d == 0]
    return tree_flatten(mapped)[0][0].shape[0]


def map_members(fn, chunk: int | None, in_dims=0, grad: bool = False, wrap=None,
                eager_grad: bool = False):
    """THE way a per-member function runs over a stack: ``fn(*member_args)`` for every member.

    Arguments are trees (dicts, tuples) of tensors whose dim 0 is the member dim (``in_dims``
    0) or shared by all members (None; one entry per argument, or one value for all).
    ``chunk`` None: one vmap over the stack; k > 1: vmapped chunks of k members (k divides M, so
    all chunks have one shape); 1: a plain loop, one call per member, as a one-at-a-time loop
    would make (no vmap at all). Results are stacked along a new dim 0.

    ``grad=True`` maps ``(grads, value)`` of a scalar ``fn(params, *rest)`` instead (plain
    autograd in the loop; ``grad_and_value`` under vmap, which dynamo can trace when the step is
    compiled, or with ``eager_grad`` plain autograd of a vmapped chunk's summed losses, for a
    step that is never compiled: the eager CPU step). ``wrap`` (e.g. ``torch.compile``)
    wraps the per-chunk function, so a compiled chunk is compiled once and reused by every
    chunk; a wrapped chunk of 1 is a vmap of one.
    """
    if chunk == 1 and wrap is None:
        one = _autograd_value_and_grad(fn) if grad else fn

        def looped(*args):
            dims = _dims(in_dims, len(args))
            outs = [one(*_pick(args, dims, i)) for i in range(_n_members(args, dims))]
            if grad:  # gradients straight into one [M, P] buffer: the flat update reads it as is
                return _flat_rows([g for g, _ in outs]), torch.stack([v for _, v in outs])
            return _joined(outs, torch.stack)
        return looped
    if grad and eager_grad and wrap is None:
        whole = _vmapped_value_and_grad(fn, in_dims)
    else:
        whole = vmap(grad_and_value(fn) if grad else fn, in_dims=in_dims)
        whole = wrap(whole) if wrap else whole
    if chunk is None:
        return whole

    def chunked(*args):
        dims = _dims(in_dims, len(args))
        m = _n_members(args, dims)
        return _joined([whole(*_pick(args, dims, slice(i, i + chunk))) for i in range(0, m, chunk)],
                       torch.cat)
    return chunked


def _vmapped_value_and_grad(loss_fn, in_dims):
    """(grads, losses) of a chunk of members in eager mode: one vmapped forward, then plain
    autograd of the losses' sum. Members are independent, so d(sum)/d(member i's parameters) is
    member i's own gradient (each loss enters the sum with weight exactly 1). Not
    ``grad_and_value`` under vmap: its first call imports torch._dynamo (measured: 1 s of CPU and
    ~100 MiB of resident memory in every training process), and its wrapping costs per op.
    Only for steps that are never compiled: dynamo breaks its graph at ``autograd.grad``, while
    it traces ``grad_and_value``."""
    return _autograd_value_and_grad(vmap(loss_fn, in_dims=in_dims), summed=True)


def _autograd_value_and_grad(loss_fn, summed: bool = False):
    """(grads, loss) of one member with plain autograd: what a one-at-a-time loop does. With
    ``summed``, ``loss_fn`` returns a vector of losses and the gradients are of their sum."""
    def one(params, *rest):
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in params.items()}
            loss = loss_fn(leaves, *rest)
            grads = torch.autograd.grad(loss.sum() if summed else loss, list(leaves.values()),
                                        allow_unused=True)
        grads = {k: torch.zeros_like(leaves[k]) if g is None else g for k, g in zip(leaves, grads)}
        return grads, loss.detach()
    return one


class _PeakBuffer(TorchDispatchMode):
    """Records the largest tensor any op outputs."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # torch wraps a mode's __torch_dispatch__ in dynamo.disable unless told not to, and
        # that wrapper imports torch._dynamo on the first op: 2 s of CPU and ~200 MiB of
        # resident memory (sympy, dynamo's tables) in every process that trains a stack, for
        # a probe that never runs under torch.compile.
        return False

    def __init__(self):
        super().__init__()
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.peak = max(self.peak, t.numel() * t.element_size())
        return out


def peak_buffer_bytes(loss_fn, member_args: tuple, grad: bool = True,
                      shapes_only: bool = False) -> int:
    """Largest buffer one member's call makes (forward and backward with ``grad``; one probe
    call on the real arguments, no vmap).

    Real arguments, not meta copies: the rule probes only on a CPU, where one member's call
    costs one member-step of work, while the first op on a meta tensor runs torch's Python
    meta kernels, whose wrappers import torch._dynamo (measured: 2 s of CPU and ~200 MiB of
    resident memory added to every training process). Both give the same peak.

    ``shapes_only``: the arguments are made-up stand-ins (``Stack.forward_peak``'s zeros) whose
    values a model may reject (an all-padding row has no [CLS] position to read): when the call
    on them raises, the probe runs again on meta copies (shapes only, values never read).
    """
    call = _autograd_value_and_grad(loss_fn) if grad else loss_fn
    attempts = [member_args]
    if shapes_only:
        attempts.append(tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t,
                                 member_args))
    for attempt in attempts:
        mode = _PeakBuffer()
        try:
            with mode:
                call(*attempt)
            return mode.peak
        except (RuntimeError, NotImplementedError, TypeError, IndexError):
            if attempt is attempts[-1]:
                raise
    raise AssertionError("unreachable")


def auto_chunk(device: torch.device, n_members: int, peak_bytes: int,
               loop_above: int = CPU_LOOP_ABOVE_BYTES) -> int | None:
    """The chunk for a stack of ``n_members``: the whole stack (None) on an accelerator; on a
    CPU, a loop (1) for members with buffers over ``loop_above``, else the largest
    divisor of M whose chunk keeps every buffer under ``CPU_CHUNK_BYTES``."""
    if device.type != "cpu":
        return None
    if peak_bytes > loop_above:
        return 1
    return chunk_at_most(n_members, max(1, CPU_CHUNK_BYTES // max(peak_bytes, 1)))


def resolve_chunk(device: torch.device, n_members: int, chunk, peak_bytes,
                  backward: bool = True) -> int | None:
    """THE chunking rule, for training and every stacked measure alike.

    ``chunk``: ``AUTO`` (the rule below), None (one vmap over the whole stack) or k (the largest
    divisor of M not above k). ``AUTO``: the whole stack on an accelerator; on a CPU,
    ``auto_chunk`` on the largest buffer of one member, ``peak_bytes()`` (called only here),
    with the loop threshold of work with a ``backward`` pass or of forward-only work.
    """
    if chunk is None:
        return None
    if chunk != AUTO:
        return chunk_at_most(n_members, int(chunk))
    if device.type != "cpu":
        return None
    if n_members == 1:
        return 1  # one member needs no vmap and no probe
    loop_above = CPU_LOOP_ABOVE_BYTES if backward else CPU_FORWARD_LOOP_ABOVE_BYTES
    return auto_chunk(device, n_members, peak_bytes(), loop_above)


def chunk_at_most(n_members: int, most: int) -> int | None:
    """The largest divisor of M not above ``most`` (chunks of one shape); None = the whole stack,
    1 = a loop (also for a single member, which then needs no vmap at all)."""
    if most >= n_members:
        return None if n_members > 1 else 1
    return max(c for c in range(1, most + 1) if n_members % c == 0)
