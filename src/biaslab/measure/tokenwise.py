"""Token-wise label-flip sensitivity (Vasudeva et al.) for any model and modality.

    S(f; X, P) = mean_{x in X} (1/n) sum_i Pr_z[ argmax f(x) != argmax f(x with token i perturbed by z) ]

measured on whatever inputs are passed (the paper uses training data). One entry point,
``tokenwise_flip_sensitivity(model, x, perturbation, key, ...)``, for an ``nn.Module`` or a
``Stack`` (every member in one vmapped forward; all members see the same draws, so their
differences are not sampling noise). The perturbation says what a "token" is:

  ``TokenReplacement(vocab_size, exclude_same=False)``  token ids [B, L]: the token becomes a
      uniform vocabulary token (a draw may equal the original unless ``exclude_same``).
  ``EmbeddingNoise(sigma)``  + N(0, sigma^2 I) on the token's embedding vector; ``sigma`` is a
      standard deviation (the reference's default "15" is a VARIANCE: sigma = sqrt(15)).
  ``PatchNoise(sigma, patch)``  images [B, C, H, W]: + sigma N(0, 1) on every pixel and channel
      of one patch x patch square; positions are the patches in row-major order.
  ``ScatteredPixelNoise(sigma, pixels=16, sets=1)``  the reference code's variant: ``pixels``
      random pixels shared by the batch (one random set per position slot and draw), all channels.

``positions`` picks the slots: None = every token / patch / set; a list of ints; or a list of
equal-length lists to perturb several positions at once (e.g. ``[[0, 1]]`` with
``EmbeddingNoise(0.1)``: the grokking measure, noise on a and b together).

Embedding protocol. ``EmbeddingNoise`` needs the model split at its embedding:

    model.embed(x) -> e [B, T, D]            # the input of the first layer (token + position)
    model.forward_embedded(e) -> output      # the rest; forward(x) == forward_embedded(embed(x))

Any model (or a Stack of such models) that implements these two methods can be measured; the
others give one clear InputError. Noise goes where ``embed`` ends, so a model decides e.g. that
an LSTM is perturbed after its embedding LayerNorm.

Batching: all draws x slots of a group of examples go through the model as one batch of at most
``chunk_rows`` rows (one example per call if its slots alone exceed that). On a CPU the forward
is compute-bound and 1024 rows is about as fast as a per-slot loop (benchmarks/bench_tokenwise.py;
4096 rows was 2x slower, out of cache); the batching pays on a GPU, where larger chunks help. Draws are made for
all examples up front from counter-based keys, so the result does not depend on ``chunk_rows``.
Labels: ``predict(output)`` if given, else argmax over [B, C>1] outputs, else (output > 0.5).

Returns float64 tensors: ``mean`` [] or [M]; ``per_position`` [P] or [M, P] (flip rate of each
slot over examples and draws); ``per_example`` [B] or [M, B]; ``positions`` [P, k].
With ``mask`` [B, L] (False = padding) a slot counts for an example only where all of its
positions are real tokens; the mean averages each example over its own real tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn
from torch.func import functional_call, vmap

from .. import rng
from ..errors import InputError
from .lift import MethodCall, is_stack
from .sensitivity import default_predict

TOKEN_STREAM = 0x70CE  # rng stream of TokenReplacement's tokens

EMBED_STREAM = 0xE3BD  # rng stream of EmbeddingNoise
PATCH_STREAM = 0x9A7C  # rng stream of PatchNoise
PIXEL_STREAM = 0x91C5  # rng stream of ScatteredPixelNoise


# -- perturbations -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenReplacement:
    """Replace the token(s) at a slot by uniform vocabulary tokens (token ids [B, L])."""

    vocab_size: int
    exclude_same: bool = False
    space = "input"

    def n_positions(self, shape) -> int:
        return shape[1]

    def copies(self, x: torch.Tensor, pos: torch.Tensor, key) -> torch.Tensor:
        """x [B, L] -> [B, P, L]: slot p of example b with its positions' tokens replaced."""
        if x.dtype.is_floating_point:
            raise InputError("x", "TokenReplacement needs token ids", "LongTensor [B, L]")
        B, L = x.shape
        P, k = pos.shape
        if self.exclude_same:
            if self.vocab_size < 2:
                raise InputError("vocab_size", "exclude_same needs at least two tokens", ">= 2")
            # a uniform draw among the other V-1 tokens: shift the original by 1..V-1 (mod V)
            shift = rng.randint(key, (B, P, k), self.vocab_size, low=1)
            new = (x[:, pos] + shift) % self.vocab_size
        else:
            new = rng.randint(key, (B, P, k), self.vocab_size)
        rows = x[:, None, :].expand(B, P, L)
        return rows.scatter(2, pos[None].expand(B, P, k), new.to(x.dtype))

    stream = TOKEN_STREAM


@dataclass(frozen=True)
class EmbeddingNoise:
    """+ N(0, sigma^2 I) on the embedding of the token(s) at a slot (needs embed/forward_embedded)."""

    sigma: float
    space = "embedding"
    stream = EMBED_STREAM

    def n_positions(self, shape) -> int:
        return shape[-2]

    def delta(self, shape, pos: torch.Tensor, key, dtype, device) -> torch.Tensor:
        """[B, P, T, D] noise that is zero outside each slot's positions."""
        B, T, D = shape
        P, k = pos.shape
        z = rng.normal(key, (B, P, k, D), dtype).to(device) * self.sigma
        where = (pos[..., None] == torch.arange(T, device=device)).to(dtype)  # [P, k, T]
        return torch.einsum("bpkd,pkt->bptd", z, where)


@dataclass(frozen=True)
class PatchNoise:
    """+ sigma N(0, 1) on every pixel and channel of one patch x patch square (images [B, C, H, W])."""

    sigma: float
    patch: int = 4
    space = "input"
    stream = PATCH_STREAM

    def grid(self, shape) -> tuple[int, int]:
        H, W = shape[-2:]
        if H % self.patch or W % self.patch:
            raise InputError("patch", f"{self.patch} does not divide the image size {H}x{W}",
                             "a divisor of height and width")
        return H // self.patch, W // self.patch

    def n_positions(self, shape) -> int:
        gh, gw = self.grid(shape)
        return gh * gw

    def delta(self, shape, pos: torch.Tensor, key, dtype, device) -> torch.Tensor:
        B, C, H, W = shape
        gh, gw = self.grid(shape)
        p = self.patch
        P, k = pos.shape
        z = rng.normal(key, (B, P, k, C, p, p), dtype).to(device) * self.sigma
        where = (pos[..., None] == torch.arange(gh * gw, device=device)).to(dtype)
        where = where.view(P, k, gh, gw)
        full = torch.einsum("bpkcij,pkhw->bpchiwj", z, where)  # [B, P, C, gh, p, gw, p]
        return full.reshape(B, P, C, H, W)


@dataclass(frozen=True)
class ScatteredPixelNoise:
    """The reference's image measure: ``pixels`` random pixels shared by the batch (distinct,
    redrawn for every slot and draw), + sigma N(0, 1) on all their channels. Slots = ``sets``."""

    sigma: float
    pixels: int = 16
    sets: int = 1
    space = "input"
    stream = PIXEL_STREAM

    def n_positions(self, shape) -> int:
        return self.sets

    def delta(self, shape, pos: torch.Tensor, key, dtype, device) -> torch.Tensor:
        B, C, H, W = shape
        P, k = pos.shape
        if k != 1 or self.pixels > H * W:
            raise InputError("positions", "scattered pixels take single slots and pixels <= H*W",
                             "ints below sets")
        order = rng.uniform(rng.derive(key, 1), (P, H * W)).to(device).argsort(-1)
        where = order[:, : self.pixels]  # [P, pixels], distinct per slot
        z = rng.normal(rng.derive(key, 2), (B, P, C, self.pixels), dtype).to(device) * self.sigma
        full = torch.zeros(B, P, C, H * W, dtype=dtype, device=device)
        full.scatter_add_(3, where[None, :, None, :].expand(B, P, C, self.pixels), z)
        return full.view(B, P, C, H, W)


Perturbation = Union[TokenReplacement, EmbeddingNoise, PatchNoise, ScatteredPixelNoise]


# -- model access ----------------------------------------------------------------------------------
def stack_method(stack, method: str, x: torch.Tensor, shared_input: bool = True) -> torch.Tensor:
    """``member.method(x)`` for every member of a stack, vmapped: [M, ...]."""
    wrapper = MethodCall(stack.base, method)

    def one(p, b, xx):
        return functional_call(wrapper, ({"base." + k: v for k, v in p.items()},
                                         {"base." + k: v for k, v in b.items()}), (xx,))

    return vmap(one, in_dims=(0, 0, None if shared_input else 0))(stack.params, stack.buffers, x)


def supports_embedding(model) -> bool:
    base = model.base if is_stack(model) else model
    return hasattr(base, "embed") and hasattr(base, "forward_embedded")


def _positions(spec, n: int, device) -> torch.Tensor:
    if spec is None:
        return torch.arange(n, device=device)[:, None]
    items = list(spec)
    if not items:
        raise InputError("positions", "no positions", "ints or equal-length lists of ints")
    rows = [[int(i)] if not isinstance(i, (list, tuple)) else [int(j) for j in i] for i in items]
    if len({len(r) for r in rows}) != 1 or not rows[0]:
        raise InputError("positions", "groups of different lengths", "equal-length lists of ints")
    pos = torch.tensor(rows, dtype=torch.int64, device=device)
    if pos.min() < 0 or pos.max() >= n:
        raise InputError("positions", f"{rows} not all in range", f"0 <= position < {n}")
    return pos


# -- the measure -----------------------------------------------------------------------------------
@torch.no_grad()
def tokenwise_flip_sensitivity(model, x: torch.Tensor, perturbation: Perturbation, key,
                               draws: int = 1, positions: Optional[Sequence] = None,
                               mask: Optional[torch.Tensor] = None,
                               predict: Optional[Callable] = None,
                               chunk_rows: int = 1024) -> dict:
    """Label-flip rate per slot and its mean; see the module docstring."""
    if draws < 1:
        raise InputError("draws", f"{draws} draws", ">= 1")
    stack = is_stack(model)
    params = model.parameters() if isinstance(model, nn.Module) else iter(())
    device = model.device if stack else next((p.device for p in params), x.device)
    x = x.to(device)
    predict = predict or default_predict(0.5)
    labels = (lambda out: vmap(predict)(out)) if stack else predict  # noqa: E731

    if perturbation.space == "embedding":
        if not supports_embedding(model):
            raise InputError("model", f"{type(model.base if stack else model).__name__} has no "
                             "embed(x) / forward_embedded(e)", "models with the embedding protocol")
        inp = stack_method(model, "embed", x) if stack else model.embed(x)  # [(M,) B, T, D]
        run = (lambda e: stack_method(model, "forward_embedded", e, shared_input=False)) \
            if stack else model.forward_embedded
        lead = 1 if stack else 0
    else:
        inp = x
        run = model.forward if stack else model
        lead = 0
    item_shape = tuple(inp.shape[lead:])
    B = item_shape[0]
    pos = _positions(positions, perturbation.n_positions(item_shape), device)
    P = pos.shape[0]
    if mask is not None:
        if mask.shape != x.shape[:2]:
            raise InputError("mask", f"shape {tuple(mask.shape)} is not {tuple(x.shape[:2])}",
                             "bool [B, L]")
        valid = mask.to(device).bool()[:, pos].all(-1).to(torch.float64)  # [B, P]
    else:
        valid = torch.ones(B, P, dtype=torch.float64, device=device)

    key = torch.as_tensor(key, dtype=torch.int64, device=device)
    keys = [rng.derive(key, perturbation.stream, d) for d in range(draws)]
    # Draws for all examples up front (counter-based), so chunking cannot change them.
    if hasattr(perturbation, "delta"):
        delta = torch.stack([perturbation.delta(item_shape, pos, k, inp.dtype, device)
                             for k in keys], dim=1)  # [B, draws, P, ...]
    else:
        delta = torch.stack([perturbation.copies(inp, pos, k) for k in keys], dim=1)

    per_call = max(1, chunk_rows // (draws * P + 1))
    flips = []
    for start in range(0, B, per_call):
        sl = slice(start, min(B, start + per_call))
        clean = inp[(slice(None),) * lead + (sl,)]  # [(M,) b, ...]
        b = clean.shape[lead]
        rest = clean.shape[lead + 1:]
        if hasattr(perturbation, "delta"):
            grow = (slice(None),) * (lead + 1) + (None, None)
            copies = clean[grow] + delta[sl]  # [(M,) b, draws, P, ...]
        else:
            copies = delta[sl]
        rows = torch.cat([clean, copies.reshape(*clean.shape[:lead], b * draws * P, *rest)],
                         dim=lead)  # one forward: the clean inputs, then every copy
        out = labels(run(rows))  # [(M,) b (1 + draws P)]
        base, pert = out[..., :b], out[..., b:].reshape(*out.shape[:-1], b, draws, P)
        flips.append((pert != base[..., None, None]).to(torch.float64).mean(-2))  # [(M,) b, P]
    rate = torch.cat(flips, dim=-2) * valid  # [(M,) B, P]
    count = valid.sum(-1)
    per_example = rate.sum(-1) / count.clamp(min=1)
    has = count > 0
    return {"mean": per_example[..., has].mean(-1),
            "per_position": rate.sum(-2) / valid.sum(0),
            "per_example": per_example,
            "positions": pos}


def tokenwise_sensitivity(model, x: torch.Tensor, vocab_size: int, key, draws: int = 1,
                          positions: Optional[Sequence[int]] = None, exclude_same: bool = False,
                          predict: Optional[Callable] = None) -> dict:
    """The paper's measure on token ids x [B, L]: each position (all, or ``positions``) replaced
    by a uniform vocabulary token, ``draws`` times; the rate at which the label changes. A draw
    may equal the original token (as in the paper: a position that always matters flips at
    (V-1)/V); ``exclude_same`` draws among the other V-1 tokens (rate 1). ``model``: a module,
    any callable [N, L] -> outputs, or a Stack (every member, [M] results). Returns ``mean``,
    ``per_position`` [P] (or [M, P]) and ``positions`` [P]."""
    if x.dim() != 2:
        raise InputError("x", f"shape {tuple(x.shape)} is not [B, L]", "LongTensor [B, L]")
    out = tokenwise_flip_sensitivity(model, x, TokenReplacement(vocab_size, exclude_same), key,
                                     draws, positions, predict=predict)
    # the mean over positions of the per-position rates (no mask: every example has them all)
    return {"mean": out["per_position"].mean(-1), "per_position": out["per_position"],
            "positions": out["positions"][:, 0]}


def flip_rate_stderr(result: dict) -> torch.Tensor:
    """Standard error of ``mean`` from the spread of per-example rates (examples independent)."""
    pe = result["per_example"]
    return pe.std(-1) / math.sqrt(pe.shape[-1])


def _register() -> None:
    from ..registry import MEASURES

    MEASURES.add("tokenwise_flip_sensitivity", tokenwise_flip_sensitivity,
                 "label-flip rate per token / patch under replacement or Gaussian noise, any "
                 "model or stack (Vasudeva et al.)")
    MEASURES.add("tokenwise_sensitivity", tokenwise_sensitivity,
                 "label-flip rate under random single-token replacement (Vasudeva et al.)")


_register()

__all__ = ["TokenReplacement", "EmbeddingNoise", "PatchNoise", "ScatteredPixelNoise",
           "tokenwise_flip_sensitivity", "flip_rate_stderr", "stack_method", "supports_embedding",
           "tokenwise_sensitivity"]
