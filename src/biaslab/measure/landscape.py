"""Loss-landscape measures: perturbation sharpness, Hessian-vector products, Hutchinson trace,
Lanczos top eigenvalues, and 1-D loss slices.

Every measure is written once as a pure *member* function of ``(params, buffers, batch, key)``
and run two ways:

* on one plain ``nn.Module`` -- its parameters are pulled out into a dict and the forward runs
  through ``torch.func.functional_call``;
* on a ``Stack`` -- the same member function is mapped over the M members in ONE call
  (``*_stack`` variants, through ``Stack.map``), returning [M] (or [M, k]) tensors.

Randomness comes from :mod:`biaslab.rng` (counter-based, vmappable): the noise of parameter
``name`` is keyed by (key, draw, crc32(name)), so it does not depend on which other parameters
are included, on the number of members, or on the device. A stacked call with a scalar key gives
every member the same noise (common random numbers, as the other stacked measures do): member i
of ``f_stack(stack, ..., key=k)`` equals ``f(stack.member(i), ..., key=k)``. Pass an [M] key
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

Batch = tuple[torch.Tensor, torch.Tensor]


from .param_tools import (as_batches, as_key, as_loss_fn, chunk_rule, exclusions, in_order,
                          included_names, module_fn, name_salt, params_device, split_batches,
                          stack_keys)


# -- perturbation sharpness ---------------------------------------------------------------------
def noise_plan(params: dict, names: Sequence[str], member_dim: bool = False) -> dict:
    """What ``flat_normal`` needs to draw the noise of parameters ``names`` in one go.

    ``salt`` [K]: each parameter's salt; ``index`` [P]: the parameter of each flat element;
    ``counter`` [P]: the element's index inside its parameter. ``member_dim``: the tensors of
    ``params`` carry a leading member dim (a Stack's). Integer tensors only, so a stacked
    measure passes the plan as a shared argument.
    """
    dev = params_device(params)
    sizes = [params[n][0].numel() if member_dim else params[n].numel() for n in names]
    size_t = torch.tensor(sizes, dtype=torch.int64, device=dev)
    index = torch.repeat_interleave(torch.arange(len(names), device=dev), size_t)
    starts = torch.cumsum(size_t, 0) - size_t
    counter = torch.arange(int(size_t.sum()), device=dev) - starts[index]
    salt = torch.tensor([name_salt(n) for n in names], dtype=torch.int64, device=dev)
    return {"salt": salt, "index": index, "counter": counter}


def flat_normal(key: torch.Tensor, plan: dict, dtype) -> torch.Tensor:
    """The noise of every planned parameter, flattened in plan order: [..., P] for keys [...].

    Bit for bit ``cat([rng.normal(rng.derive(key, name_salt(n)), shape_n) for n in names])``: the
    same keys, counters and Box-Muller formula, but one set of elementwise ops over all P
    elements instead of ~50 small ops per parameter (which cost a third of a measurement).
    """
    pkeys = rng.derive(key.unsqueeze(-1), plan["salt"])  # [..., K] one key per parameter
    # Both uniform streams (derive(k, 1), derive(k, 2)) in one [2, ..., P] tensor: half the ops.
    streams = torch.arange(1, 3, device=pkeys.device).view(2, *([1] * pkeys.dim()))
    k = rng.derive(pkeys.unsqueeze(0), streams)  # [2, ..., K]
    # each element's stream key (index_select: 4x faster than [] indexing on a CPU)
    k = k.index_select(-1, plan["index"])
    bits = rng.hash32(rng.hash32(plan["counter"] + k * 0x85EBCA77) ^ (k >> 3))
    u = ((bits >> 8).to(torch.float32) + 0.5) / float(1 << 24)
    u1, u2 = u.unbind(0)
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def _flat(params: dict, names: Sequence[str]) -> torch.Tensor:
    if not names:  # nothing perturbed (e.g. everything excluded): the clean loss R times
        return next(iter(params.values())).new_zeros(0)
    return torch.cat([params[n].reshape(-1) for n in names])


def _with_flat(params: dict, names: Sequence[str], flat: torch.Tensor) -> dict:
    """``params`` with ``names`` replaced by views of ``flat`` (plan order)."""
    out, i = dict(params), 0
    for n in names:
        t = params[n]
        out[n] = flat[i:i + t.numel()].view(t.shape)
        i += t.numel()
    return out


def _noisy_loss_mean(apply, loss_fn, params, buffers, x, y, key, sigma, draws, names, plan,
                     chunk):
    """mean_r L(theta + sigma eps_r) on one batch, eps_r keyed by (key, r, parameter)."""
    flat = _flat(params, names)

    def noisy_loss(dkey):
        noisy = flat + sigma * flat_normal(dkey, plan, flat.dtype)
        return loss_fn(apply(_with_flat(params, names, noisy), buffers, x), y)

    dkeys = rng.derive(key, torch.arange(draws, device=x.device))
    if chunk == 1:  # one plain forward per draw, as a one-model loop makes them; the noise of
        # all draws in one pass (per-op overhead was half of drawing it draw by draw)
        noisy = flat + sigma * flat_normal(dkeys, plan, flat.dtype)
        return torch.stack([loss_fn(apply(_with_flat(params, names, nz), buffers, x), y)
                            for nz in noisy.unbind(0)], -1).mean(-1)
    return vmap(noisy_loss, chunk_size=chunk)(dkeys).mean()


def _sharpness_member(apply, loss_fn, params, buffers, batches, key, sigma, draws, names,
                      same_noise, chunk, plan, clean=None):
    """mean over batches of [mean_r L(theta + eps_r) - L(theta)] for one member; ``clean``:
    the clean losses [len(batches)] if the caller has them already (saves a forward each)."""
    total = 0.0
    for b, (x, y) in enumerate(batches):
        # Fresh noise per batch (the reference reused one draw for every batch: same_noise).
        bkey = key if same_noise else rng.derive(key, b)
        noisy = _noisy_loss_mean(apply, loss_fn, params, buffers, x, y, bkey, sigma, draws,
                                 names, plan, chunk)
        c = loss_fn(apply(params, buffers, x), y) if clean is None else clean[b]
        total = total + noisy - c
    return total / len(batches)


def perturbation_sharpness(model: nn.Module, loss_fn, batch, sigma: float = 0.02,
                           draws: int = 10, key=None, label_scale: float = 1.0,
                           exclude: Sequence[str] | None = None, same_noise: bool = False,
                           chunk: int | None = None) -> torch.Tensor:
    """Hahn & Rofin's sharpness: mean_r L(theta + eps_r) - L(theta), eps_r ~ N(0, sigma^2 I).

    Every parameter is perturbed except those whose name starts with a prefix in ``exclude``
    (default: the positional embeddings, by their role, as in the paper). ``batch`` may be a
    list of batches: the result is the mean over batches, each with fresh noise
    (``same_noise=True`` reuses one set of draws for every batch, the reference code's quirk).
    ``label_scale`` multiplies the result: 4.0 turns MSE on {0,1} targets into MSE on {-1,+1}
    labels, the paper's plotted scale. Near a minimum the expectation is sigma^2/2 tr(H) over
    the perturbed parameters. Returns a scalar.
    """
    apply, params, buffers = module_fn(model)
    k = as_key(key, params_device(params))
    names = included_names(params, exclusions(model, exclude))
    bs = as_batches(batch)
    peak = lambda: _forward_peak(apply, params, buffers, bs[0][0])  # noqa: E731
    with torch.no_grad():
        s = _sharpness_member(apply, as_loss_fn(loss_fn), params, buffers, bs, k, sigma, draws, names,
                              same_noise, _draw_chunk(chunk, k.device, draws, peak),
                              noise_plan(params, names))
    return s * label_scale


def _forward_peak(apply, params: dict, buffers: dict, x: torch.Tensor) -> int:
    """Largest buffer of one forward of a plain module on x (probed on meta tensors)."""
    from ..train.members import peak_buffer_bytes

    meta = lambda t: t.to("meta")  # noqa: E731
    return peak_buffer_bytes(apply, ({n: meta(t) for n, t in params.items()},
                                     {n: meta(t) for n, t in buffers.items()}, meta(x)), grad=False)


def _draw_chunk(chunk, device: torch.device, draws: int, forward_peak) -> int | None:
    """Draws per vmapped call: ``chunk``, or (None) the chunking rule applied to the draws as
    to members: all at once on an accelerator; on a CPU a plain loop over draws whose forward
    is large (what a one-model loop does), cache-sized vmapped chunks otherwise."""
    from ..train.members import AUTO, resolve_chunk

    return resolve_chunk(device, draws, AUTO if chunk is None else chunk, forward_peak,
                         backward=False)


def perturbation_sharpness_stack(stack, loss_fn, batches, sigma: float = 0.02, draws: int = 10,
                                 key=None, label_scale: float = 1.0,
                                 exclude: Sequence[str] | None = None,
                                 same_noise: bool = False, shared: bool | None = None,
                                 chunk: int | None = None, member_chunk=None,
                                 clean: torch.Tensor | None = None) -> torch.Tensor:
    """``perturbation_sharpness`` of every member of ``stack`` -> [M] (``Stack.map``;
    ``member_chunk`` and ``chunk`` None = the automatic chunking rule over members and over
    draws). ``clean`` [M, len(batches)]: the members' clean losses on the batches, when the
    caller computed them already (e.g. in the forward that gave its outputs and activations).

    Noise is drawn per member and batch for all perturbed parameters at once (``flat_normal``).
    """
    bs = as_batches(batches)
    names = included_names(stack.params, exclusions(stack, exclude))
    loss = as_loss_fn(loss_fn)
    plan = noise_plan(stack.params, names, member_dim=True)
    mapped, common, order = split_batches(bs, shared)

    def member(p, b, own, same, k, pl, c=None):
        return _sharpness_member(stack.apply, loss, p, b, in_order(own, same, order), k, sigma,
                                 draws, names, same_noise, dchunk, pl, c)

    x0 = bs[0][0]
    fpeak = stack.forward_peak(tuple(x0.shape[1:] if x0.dim() == 3 else x0.shape), x0.dtype)
    dchunk = _draw_chunk(chunk, stack.device, draws, lambda: fpeak)
    peak = fpeak * (draws if dchunk is None else dchunk)  # the draws one call batches
    args = (stack.params, stack.buffers, mapped, common, stack_keys(stack, key), plan)
    dims = (0, 0, 0, None, 0, None)
    if clean is not None:
        args, dims = args + (clean,), dims + (0,)
    with torch.no_grad():
        s = stack.map(member, *args, in_dims=dims, chunk=chunk_rule(member_chunk), peak_bytes=peak)
    return s * label_scale


# The curvature measures live in curvature.py; re-exported so ``measure.landscape`` stays the
# one name for the whole family.
from .curvature import (composite_layer_norm, random_direction, hessian_top_eigenvalues,  # noqa: E402,F401
                        hessian_top_eigenvalues_stack, hessian_trace, hessian_trace_stack, hvp,
                        hvp_stack, loss_slice, loss_slice_stack)  # noqa: F401


def _register() -> None:
    from ..registry import MEASURES

    for fn, stacked in [(perturbation_sharpness, perturbation_sharpness_stack),
                        (hessian_trace, hessian_trace_stack),
                        (hessian_top_eigenvalues, hessian_top_eigenvalues_stack),
                        (loss_slice, loss_slice_stack)]:
        fn.stacked = stacked  # the vmapped variant, for generic runners
    MEASURES.add("perturbation_sharpness", perturbation_sharpness,
                 "mean loss increase under N(0, sigma^2) weight noise (Hahn & Rofin sharpness)")
    MEASURES.add("hessian_trace", hessian_trace,
                 "Hutchinson estimate of the loss-Hessian trace (Rademacher probes, fwd-over-rev)")
    MEASURES.add("hessian_top_eigenvalues", hessian_top_eigenvalues,
                 "largest loss-Hessian eigenvalues by Lanczos on Hessian-vector products")
    MEASURES.add("loss_slice", loss_slice,
                 "1-D loss along a random filter-normalised direction (Li et al. 2018)")


_register()
