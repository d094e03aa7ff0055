"""The lab's measures on a wrapped Hugging Face model, batched over a file's examples.

- token-wise sensitivity: ``measure.tokenwise.tokenwise_flip_sensitivity`` with token
  replacement (a uniform vocabulary id; segment and padding kept) and with Gaussian noise on the
  token's embedding; per position and mean over real tokens. Batch i draws from key (seed, i).
- weight-noise sharpness: ``measure.weight_noise.weight_noise_sharpness`` (noise on every
  parameter); every batch sees the same noisy models, so the result is the one-call result.
- LayerNorm blow-up (Hahn & Rofin): per LayerNorm, per example the largest 1/std (unbiased, no
  epsilon, as ``measure.norms``) of its input over the real tokens; product over LayerNorms;
  mean over examples. HF models are read with forward pre-hooks (no vmap here, and the lab's
  models' ``acts=True`` protocol is not theirs). Unlike the lab's own models, every layer is
  read at every real token (an HF model's read-out position is not known in general).
- parameter norm: ``measure.norms.parameter_norm`` without the positional embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from tqdm import tqdm

from .. import rng
from ..errors import InputError
from ..measure.norms import parameter_norm
from ..measure.tokenwise import EmbeddingNoise, tokenwise_flip_sensitivity
from ..measure.weight_noise import weight_noise_sharpness
from .model import HFModel, TypedTokenReplacement, position_parameters

from . import MEASURES


def _batches(x: torch.Tensor, size: int, what: str, progress: bool):
    starts = range(0, x.shape[0], size)
    for i, s in enumerate(tqdm(starts, desc=what, disable=not progress, leave=False)):
        yield i, x[s:s + size]


def tokenwise(model: HFModel, x: torch.Tensor, perturbation, seed: int, draws: int,
              batch_size: int, progress: bool = False) -> dict:
    """Flip rates: mean over examples (each over its real tokens) and per position, counted from
    the first token (right padding) or from the last (left padding: index 0 = the last token)."""
    device = next(model.parameters()).device
    per_example, flips, counts = [], 0.0, 0.0
    for i, xb in _batches(x, batch_size, f"tokenwise {type(perturbation).__name__}", progress):
        xb = xb.to(device)
        mask = xb >= 0
        r = tokenwise_flip_sensitivity(model, xb, perturbation, rng.derive(rng.key_of(seed, device), i),
                                       draws=draws, mask=mask)
        per_example.append(r["per_example"])
        n = mask.sum(0).to(torch.float64)
        flips = flips + torch.nan_to_num(r["per_position"]) * n
        counts = counts + n
    pe = torch.cat(per_example)
    per_position = flips / counts.clamp(min=1)
    if model.padding_side == "left":
        per_position, counts = per_position.flip(0), counts.flip(0)
    return {"mean": float(pe.mean()), "stderr": float(pe.std() / math.sqrt(len(pe))) if len(pe) > 1
            else float("nan"),
            "per_position": [float(v) for v in per_position], "tokens_per_position":
            [int(v) for v in counts]}


def weight_noise(model: HFModel, x: torch.Tensor, seed: int, sigma: float, draws: int,
                 batch_size: int, progress: bool = False) -> dict:
    device = next(model.parameters()).device
    l1 = flip = 0.0
    for _, xb in _batches(x, batch_size, "weight noise", progress):
        r = weight_noise_sharpness(model, xb.to(device), rng.key_of(seed, device), sigma=sigma,
                                   draws=draws, chunk=batch_size)
        l1 += float(r["l1"]) * xb.shape[0]
        flip += float(r["flip"]) * xb.shape[0]
    return {"l1": l1 / x.shape[0], "flip": flip / x.shape[0], "sigma": sigma, "draws": draws}


def layernorms(model: nn.Module) -> list[tuple[str, nn.LayerNorm]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)]


def blowup_of_inputs(inputs: dict[str, torch.Tensor], mask: torch.Tensor) -> dict:
    """From each LayerNorm's input [B, T, D] and the real-token mask [B, T]."""
    product = None
    per_ln = {}
    for name, a in inputs.items():
        inv = 1.0 / a.to(torch.float64).std(-1, unbiased=True)  # [B, T]
        r = inv.masked_fill(~mask, -math.inf).amax(-1)  # [B]
        per_ln[name] = r
        product = r if product is None else product * r
    return {"blowup": product, "per_ln": per_ln}


def blowup(model: HFModel, x: torch.Tensor, batch_size: int, progress: bool = False) -> dict:
    lns = layernorms(model.hf)
    if not lns:
        raise InputError("measure", f"{type(model.hf).__name__} has no LayerNorm",
                         "tokenwise or weight-noise for this model")
    device = next(model.parameters()).device
    seen: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_pre_hook(lambda _m, args, n=n: seen.__setitem__(n, args[0]))
               for n, m in lns]
    values, per_ln = [], {n: [] for n, _ in lns}
    try:
        with torch.no_grad():
            for _, xb in _batches(x, batch_size, "blowup", progress):
                xb = xb.to(device)
                seen.clear()
                model(xb)
                r = blowup_of_inputs({n: seen[n] for n, _ in lns if n in seen}, xb >= 0)
                values.append(r["blowup"])
                for n, v in r["per_ln"].items():
                    per_ln[n].append(v)
    finally:
        for h in handles:
            h.remove()
    return {"blowup": float(torch.cat(values).mean()),
            "per_layernorm": {n: float(torch.cat(v).mean()) for n, v in per_ln.items() if v}}


def check_options(what: str, draws: int, sigma: float, weight_sigma: float, weight_draws: int,
                  batch_size: int) -> None:
    """One-line InputErrors for bad options, before a model is loaded."""
    if what not in MEASURES:
        raise InputError("measure", f"{what!r} is not a model measure", ", ".join(MEASURES))
    for field, value in [("draws", draws), ("weight-draws", weight_draws), ("batch-size", batch_size)]:
        if value < 1:
            raise InputError(field, f"{value}", "an integer >= 1")
    for field, value in [("sigma", sigma), ("weight-sigma", weight_sigma)]:
        if not value > 0:
            raise InputError(field, f"{value}", "a number > 0")


def measure_model(model: HFModel, x: torch.Tensor, what: str, *, seed: int = 0, draws: int = 4,
                  sigma: float = 1.0, weight_sigma: float = 0.05, weight_draws: int = 5,
                  batch_size: int = 32, progress: bool = False) -> dict:
    """Every measure ``what`` names (one of MEASURES) -> one JSON-ready dict."""
    check_options(what, draws, sigma, weight_sigma, weight_draws, batch_size)
    out: dict = {"examples": int(x.shape[0]), "tokens": int((x >= 0).sum()),
                 "padded_length": int(x.shape[1]), "kind": model.kind,
                 "positions_counted_from": "end" if model.padding_side == "left" else "start"}
    if what in ("tokenwise", "all"):
        out["replacement"] = tokenwise(model, x, TypedTokenReplacement(model.vocab_size), seed,
                                       draws, batch_size, progress)
        out["embedding_noise"] = tokenwise(model, x, EmbeddingNoise(sigma), seed, draws,
                                           batch_size, progress)
        out["embedding_noise"]["sigma"] = sigma
    if what in ("weight-noise", "all"):
        out["weight_noise"] = weight_noise(model, x, seed, weight_sigma, weight_draws, batch_size,
                                           progress)
    if what in ("blowup", "all") and (what == "blowup" or layernorms(model.hf)):
        out["layernorm"] = blowup(model, x, batch_size, progress)
    if what == "all":
        out["parameter_norm"] = float(parameter_norm(model, exclude=position_parameters(model)))
    return out
