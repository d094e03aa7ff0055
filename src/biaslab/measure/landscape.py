"""Loss-landscape measures: perturbation sharpness, Hessian-vector products, Hutchinson trace,
Lanczos top eigenvalues, and 1-D loss slices.

Every measure is written once as a pure *member* function of ``(params, buffers, batch, key)``
and run two ways:

* on one plain ``nn.Module`` -- its parameters are pulled out into a dict and the forward runs
  through ``torch.func.functional_call``;
* on a ``Stack``, passed in place of the model -- the same member function is mapped over the
  M members in ONE call (``lift.over_stack``, through ``Stack.map``), returning [M] (or
  [M, k]) tensors. Perturbation sharpness keeps a batched stack branch inside itself: with a
  scalar key it draws the shared noise once for the whole stack (bit-identical to, and faster
  than, a per-member map; tests/test_sharpness_noise.py).

Randomness comes from :mod:`biaslab.rng` (counter-based, vmappable): the noise of parameter
``name`` is keyed by (key, draw, crc32(name)), so it does not depend on which other parameters
are included, on the number of members, or on the device. A stacked call with a scalar key gives
every member the same noise (common random numbers, as the other stacked measures do): member i
of ``f(stack, ..., key=k)`` equals ``f(stack.member(i), ..., key=k)``. Pass an [M] key
tensor to give members their own noise.

Conventions: ``loss_fn(outputs, targets) -> scalar`` (a ``biaslab.train.losses`` name or
``Loss`` object is accepted too); ``batch = (x, y)``; stacked batches are shared (x [B, L]) or
per member (x [M, B, L], y [M, B]), inferred from ``x.dim() == 3`` unless ``shared`` is given.
``chunk`` bounds how many draws / probes / alphas one vmap evaluates at once (memory);
``member_chunk`` is ``Stack.map``'s chunk over members (None: the automatic rule, which on a
CPU maps cache-sized chunks or loops over members with large buffers).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.func import vmap

from .. import rng
from .lift import is_stack

Batch = tuple[torch.Tensor, torch.Tensor]


from .param_tools import (as_batches, as_key, as_loss_fn, batch_dim, chunk_rule, exclusions,
                          included_names, module_fn, name_salt, params_device)


# -- perturbation sharpness ---------------------------------------------------------------------
def noise_plan(params: dict, names: Sequence[str], member_dim: bool = False) -> dict:
    """What ``flat_normal`` needs to draw the noise of parameters ``names`` in one go.

    ``salt`` [K]: each parameter's salt; ``sizes``: each parameter's element count (ints);
    ``counter`` [P] (int32): each flat element's index inside its parameter. ``member_dim``:
    the tensors of ``params`` carry a leading member dim (a Stack's).
    """
    dev = params_device(params)
    sizes = [params[n][0].numel() if member_dim else params[n].numel() for n in names]
    counter = torch.cat([torch.arange(n, dtype=torch.int32, device=dev) for n in sizes]) \
        if sizes else torch.zeros(0, dtype=torch.int32, device=dev)
    salt = torch.tensor([name_salt(n) for n in names], dtype=torch.int64, device=dev)
    return {"salt": salt, "sizes": sizes, "counter": counter}


def _int32(t: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2^32) as int32 with the same 32 bits."""
    return (t - ((t >> 31) << 32)).to(torch.int32)


def _hash32_(x: torch.Tensor) -> torch.Tensor:
    """``rng.hash32`` in place on an int32 tensor, the same 32 bits: products wrap modulo 2^32,
    the masks make the arithmetic shifts logical. Half the memory traffic of the int64 version,
    native 32-bit multiplies and no fresh buffers: 2.5x faster on a CPU."""
    x ^= (x >> 16).bitwise_and_(0xFFFF)
    x *= 0x7FEB352D
    x ^= (x >> 15).bitwise_and_(0x1FFFF)
    x *= 0x846CA68B - (1 << 32)
    x ^= (x >> 16).bitwise_and_(0xFFFF)
    return x


def _spread(per_param: torch.Tensor, sizes: list) -> torch.Tensor:
    """[..., K] -> [..., P]: each parameter's value repeated over its elements (expand + cat:
    5x faster on a CPU than index_select along the last dim)."""
    return torch.cat([v.unsqueeze(-1).expand(*v.shape, n)
                      for v, n in zip(per_param.unbind(-1), sizes)], -1)


def flat_normal(key: torch.Tensor, plan: dict, dtype) -> torch.Tensor:
    """The noise of every planned parameter, flattened in plan order: [..., P] for keys [...].

    Bit for bit ``cat([rng.normal(rng.derive(key, name_salt(n)), shape_n) for n in names])``: the
    same keys, counters and Box-Muller formula, but one set of elementwise ops over all P
    elements instead of ~50 small ops per parameter, with the per-element hash in int32 and
    in place (fresh buffers of this size are page-faulted in on every call: a third of the
    noise's CPU time was system time).
    """
    if not plan["sizes"]:
        return torch.zeros(*key.shape, 0, dtype=dtype, device=key.device)
    pkeys = rng.derive(key.unsqueeze(-1), plan["salt"])  # [..., K] one key per parameter
    # Both uniform streams (derive(k, 1), derive(k, 2)) in one [2, ..., P] tensor: half the ops.
    streams = torch.arange(1, 3, device=pkeys.device).view(2, *([1] * pkeys.dim()))
    k = rng.derive(pkeys.unsqueeze(0), streams)  # [2, ..., K]
    # rng.bits32 of each element: hash32(hash32(counter + k * 0x85EBCA77) ^ (k >> 3))
    bits = _spread(_int32((k * 0x85EBCA77) & 0xFFFFFFFF), plan["sizes"])
    bits += plan["counter"]
    bits = _hash32_(bits)
    bits ^= _spread(_int32(k >> 3), plan["sizes"])
    bits = _hash32_(bits)
    bits >>= 8  # rng.uniform: the top 24 bits, offset by half a step
    u = bits.bitwise_and_(0xFFFFFF).to(torch.float32)
    del bits
    u += 0.5
    u /= float(1 << 24)
    u1, u2 = u.unbind(0)  # rng.normal: sqrt(-2 log u1) cos(2 pi u2)
    u1.log_().mul_(-2.0).sqrt_()
    return u1.mul_(u2.mul_(2.0 * math.pi).cos_()).to(dtype)


def draw_noise(key: torch.Tensor, plan: dict, draws: int, sigma: float, dtype) -> torch.Tensor:
    """sigma * eps_r for the draws r < ``draws`` of one batch, [draws, P]: eps_r is
    ``flat_normal`` of key derive(key, r). A function of the key and the plan only, so members
    that share a key share it (one draw for the whole stack)."""
    dkeys = rng.derive(key, torch.arange(draws, device=key.device))
    return sigma * flat_normal(dkeys, plan, dtype)


def _dtype(params: dict) -> torch.dtype:
    return next(iter(params.values())).dtype


def _flat(params: dict, names: Sequence[str]) -> torch.Tensor:
    if not names:  # nothing perturbed (e.g. everything excluded): the clean loss R times
        return next(iter(params.values())).new_zeros(0)
    return torch.cat([params[n].reshape(-1) for n in names])


def _views(params: dict, names: Sequence[str], flat: torch.Tensor) -> list:
    """Views [..., *shape] of ``flat`` [..., P] (plan order), one per name. One ``split`` call:
    slicing parameter by parameter cost 0.5 ms per draw, a tenth of a small model's forward."""
    if not names:
        return []
    lead = flat.shape[:-1]
    return [piece.view(*lead, *params[n].shape)
            for n, piece in zip(names, flat.split([params[n].numel() for n in names], -1))]


def _with_flat(params: dict, names: Sequence[str], flat: torch.Tensor) -> dict:
    """``params`` with ``names`` replaced by views of ``flat`` [P] (plan order)."""
    return {**params, **dict(zip(names, _views(params, names, flat)))}


def _batch_losses(apply, loss_fn, params, buffers, x, y, noise, names, chunk, clean=None):
    """[mean_r L(theta + noise_r), L(theta)] on one batch; ``noise`` [R, P] (sigma included);
    ``clean``: L(theta) if the caller has it already (saves a forward). Kept apart, so that
    the mean over batches adds them in the order it always has (total + noisy - clean)."""
    flat = _flat(params, names)
    if chunk == 1:  # one plain forward per draw, as a one-model loop makes them; the
        # parameters of all draws cut out of one [R, P] tensor at once
        per_draw = [t.unbind(0) for t in _views(params, names, flat + noise)]
        noisy = torch.stack([loss_fn(apply({**params, **dict(zip(names, (t[r] for t in per_draw)))},
                                           buffers, x), y)
                             for r in range(noise.shape[0])], -1).mean(-1)
    else:
        noisy = vmap(lambda nz: loss_fn(apply(_with_flat(params, names, flat + nz), buffers, x), y),
                     chunk_size=chunk)(noise).mean()
    return torch.stack([noisy, loss_fn(apply(params, buffers, x), y) if clean is None else clean])


def _batch_key(key: torch.Tensor, b: int, same_noise: bool) -> torch.Tensor:
    # Fresh noise per batch (the reference reused one draw for every batch: same_noise).
    return key if same_noise else rng.derive(key, b)


def perturbation_sharpness(model: nn.Module, loss_fn, batch, sigma: float = 0.02,
                           draws: int = 10, key=None, label_scale: float = 1.0,
                           exclude: Sequence[str] | None = None, same_noise: bool = False,
                           chunk: int | None = None, shared: bool | None = None,
                           member_chunk=None, clean: torch.Tensor | None = None) -> torch.Tensor:
    """Hahn & Rofin's sharpness: mean_r L(theta + eps_r) - L(theta), eps_r ~ N(0, sigma^2 I).

    Every parameter is perturbed except those whose name starts with a prefix in ``exclude``
    (default: the positional embeddings, by their role, as in the paper). ``batch`` may be a
    list of batches: the result is the mean over batches, each with fresh noise
    (``same_noise=True`` reuses one set of draws for every batch, the reference code's quirk).
    ``label_scale`` multiplies the result: 4.0 turns MSE on {0,1} targets into MSE on {-1,+1}
    labels, the paper's plotted scale. Near a minimum the expectation is sigma^2/2 tr(H) over
    the perturbed parameters. Returns a scalar; a Stack: every member -> [M] (see
    ``_stack_sharpness`` for ``shared``, ``member_chunk`` and ``clean``).
    """
    if is_stack(model):
        return _stack_sharpness(model, loss_fn, batch, sigma, draws, key, label_scale, exclude,
                                same_noise, shared, chunk, member_chunk, clean)
    apply, params, buffers = module_fn(model)
    k = as_key(key, params_device(params))
    names = included_names(params, exclusions(model, exclude))
    bs = as_batches(batch)
    plan, dtype, loss = noise_plan(params, names), _dtype(params), as_loss_fn(loss_fn)
    dchunk = _draw_chunk(chunk, k.device, draws,
                         lambda: _forward_peak(apply, params, buffers, bs[0][0]))
    total = 0.0
    with torch.no_grad():
        for b, (x, y) in enumerate(bs):
            noise = draw_noise(_batch_key(k, b, same_noise), plan, draws, sigma, dtype)
            noisy, c = _batch_losses(apply, loss, params, buffers, x, y, noise, names, dchunk)
            total = total + noisy - c
    return total / len(bs) * label_scale


def _forward_peak(apply, params: dict, buffers: dict, x: torch.Tensor) -> int:
    """Largest buffer of one forward of a plain module on x (one probe call on x)."""
    from ..train.members import peak_buffer_bytes

    return peak_buffer_bytes(apply, (params, buffers, x), grad=False)


def _draw_chunk(chunk, device: torch.device, draws: int, forward_peak) -> int | None:
    """Draws per vmapped call: ``chunk``, or (None) the chunking rule applied to the draws as
    to members: all at once on an accelerator; on a CPU a plain loop over draws whose forward
    is large (what a one-model loop does), cache-sized vmapped chunks otherwise."""
    from ..train.members import AUTO, resolve_chunk

    return resolve_chunk(device, draws, AUTO if chunk is None else chunk, forward_peak,
                         backward=False)


def _stack_sharpness(stack, loss_fn, batches, sigma, draws, key, label_scale, exclude, same_noise,
                     shared, chunk, member_chunk, clean) -> torch.Tensor:
    """``perturbation_sharpness`` of every member of ``stack`` -> [M] (``Stack.map``;
    ``member_chunk`` and ``chunk`` None = the automatic chunking rule over members and over
    draws). ``clean`` [M, len(batches)]: the members' clean losses on the batches, when the
    caller computed them already (e.g. in the forward that gave its outputs and activations).

    The noise of a batch is drawn once for all perturbed parameters (``flat_normal``): once for
    the whole stack when the key is a scalar (common random numbers), else inside each member's
    call from its own key. The members are mapped once per batch, so that shared noise is one
    [draws, P] tensor at a time. This batching (one draw of the noise for all members) is
    what a per-member ``over_stack`` cannot express, so it is the measure's stack branch.
    """
    bs = as_batches(batches)
    names = included_names(stack.params, exclusions(stack, exclude))
    loss = as_loss_fn(loss_fn)
    plan = noise_plan(stack.params, names, member_dim=True)
    dtype = _dtype(stack.params)
    k = as_key(key, stack.device)
    own = k.dim() > 0  # one key per member: each member draws its own noise

    def member(p, buf, x, y, noise, c):
        if own:  # ``noise`` is the member's batch key
            noise = draw_noise(noise, plan, draws, sigma, dtype)
        return _batch_losses(stack.apply, loss, p, buf, x, y, noise, names, dchunk, c)

    x0 = bs[0][0]
    # the probe's input is one member's batch: per-member batches (batch_dim 0) lose their M
    fpeak = stack.forward_peak(tuple(x0.shape[1:] if batch_dim(bs[0], shared) == 0 else x0.shape),
                               x0.dtype)
    dchunk = _draw_chunk(chunk, stack.device, draws, lambda: fpeak)
    peak = fpeak * (draws if dchunk is None else dchunk)  # the draws one call batches
    total = 0.0
    with torch.no_grad():
        for b, (x, y) in enumerate(bs):
            bkey = _batch_key(k, b, same_noise)
            noise = bkey if own else draw_noise(bkey, plan, draws, sigma, dtype)
            xd = batch_dim((x, y), shared)
            dims = (0, 0, xd, xd, 0 if own else None, None if clean is None else 0)
            noisy, c = stack.map(member, stack.params, stack.buffers, x, y, noise,
                                 None if clean is None else clean[:, b], in_dims=dims,
                                 chunk=chunk_rule(member_chunk), peak_bytes=peak).unbind(1)
            total = total + noisy - c
    return total / len(bs) * label_scale


# The curvature measures live in curvature.py; re-exported so ``measure.landscape`` stays the
# one name for the whole family.
from .curvature import (composite_layer_norm, random_direction, hessian_top_eigenvalues,  # noqa: E402,F401
                        hessian_trace, hvp, loss_slice)  # noqa: F401


def _register() -> None:
    from ..registry import MEASURES

    for fn in (perturbation_sharpness, hessian_trace, hessian_top_eigenvalues, loss_slice):
        fn.lifts_stacks = True  # takes a Stack in place of the model
    MEASURES.add("perturbation_sharpness", perturbation_sharpness,
                 "mean loss increase under N(0, sigma^2) weight noise (Hahn & Rofin sharpness)")
    MEASURES.add("hessian_trace", hessian_trace,
                 "Hutchinson estimate of the loss-Hessian trace (Rademacher probes, fwd-over-rev)")
    MEASURES.add("hessian_top_eigenvalues", hessian_top_eigenvalues,
                 "largest loss-Hessian eigenvalues by Lanczos on Hessian-vector products")
    MEASURES.add("loss_slice", loss_slice,
                 "1-D loss along a random filter-normalised direction (Li et al. 2018)")


_register()
