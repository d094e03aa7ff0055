"""Sensitivity of Boolean functions and of trained models.

Average sensitivity of g on {0,1}^n (on the ±1 scale for Boolean g):

    as(g) = 1/4 E_x sum_i (g(x) - g(x^i))^2 = sum_S |S| ĝ(S)^2,

x^i being x with bit i flipped. For ±1-valued g each term is 1 exactly when flipping bit i
changes g, so as counts sensitive bits; for real-valued g the identity still holds (Parseval,
since g(x) - g(x^i) = 2 sum_{S ∋ i} ĝ(S) chi_S(x)), which is what we report for raw outputs.

Three routes: ``average_sensitivity`` (exact, spectral, n <= 24), ``bitflip_sensitivity``
(exact, brute force, the test oracle) and ``sampled_sensitivity`` (Monte-Carlo, any n).
The token-wise perturbation measure of Vasudeva et al. lives in ``tokenwise.py``.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Callable, Optional

import torch
from torch.func import vmap

from .. import rng
from ..errors import InputError
from ..tasks.boolean import all_inputs
from .fourier import (_log2_length, fourier_spectrum, pm1_coefficient_sums, subset_size_tensor,
                      to_pm1)
from .lift import is_stack

SAMPLE_STREAM = 0x5E45  # rng stream of sampled_sensitivity's inputs


# -- exact, from a truth table -------------------------------------------------------------------
def average_sensitivity(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """Exact as = sum_S |S| ĝ(S)^2 of ``to_pm1(table)``: float64 [...] for a [..., 2^n] table.

    One fast Walsh-Hadamard transform (n 2^n operations) per table. A Boolean table is
    transformed exactly in float32 (``pm1_coefficient_sums``) and its squared coefficients
    summed in float64, so the result is exact; a real table is transformed in float64. For a
    real-valued table this equals 1/4 E_x (f(x) - f(x^i))^2 summed over i, by Parseval.
    """
    sums = pm1_coefficient_sums(table, scale)
    if sums is None:
        square, denom = fourier_spectrum(table, scale).square(), 1.0
    else:
        square, denom = sums.to(torch.float64).square(), float(sums.shape[-1]) ** 2
    size = subset_size_tensor(_log2_length(square.shape[-1]), square.device, torch.float64)
    return (square @ size) / denom  # exact: integer-valued float64 sums below 2^53


def bitflip_sensitivity(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """Brute-force 1/4 E_x sum_i (g(x) - g(x^i))^2 by index XOR; the oracle of the tests.

    Shares nothing with the spectral route except ``to_pm1``: the neighbour of index x across
    bit i is x ^ (1 << i) because tables are little-endian.
    """
    g = to_pm1(table, scale)
    n = _log2_length(g.shape[-1])
    idx = torch.arange(1 << n, device=g.device)
    total = g.new_zeros(g.shape[:-1])
    for i in range(n):
        total += (g - g[..., idx ^ (1 << i)]).square().mean(-1)
    return total / 4


def closed_form_majority(n: int) -> float:
    """as(MAJORITY_n) for odd n: n C(n-1, (n-1)/2) / 2^(n-1).

    Bit i is sensitive exactly when the other n-1 bits are tied, probability C(n-1,(n-1)/2)/2^(n-1).
    """
    if n < 1 or n % 2 == 0:
        raise InputError("n", f"{n} is not an odd positive integer", "odd n >= 1")
    return n * math.comb(n - 1, (n - 1) // 2) / 2 ** (n - 1)


# -- Monte-Carlo, for inputs too long to enumerate -----------------------------------------------
def _as_rows(out: torch.Tensor, rows: int) -> torch.Tensor:
    """Outputs of a [rows, L] batch as [..., rows]: drops a trailing width-1 output dim."""
    if out.dim() >= 2 and out.shape[-1] == 1 and out.shape[-2] == rows:
        out = out.squeeze(-1)
    if out.shape[-1] != rows:
        raise InputError("fn", f"output shape {tuple(out.shape)} has no dim of {rows} rows",
                         "[..., B] or [..., B, 1]")
    return out


@torch.no_grad()
def sampled_sensitivity(fn: Callable[[torch.Tensor], torch.Tensor], n: int, samples: int,
                        key: torch.Tensor, confidence: float = 0.95, scale: str = "pm1_from_01",
                        threshold: Optional[float] = None, chunk: Optional[int] = None) -> dict:
    """Monte-Carlo estimate of average sensitivity with a normal-approximation CI.

    Draws ``samples`` uniform x from {0,1}^n (counter RNG on ``key``'s device), evaluates
    ``fn`` on each x and its n single-bit flips -- one [samples (n+1), n] batch, or ``chunk``
    samples per batch to bound memory -- and averages s(x) = 1/4 sum_i (g(x) - g(x^i))^2.
    ``scale='pm1_from_01'`` takes g = 1 - 2 fn (so {0,1} outputs count 1 per sensitive bit);
    ``'raw'`` takes g = fn. ``threshold`` first maps outputs to (fn > threshold) in {0,1}.
    ``fn`` may return [B], [B, 1] or [..., B] (e.g. ``stack.forward``: [M, B] -> results [M]).

    Returns {"mean", "stderr", "low", "high"} as float64 tensors; s(x) is bounded, so for a few
    hundred samples the normal interval is a fair approximation.
    """
    if scale not in ("pm1_from_01", "raw"):
        raise InputError("scale", f"unknown scale {scale!r}", "pm1_from_01, raw")
    if samples < 2:
        raise InputError("samples", f"{samples} is too few for a standard error", ">= 2")
    if not 0 < confidence < 1:
        raise InputError("confidence", f"{confidence} is not a probability", "0 < confidence < 1")
    key = torch.as_tensor(key, dtype=torch.int64)
    x = rng.randint(rng.derive(key, SAMPLE_STREAM), (samples, n), 2)
    flip = torch.eye(n, dtype=torch.int64, device=x.device)
    parts = []
    for xs in x.split(chunk or samples):
        # row 0 of each block is x itself, row 1 + i is x with bit i flipped
        block = torch.cat((xs[:, None, :], xs[:, None, :] ^ flip), dim=1)
        out = _as_rows(fn(block.reshape(-1, n)), block.shape[0] * (n + 1))
        if threshold is not None:
            out = out > threshold
        parts.append(out.to(torch.float64).reshape(*out.shape[:-1], xs.shape[0], n + 1))
    g = torch.cat(parts, dim=-2)
    diff = g[..., 1:] - g[..., :1]
    if scale == "pm1_from_01":
        diff = 2 * diff  # (1 - 2a) - (1 - 2b) = -2 (a - b)
    s = diff.square().sum(-1) / 4  # [..., samples]
    mean = s.mean(-1)
    stderr = s.std(-1) / math.sqrt(samples)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return {"mean": mean, "stderr": stderr, "low": mean - z * stderr, "high": mean + z * stderr}


# -- trained models --------------------------------------------------------------------------------
def _model_device(model) -> torch.device:
    if is_stack(model):
        return model.device
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def default_predict(threshold: Optional[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Outputs of ONE model -> labels: argmax over a class dim [B, C>1], else (out > threshold)
    in {0,1}, or the raw output when threshold is None. Works under vmap."""

    def predict(out: torch.Tensor) -> torch.Tensor:
        if out.dim() == 2 and out.shape[-1] > 1:
            return out.argmax(-1).float()
        if out.dim() == 2:
            out = out.squeeze(-1)
        if threshold is None:  # raw outputs keep the model's precision (at least fp32)
            return out.to(torch.promote_types(out.dtype, torch.float32))
        return (out > threshold).float()

    return predict


@torch.no_grad()
def learned_table(model, n: int, threshold: Optional[float] = 0.5,
                  predict: Optional[Callable] = None, batch: int = 1 << 16) -> torch.Tensor:
    """A trained model on all of {0,1}^n: [2^n] for an ``nn.Module``, [M, 2^n] for a ``Stack``.

    The model maps LongTensor [B, n] to [B] (or [B, C]); the cube is fed in chunks of ``batch``
    so n up to 24 fits. ``predict`` maps one model's outputs to table values (e.g.
    ``get_loss('bce').predict`` composed with a threshold); by default class outputs give their
    argmax, others (out > threshold) in {0,1}, or the raw outputs when ``threshold`` is None.
    A stack runs all members in one vmapped forward per chunk.
    """
    predict = predict or default_predict(threshold)
    x = all_inputs(n, _model_device(model))
    if is_stack(model):
        run = lambda xs: vmap(predict)(model.forward(xs))  # noqa: E731
    else:
        run = lambda xs: predict(model(xs))  # noqa: E731
    return torch.cat([run(xs) for xs in x.split(batch)], dim=-1)


def learned_sensitivity(model, n: int, threshold: Optional[float] = 0.5,
                        predict: Optional[Callable] = None, batch: int = 1 << 16,
                        scale: Optional[str] = None) -> torch.Tensor:
    """``average_sensitivity`` of ``learned_table``: a scalar, or [M] for a Stack.

    ``scale`` defaults to 'raw' for raw outputs (threshold None, no predict) -- so a real
    output that happens to be {0,1} is not rescaled -- and to 'auto' otherwise.
    """
    table = learned_table(model, n, threshold, predict, batch)
    if scale is None:
        scale = "raw" if threshold is None and predict is None else "auto"
    return average_sensitivity(table, scale)


def _register() -> None:
    from ..registry import MEASURES

    MEASURES.add("average_sensitivity", average_sensitivity,
                 "exact average sensitivity sum_S |S| ĝ(S)^2 of a truth table (n <= 24)")
    MEASURES.add("sampled_sensitivity", sampled_sensitivity,
                 "Monte-Carlo average sensitivity of a function on {0,1}^n, with a CI (any n)")
    MEASURES.add("learned_sensitivity", learned_sensitivity,
                 "average sensitivity of a trained model's (or stack's) table on all of {0,1}^n")


_register()
