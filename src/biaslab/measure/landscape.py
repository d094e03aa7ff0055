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
import zlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp, vmap
from torch.overrides import TorchFunctionMode

from .. import rng
from ..models.roles import parameter_roles

Batch = tuple[torch.Tensor, torch.Tensor]


# -- plumbing ------------------------------------------------------------------------------------
def _loss(loss_fn) -> Callable:
    """Accept a callable, a ``Loss`` object, or a loss name."""
    if isinstance(loss_fn, str):
        from ..train.losses import get_loss

        return get_loss(loss_fn).fn
    return getattr(loss_fn, "fn", loss_fn)


def _module_fn(model: nn.Module):
    """A plain module as (apply(params, buffers, x), params, buffers) with detached tensors."""
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def apply(p, b, x):
        return functional_call(model, (p, b), (x,))

    return apply, params, buffers


def _device(params: dict) -> torch.device:
    return next(iter(params.values())).device


def _included(params: dict, exclude: Sequence[str]) -> list[str]:
    """Names of the parameters a measure acts on (those not starting with an excluded prefix)."""
    return [n for n in params if not n.startswith(tuple(exclude))]


def _salt(name: str) -> int:
    """A stable per-parameter salt, so a parameter's noise ignores which others are included."""
    return zlib.crc32(name.encode())


def _key(key, device) -> torch.Tensor:
    """An int64 key tensor. ``None`` draws a seed from torch's global generator: fresh noise on
    every call, reproducible under ``torch.manual_seed``; pass a key to record it."""
    if key is None:
        key = int(torch.randint(0, 2**31 - 1, ()))
    if isinstance(key, torch.Tensor):
        return key.to(device=device, dtype=torch.int64)
    return rng.key_of(key, device)


def _stack_keys(stack, key) -> torch.Tensor:
    """[M] keys: a scalar key is shared by all members (common random numbers)."""
    k = _key(key, stack.device)
    return k.expand(stack.M).contiguous() if k.dim() == 0 else k


def _as_batches(batch) -> list[Batch]:
    """One (x, y) batch or a list of them -> list of (x, y)."""
    if isinstance(batch[0], torch.Tensor):
        return [tuple(batch)]
    return [tuple(b) for b in batch]


def _batch_dim(batch: Batch, shared: bool | None):
    """``Stack.map`` in_dim of a stacked batch: None (shared by members) or 0 (one per member)."""
    per_member = batch[0].dim() == 3 if shared is None else not shared
    return 0 if per_member else None


def _split_batches(batches: list[Batch], shared: bool | None):
    """(per-member batches, shared batches, order): ``Stack.map`` maps whole arguments, so the
    batches of one call are split by kind; ``order`` restores their sequence."""
    mapped, common, order = [], [], []
    for x, y in batches:
        per_member = x.dim() == 3 if shared is None else not shared
        (mapped if per_member else common).append((x, y))
        order.append((per_member, len(mapped if per_member else common) - 1))
    return mapped, common, order


def _in_order(mapped: list, common: list, order: list) -> list:
    return [mapped[i] if per_member else common[i] for per_member, i in order]


def _chunk(member_chunk):
    """A measure's ``member_chunk`` as a ``Stack.map`` chunk: None = the automatic rule."""
    from ..train.members import AUTO

    return AUTO if member_chunk is None else member_chunk


def _exclusions(model_or_stack, exclude: Sequence[str] | None) -> tuple:
    """``exclude``, or by default the positional embeddings (by their role)."""
    if exclude is not None:
        return tuple(exclude)
    roles = getattr(model_or_stack, "roles", None)
    if roles is None:
        roles = parameter_roles(model_or_stack)
    return roles.position_embeddings


def _rademacher(key, shape, dtype):
    return ((rng.bits32(key, shape) & 1) * 2 - 1).to(dtype)


def _flatten(tree: dict) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def _unflatten(vec: torch.Tensor, like: dict) -> dict:
    out, i = {}, 0
    for n, t in like.items():
        out[n] = vec[i:i + t.numel()].view_as(t)
        i += t.numel()
    return out


# -- perturbation sharpness ---------------------------------------------------------------------
def noise_plan(params: dict, names: Sequence[str], member_dim: bool = False) -> dict:
    """What ``flat_normal`` needs to draw the noise of parameters ``names`` in one go.

    ``salt`` [K]: each parameter's salt; ``index`` [P]: the parameter of each flat element;
    ``counter`` [P]: the element's index inside its parameter. ``member_dim``: the tensors of
    ``params`` carry a leading member dim (a Stack's). Integer tensors only, so a stacked
    measure passes the plan as a shared argument.
    """
    dev = _device(params)
    sizes = [params[n][0].numel() if member_dim else params[n].numel() for n in names]
    size_t = torch.tensor(sizes, dtype=torch.int64, device=dev)
    index = torch.repeat_interleave(torch.arange(len(names), device=dev), size_t)
    starts = torch.cumsum(size_t, 0) - size_t
    counter = torch.arange(int(size_t.sum()), device=dev) - starts[index]
    salt = torch.tensor([_salt(n) for n in names], dtype=torch.int64, device=dev)
    return {"salt": salt, "index": index, "counter": counter}


def flat_normal(key: torch.Tensor, plan: dict, dtype) -> torch.Tensor:
    """The noise of every planned parameter, flattened in plan order: [..., P] for keys [...].

    Bit for bit ``cat([rng.normal(rng.derive(key, _salt(n)), shape_n) for n in names])``: the
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
    apply, params, buffers = _module_fn(model)
    k = _key(key, _device(params))
    names = _included(params, _exclusions(model, exclude))
    bs = _as_batches(batch)
    peak = lambda: _forward_peak(apply, params, buffers, bs[0][0])  # noqa: E731
    with torch.no_grad():
        s = _sharpness_member(apply, _loss(loss_fn), params, buffers, bs, k, sigma, draws, names,
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
    bs = _as_batches(batches)
    names = _included(stack.params, _exclusions(stack, exclude))
    loss = _loss(loss_fn)
    plan = noise_plan(stack.params, names, member_dim=True)
    mapped, common, order = _split_batches(bs, shared)

    def member(p, b, own, same, k, pl, c=None):
        return _sharpness_member(stack.apply, loss, p, b, _in_order(own, same, order), k, sigma,
                                 draws, names, same_noise, dchunk, pl, c)

    x0 = bs[0][0]
    fpeak = stack.forward_peak(tuple(x0.shape[1:] if x0.dim() == 3 else x0.shape), x0.dtype)
    dchunk = _draw_chunk(chunk, stack.device, draws, lambda: fpeak)
    peak = fpeak * (draws if dchunk is None else dchunk)  # the draws one call batches
    args = (stack.params, stack.buffers, mapped, common, _stack_keys(stack, key), plan)
    dims = (0, 0, 0, None, 0, None)
    if clean is not None:
        args, dims = args + (clean,), dims + (0,)
    with torch.no_grad():
        s = stack.map(member, *args, in_dims=dims, chunk=_chunk(member_chunk), peak_bytes=peak)
    return s * label_scale


# -- Hessian-vector products --------------------------------------------------------------------
def _restricted_loss(apply, loss_fn, params, buffers, batch, names):
    """The loss as a function of the parameters ``names`` only (the others held fixed)."""
    x, y = batch
    fixed = {n: p for n, p in params.items() if n not in names}

    def f(theta):
        return loss_fn(apply({**fixed, **theta}, buffers, x), y)

    return f, {n: params[n] for n in names}


class composite_layer_norm(TorchFunctionMode):
    """Inside this context ``F.layer_norm`` runs as plain mean/var/rsqrt ops.

    Why: in torch 2.13, ``torch.func.jacrev`` (hence ``torch.func.hessian``) gets the second
    derivative of the fused ``layer_norm`` wrong -- the block d(grad of the LN gain)/d(input) is
    off, so the "exact" Hessian of a model with LayerNorm is a few percent wrong and not even
    symmetric. (Plain ``torch.autograd`` double backward and ``jvp(grad(f))``, which ``hvp``
    uses, are right, also under vmap; the tests check them against finite differences.) The
    composite form has exact derivatives of every order: use it for reference Hessians.
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.layer_norm or func is torch.layer_norm:
            return _layer_norm(*args, **kwargs)
        return func(*args, **kwargs)


def _layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5, *_args, **_kw):
    dims = tuple(range(-len(normalized_shape), 0))
    mu = input.mean(dims, keepdim=True)
    var = (input - mu).pow(2).mean(dims, keepdim=True)  # biased, as LayerNorm
    out = (input - mu) * torch.rsqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _hvp(f, theta, v):
    # Forward-over-reverse: one jvp through the gradient. Cheaper in memory than reverse-over-
    # reverse and it composes with vmap over probes and members. (It is exact with LayerNorm,
    # unlike torch.func.hessian / jacrev: see composite_layer_norm.)
    return jvp(grad(f), (theta,), (v,))[1]


def hvp(model: nn.Module, loss_fn, batch: Batch, v: dict) -> dict:
    """H v for the Hessian of the batch loss w.r.t. the parameters named in ``v`` (a dict
    name -> tensor shaped like the parameter; the others are held fixed). Returns a dict."""
    apply, params, buffers = _module_fn(model)
    f, theta = _restricted_loss(apply, _loss(loss_fn), params, buffers, batch, list(v))
    return _hvp(f, theta, {n: v[n] for n in theta})


def hvp_stack(stack, loss_fn, batch: Batch, v: dict, shared: bool | None = None,
              member_chunk: int | None = None) -> dict:
    """``hvp`` of every member: ``v`` holds [M, ...] tensors; returns a dict of [M, ...]."""
    loss = _loss(loss_fn)
    bd = _batch_dim(tuple(batch), shared)

    def member(p, b, bt, vv):
        f, theta = _restricted_loss(stack.apply, loss, p, b, bt, list(vv))
        return _hvp(f, theta, vv)

    return stack.map(member, stack.params, stack.buffers, tuple(batch), v, in_dims=(0, 0, bd, 0),
                     chunk=_chunk(member_chunk))


# -- Hutchinson trace ---------------------------------------------------------------------------
def _trace_member(apply, loss_fn, params, buffers, batch, key, names, probes, chunk):
    """Per-probe values z^T H z with Rademacher z; their mean is an unbiased trace estimate."""
    f, theta = _restricted_loss(apply, loss_fn, params, buffers, batch, names)

    def one(pkey):
        z = {n: _rademacher(rng.derive(pkey, _salt(n)), t.shape, t.dtype) for n, t in theta.items()}
        hz = _hvp(f, theta, z)
        return sum((z[n] * hz[n]).sum() for n in theta)

    pkeys = rng.derive(key, torch.arange(probes, device=key.device))
    return vmap(one, chunk_size=chunk)(pkeys)


def hessian_trace(model: nn.Module, loss_fn, batch: Batch, probes: int = 100, key=None,
                  exclude: Sequence[str] = (), chunk: int | None = 16,
                  return_samples: bool = False) -> torch.Tensor:
    """Hutchinson estimate of tr(H) of the batch loss, H over all parameters except ``exclude``
    (pass the model's ``parameter_roles(...).position_embeddings`` to match the parameters
    perturbation sharpness perturbs).

    Rademacher probes minimise the estimator's variance, 2 (||H||_F^2 - sum_i H_ii^2) / probes.
    ``return_samples`` gives the [probes] values z^T H z (for a standard error) instead.
    """
    apply, params, buffers = _module_fn(model)
    k = _key(key, _device(params))
    with torch.no_grad():
        s = _trace_member(apply, _loss(loss_fn), params, buffers, tuple(batch), k,
                          _included(params, exclude), probes, chunk)
    return s if return_samples else s.mean()


def hessian_trace_stack(stack, loss_fn, batch: Batch, probes: int = 100, key=None,
                        exclude: Sequence[str] = (), chunk: int | None = 16,
                        return_samples: bool = False, shared: bool | None = None,
                        member_chunk: int | None = None) -> torch.Tensor:
    """``hessian_trace`` of every member in one vmapped call -> [M] (or [M, probes])."""
    loss = _loss(loss_fn)
    names = _included(stack.params, exclude)
    bd = _batch_dim(tuple(batch), shared)

    def member(p, b, bt, k):
        return _trace_member(stack.apply, loss, p, b, bt, k, names, probes, chunk)

    with torch.no_grad():
        s = stack.map(member, stack.params, stack.buffers, tuple(batch), _stack_keys(stack, key),
                      in_dims=(0, 0, bd, 0), chunk=_chunk(member_chunk))
    return s if return_samples else s.mean(-1)


# -- Lanczos top eigenvalues --------------------------------------------------------------------
def _lanczos_member(apply, loss_fn, params, buffers, batch, key, names, k, iters):
    """Top-k (largest algebraic) Hessian eigenvalues by Lanczos with full reorthogonalisation.

    A fixed number of iterations and no data-dependent branches: the whole loop stays on the
    device and vmaps over members. On breakdown (the Krylov space is exhausted, e.g. a Hessian
    of low rank) the next vector is a fresh random one orthogonal to the basis and the coupling
    is set to 0, so T stays a valid projection of H.
    """
    f, theta = _restricted_loss(apply, loss_fn, params, buffers, batch, names)
    n = sum(t.numel() for t in theta.values())
    m = min(iters, n)
    if k > m:
        raise ValueError(f"k={k} eigenvalues need iters >= k (got {m})")
    dtype = next(iter(theta.values())).dtype
    tol = 100 * torch.finfo(dtype).eps

    def orthonormal(w, Q):
        # Classical Gram-Schmidt twice ("twice is enough") against the whole basis; without it
        # Lanczos loses orthogonality and reports ghost copies of converged eigenvalues.
        for _ in range(2):
            w = w - Q.T @ (Q @ w)
        return w

    q = rng.normal(rng.derive(key, 0), (n,), dtype)
    Q = (q / q.norm())[None]
    alphas, betas = [], []
    for j in range(m):
        hq = _flatten(_hvp(f, theta, _unflatten(Q[-1], theta)))
        alphas.append(hq @ Q[-1])
        if j == m - 1:
            break
        w = orthonormal(hq, Q)
        b = w.norm()
        ok = b > tol * hq.norm()
        r = orthonormal(rng.normal(rng.derive(key, j + 1), (n,), dtype), Q)
        nxt = torch.where(ok, w / torch.where(ok, b, 1.0), r / r.norm())
        betas.append(torch.where(ok, b, torch.zeros_like(b)))
        Q = torch.cat([Q, nxt[None]])
    a = torch.stack(alphas)
    T = torch.diag(a)
    if betas:
        bt = torch.stack(betas)
        T = T + torch.diag(bt, 1) + torch.diag(bt, -1)
    return torch.linalg.eigvalsh(T).flip(-1)[:k]


def hessian_top_eigenvalues(model: nn.Module, loss_fn, batch: Batch, k: int = 1, iters: int = 32,
                            key=None, exclude: Sequence[str] = ()) -> torch.Tensor:
    """The k largest (algebraic) eigenvalues of the batch-loss Hessian, descending, [k].

    Lanczos with ``iters`` Hessian-vector products (clipped to the parameter count). Extremal
    eigenvalues converge first; raise ``iters`` when the top of the spectrum is clustered.
    """
    apply, params, buffers = _module_fn(model)
    kk = _key(key, _device(params))
    with torch.no_grad():
        return _lanczos_member(apply, _loss(loss_fn), params, buffers, tuple(batch), kk,
                               _included(params, exclude), k, iters)


def hessian_top_eigenvalues_stack(stack, loss_fn, batch: Batch, k: int = 1, iters: int = 32,
                                  key=None, exclude: Sequence[str] = (),
                                  shared: bool | None = None,
                                  member_chunk: int | None = None) -> torch.Tensor:
    """``hessian_top_eigenvalues`` of every member in one vmapped call -> [M, k]."""
    loss = _loss(loss_fn)
    names = _included(stack.params, exclude)
    bd = _batch_dim(tuple(batch), shared)

    def member(p, b, bt, kk):
        return _lanczos_member(stack.apply, loss, p, b, bt, kk, names, k, iters)

    with torch.no_grad():
        return stack.map(member, stack.params, stack.buffers, tuple(batch),
                         _stack_keys(stack, key), in_dims=(0, 0, bd, 0), chunk=_chunk(member_chunk))


# -- 1-D loss slices ----------------------------------------------------------------------------
def _direction(params, names, key, filter_normalize):
    """A random direction over ``names``.

    Filter normalisation (Li et al., 2018): each row of a >= 2-D parameter (an output unit of a
    Linear, a token's embedding) is rescaled to the norm of the same row of the weights, so the
    slice is comparable across layers and scale-invariant parts. 1-D parameters (biases,
    LayerNorm gains) get a zero direction, as in Li et al.'s default. Without filter
    normalisation the direction is Gaussian over all included parameters, unit norm overall.
    """
    d = {n: rng.normal(rng.derive(key, _salt(n)), params[n].shape, params[n].dtype)
         for n in names}
    if not filter_normalize:
        norm = torch.sqrt(sum(t.pow(2).sum() for t in d.values()))
        return {n: t / norm for n, t in d.items()}
    out = {}
    for n, t in d.items():
        p = params[n]
        if p.dim() <= 1:
            out[n] = torch.zeros_like(p)
            continue
        rows, prow = t.flatten(1), p.flatten(1)
        scale = prow.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True).clamp_min(1e-30)
        out[n] = (rows * scale).view_as(p)
    return out


def _slice_member(apply, loss_fn, params, buffers, batch, key, alphas, names, filter_normalize,
                  chunk):
    x, y = batch
    d = _direction(params, names, key, filter_normalize)

    def at(alpha):
        p = dict(params)
        for n in names:
            p[n] = params[n] + alpha * d[n]
        return loss_fn(apply(p, buffers, x), y)

    return vmap(at, chunk_size=chunk)(alphas)


def loss_slice(model: nn.Module, loss_fn, batch: Batch, alphas, key=None,
               filter_normalize: bool = True, exclude: Sequence[str] = (),
               chunk: int | None = None) -> torch.Tensor:
    """Loss along theta + alpha d for a random (filter-normalised) direction d -> [len(alphas)]."""
    apply, params, buffers = _module_fn(model)
    dev = _device(params)
    dtype = next(iter(params.values())).dtype
    a = torch.as_tensor(alphas, dtype=dtype, device=dev)
    with torch.no_grad():
        return _slice_member(apply, _loss(loss_fn), params, buffers, tuple(batch), _key(key, dev),
                             a, _included(params, exclude), filter_normalize, chunk)


def loss_slice_stack(stack, loss_fn, batch: Batch, alphas, key=None, filter_normalize: bool = True,
                     exclude: Sequence[str] = (), shared: bool | None = None,
                     chunk: int | None = None, member_chunk: int | None = None) -> torch.Tensor:
    """``loss_slice`` of every member in one vmapped call -> [M, len(alphas)]."""
    loss = _loss(loss_fn)
    names = _included(stack.params, exclude)
    dtype = next(iter(stack.params.values())).dtype
    a = torch.as_tensor(alphas, dtype=dtype, device=stack.device)
    bd = _batch_dim(tuple(batch), shared)

    def member(p, b, bt, k):
        return _slice_member(stack.apply, loss, p, b, bt, k, a, names, filter_normalize, chunk)

    with torch.no_grad():
        return stack.map(member, stack.params, stack.buffers, tuple(batch),
                         _stack_keys(stack, key), in_dims=(0, 0, bd, 0), chunk=_chunk(member_chunk))


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
