"""Curvature of the loss landscape: Hessian-vector products (forward-over-reverse), the
Hutchinson trace, Lanczos top eigenvalues, and 1-D loss slices. Conventions (member functions,
a Stack in place of the model lifted by ``lift.over_stack``, keys, batches) as in
``landscape.py``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad, jvp, vmap
from torch.overrides import TorchFunctionMode

from .. import rng

Batch = tuple[torch.Tensor, torch.Tensor]


from .lift import is_stack, over_stack
from .param_tools import (as_key, as_loss_fn, batch_dim, chunk_rule, flatten_tree, included_names,
                          module_fn, name_salt, params_device, rademacher, stack_keys,
                          unflatten_tree)


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


def hvp(model: nn.Module, loss_fn, batch: Batch, v: dict, shared: bool | None = None,
        member_chunk: int | None = None) -> dict:
    """H v for the Hessian of the batch loss w.r.t. the parameters named in ``v`` (a dict
    name -> tensor shaped like the parameter; the others are held fixed). Returns a dict.
    A Stack: ``v`` holds [M, ...] tensors; returns a dict of [M, ...]."""
    if is_stack(model):
        return over_stack(hvp, model, loss_fn, tuple(batch), v,
                          in_dims=(None, batch_dim(tuple(batch), shared), 0),
                          chunk=chunk_rule(member_chunk))
    apply, params, buffers = module_fn(model)
    f, theta = _restricted_loss(apply, as_loss_fn(loss_fn), params, buffers, batch, list(v))
    return _hvp(f, theta, {n: v[n] for n in theta})


# -- Hutchinson trace ---------------------------------------------------------------------------
def _trace_member(apply, loss_fn, params, buffers, batch, key, names, probes, chunk):
    """Per-probe values z^T H z with Rademacher z; their mean is an unbiased trace estimate."""
    f, theta = _restricted_loss(apply, loss_fn, params, buffers, batch, names)

    def one(pkey):
        z = {n: rademacher(rng.derive(pkey, name_salt(n)), t.shape, t.dtype) for n, t in theta.items()}
        hz = _hvp(f, theta, z)
        return sum((z[n] * hz[n]).sum() for n in theta)

    pkeys = rng.derive(key, torch.arange(probes, device=key.device))
    return vmap(one, chunk_size=chunk)(pkeys)


def hessian_trace(model: nn.Module, loss_fn, batch: Batch, probes: int = 100, key=None,
                  exclude: Sequence[str] = (), chunk: int | None = 16,
                  return_samples: bool = False, shared: bool | None = None,
                  member_chunk: int | None = None) -> torch.Tensor:
    """Hutchinson estimate of tr(H) of the batch loss, H over all parameters except ``exclude``
    (pass the model's ``parameter_roles(...).position_embeddings`` to match the parameters
    perturbation sharpness perturbs).

    Rademacher probes minimise the estimator's variance, 2 (||H||_F^2 - sum_i H_ii^2) / probes.
    ``return_samples`` gives the [probes] values z^T H z (for a standard error) instead.
    A Stack: every member -> [M] (or [M, probes]); a scalar key is shared by the members.
    """
    if is_stack(model):
        s = over_stack(hessian_trace, model, loss_fn, tuple(batch), probes, stack_keys(model, key),
                       exclude, chunk, True, in_dims=(None, batch_dim(tuple(batch), shared), None,
                                                      0, None, None, None),
                       chunk=chunk_rule(member_chunk))
        return s if return_samples else s.mean(-1)
    apply, params, buffers = module_fn(model)
    k = as_key(key, params_device(params))
    with torch.no_grad():
        s = _trace_member(apply, as_loss_fn(loss_fn), params, buffers, tuple(batch), k,
                          included_names(params, exclude), probes, chunk)
    return s if return_samples else s.mean()


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
        hq = flatten_tree(_hvp(f, theta, unflatten_tree(Q[-1], theta)))
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
                            key=None, exclude: Sequence[str] = (), shared: bool | None = None,
                            member_chunk: int | None = None) -> torch.Tensor:
    """The k largest (algebraic) eigenvalues of the batch-loss Hessian, descending, [k].

    Lanczos with ``iters`` Hessian-vector products (clipped to the parameter count). Extremal
    eigenvalues converge first; raise ``iters`` when the top of the spectrum is clustered.
    A Stack: every member -> [M, k].
    """
    if is_stack(model):
        return over_stack(hessian_top_eigenvalues, model, loss_fn, tuple(batch), k, iters,
                          stack_keys(model, key), exclude,
                          in_dims=(None, batch_dim(tuple(batch), shared), None, None, 0, None),
                          chunk=chunk_rule(member_chunk))
    apply, params, buffers = module_fn(model)
    kk = as_key(key, params_device(params))
    with torch.no_grad():
        return _lanczos_member(apply, as_loss_fn(loss_fn), params, buffers, tuple(batch), kk,
                               included_names(params, exclude), k, iters)


# -- 1-D loss slices ----------------------------------------------------------------------------
def random_direction(params, names, key, filter_normalize):
    """A random direction over ``names``.

    Filter normalisation (Li et al., 2018): each row of a >= 2-D parameter (an output unit of a
    Linear, a token's embedding) is rescaled to the norm of the same row of the weights, so the
    slice is comparable across layers and scale-invariant parts. 1-D parameters (biases,
    LayerNorm gains) get a zero direction, as in Li et al.'s default. Without filter
    normalisation the direction is Gaussian over all included parameters, unit norm overall.
    """
    d = {n: rng.normal(rng.derive(key, name_salt(n)), params[n].shape, params[n].dtype)
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
    d = random_direction(params, names, key, filter_normalize)

    def at(alpha):
        p = dict(params)
        for n in names:
            p[n] = params[n] + alpha * d[n]
        return loss_fn(apply(p, buffers, x), y)

    return vmap(at, chunk_size=chunk)(alphas)


def loss_slice(model: nn.Module, loss_fn, batch: Batch, alphas, key=None,
               filter_normalize: bool = True, exclude: Sequence[str] = (),
               chunk: int | None = None, shared: bool | None = None,
               member_chunk: int | None = None) -> torch.Tensor:
    """Loss along theta + alpha d for a random (filter-normalised) direction d -> [len(alphas)];
    a Stack: every member -> [M, len(alphas)]."""
    if is_stack(model):
        return over_stack(loss_slice, model, loss_fn, tuple(batch), alphas, stack_keys(model, key),
                          filter_normalize, exclude, chunk,
                          in_dims=(None, batch_dim(tuple(batch), shared), None, 0, None, None, None),
                          chunk=chunk_rule(member_chunk))
    apply, params, buffers = module_fn(model)
    dev = params_device(params)
    dtype = next(iter(params.values())).dtype
    a = torch.as_tensor(alphas, dtype=dtype, device=dev)
    with torch.no_grad():
        return _slice_member(apply, as_loss_fn(loss_fn), params, buffers, tuple(batch), as_key(key, dev),
                             a, included_names(params, exclude), filter_normalize, chunk)
