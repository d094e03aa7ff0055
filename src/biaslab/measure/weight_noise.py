"""Vasudeva et al.'s sharpness proxy: how much the outputs move under weight noise.

    sharpness_l1   = mean over examples and draws of  sum_c |f_theta(x)_c - f_{theta+eps}(x)_c|
    sharpness_flip = mean over examples and draws of  1[argmax f_theta(x) != argmax f_{theta+eps}(x)]

with eps ~ N(0, sigma^2 I) on EVERY parameter (reference: sigma 0.05, 5 draws, training data).
Unlike the lab's ``perturbation_sharpness`` (measure/landscape.py: the rise of the loss, which
needs labels and excludes positional embeddings) this reads only the outputs.

The noise of parameter ``name`` in draw d is keyed by (key, d, crc32(name)), so a stack gives
every member the same draws (common random numbers): member i of the stacked call equals the
call on ``stack.member(i)``. Returns {"l1": [] or [M], "flip": [] or [M]} float64.
"""

from __future__ import annotations

import zlib

import torch
from torch import nn
from torch.func import functional_call, vmap

from .. import rng
from ..errors import InputError
from .lift import is_stack

WEIGHT_NOISE_STREAM = 0x3E16


def _member(apply, params, buffers, x, key, sigma, draws, chunk):
    names = list(params)
    salts = {n: zlib.crc32(n.encode()) for n in names}
    l1 = x.new_zeros((), dtype=torch.float64)
    flip = x.new_zeros((), dtype=torch.float64)
    for xs in x.split(chunk):
        clean = apply(params, buffers, xs)
        if clean.dim() != 2:
            raise InputError("model", f"outputs of shape {tuple(clean.shape)}", "logits [B, C]")
        for d in range(draws):
            dkey = rng.derive(key, WEIGHT_NOISE_STREAM, d)
            noisy_params = {n: t + sigma * rng.normal(rng.derive(dkey, salts[n]), t.shape, t.dtype)
                            for n, t in params.items()}
            noisy = apply(noisy_params, buffers, xs)
            l1 = l1 + (noisy - clean).abs().sum(-1).to(torch.float64).sum()
            flip = flip + (noisy.argmax(-1) != clean.argmax(-1)).to(torch.float64).sum()
    n = x.shape[0] * draws
    return torch.stack([l1 / n, flip / n])


@torch.no_grad()
def weight_noise_sharpness(model, x: torch.Tensor, key, sigma: float = 0.05, draws: int = 5,
                           chunk: int = 1024) -> dict:
    """The reference's sharpness1 (``l1``) and sharpness2 (``flip``) of a module or a Stack."""
    if draws < 1:
        raise InputError("draws", f"{draws}", ">= 1")
    if is_stack(model):
        x = x.to(model.device)
        k = torch.as_tensor(key, dtype=torch.int64, device=model.device)
        out = vmap(lambda p, b: _member(model.apply, p, b, x, k, sigma, draws, chunk))(
            model.params, model.buffers)
        return {"l1": out[:, 0], "flip": out[:, 1]}
    if not isinstance(model, nn.Module):
        raise InputError("model", f"{type(model).__name__}", "an nn.Module or a Stack")
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}
    device = next(iter(params.values())).device
    out = _member(lambda p, b, xs: functional_call(model, (p, b), (xs,)), params, buffers,
                  x.to(device), torch.as_tensor(key, dtype=torch.int64, device=device), sigma,
                  draws, chunk)
    return {"l1": out[0], "flip": out[1]}


def _register() -> None:
    from ..registry import MEASURES

    MEASURES.add("weight_noise_sharpness", weight_noise_sharpness,
                 "mean L1 logit change and argmax-flip rate under N(0, 0.05^2) weight noise "
                 "(Vasudeva et al.'s sharpness proxy)")


_register()
