"""Progress measures of the grokking study (Vasudeva et al.; Nanda et al.'s Fourier view).

* ``fourier_share(emb, top_k)``: the share of a token embedding's energy in its ``top_k`` key
  frequencies. The embedding rows of the residues 0..p-1 are a signal over Z_p (one per
  embedding dimension); its DFT over the residues gives, per frequency k, the energy
  sum_d |E^_k,d|^2. Frequencies k and p-k of a real signal are one cosine/sine pair, so they are
  counted together as "key frequency" k = 1..floor(p/2); the constant term (k = 0) counts in
  the total but is never a key frequency. A generalizing modular-addition network concentrates
  its embedding on a few key frequencies (Nanda et al. 2023): a pure cosine has share 1 with
  top_k = 1, an isotropic random embedding about top_k / floor(p/2) plus its spread.
* ``embedding_noise_flips``: the reference's sensitivity (0.1 N(0, 1) on the embeddings of
  a and b together, one draw, argmax flips), written for one model; a stack's members each
  have their own inputs [M, B, L] (their own train splits), lifted by ``lift.over_stack``. ``measure.tokenwise.tokenwise_flip_sensitivity``
  takes one input batch shared by all members; this function uses the same perturbation
  (``EmbeddingNoise.delta`` with the same key derivation), so with shared inputs both agree.
* ``token_replacement_flips``: the same with a and b replaced by uniform vocabulary
  tokens, for models without the embedding protocol.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .. import rng
from .lift import is_stack, over_stack
from .tokenwise import EmbeddingNoise, TokenReplacement


def frequency_energy(emb: torch.Tensor) -> torch.Tensor:
    """Energy of emb [..., p, d] (rows = residues) per frequency 0..floor(p/2): [..., p//2 + 1].

    Conjugate frequencies k and p - k are summed, so the entries add up to p * ||emb||^2
    (Parseval)."""
    p = emb.shape[-2]
    power = torch.fft.rfft(emb.float(), dim=-2).abs().pow(2).sum(-1)  # [..., p//2 + 1]
    weight = torch.full((p // 2 + 1,), 2.0, device=emb.device)
    weight[0] = 1.0
    if p % 2 == 0:
        weight[-1] = 1.0  # the Nyquist frequency has no partner
    return power * weight


def fourier_share(emb: torch.Tensor, top_k: int = 5) -> torch.Tensor:
    """Share of the energy of emb [..., p, d] in its ``top_k`` strongest key frequencies (k >= 1)."""
    energy = frequency_energy(emb)
    top = energy[..., 1:].topk(min(top_k, energy.shape[-1] - 1), dim=-1).values.sum(-1)
    return top / energy.sum(-1).clamp_min(torch.finfo(energy.dtype).tiny)


def key_frequencies(emb: torch.Tensor, top_k: int = 5) -> torch.Tensor:
    """The ``top_k`` strongest key frequencies (1..floor(p/2)) of emb [..., p, d]: [..., top_k]."""
    energy = frequency_energy(emb)
    return energy[..., 1:].topk(min(top_k, energy.shape[-1] - 1), dim=-1).indices + 1


def _labels(out: torch.Tensor) -> torch.Tensor:
    return out.argmax(-1)


def _flip_rate(labels: torch.Tensor, B: int) -> torch.Tensor:
    return (labels[:B] != labels[B:]).float().mean(-1)


def _per_member_inputs(fn, model, x: torch.Tensor, *rest):
    """``fn`` over a stack whose members each have their own inputs x [M, B, L]."""
    return over_stack(fn, model, x, *rest, in_dims=(0,) + (None,) * len(rest),
                      peak_bytes=lambda: model.forward_peak((2 * x.shape[1], *x.shape[2:]), x.dtype))


@torch.no_grad()
def embedding_noise_flips(model, x: torch.Tensor, sigma: float, key,
                          positions: Sequence[int] = (0, 1)) -> torch.Tensor:
    """Flip rate under + sigma N(0, I) on the embeddings at ``positions`` (all at once, one
    draw) of inputs x [B, L]; a Stack with members' own inputs x [M, B, L] -> [M]. The noise is
    the same for every member (common random numbers) and equals draw 0 of
    ``tokenwise_flip_sensitivity(..., EmbeddingNoise(sigma), positions=[list(positions)])``."""
    if is_stack(model):
        return _per_member_inputs(embedding_noise_flips, model, x, sigma, key, positions)
    perturbation = EmbeddingNoise(sigma)
    e = model.embed(x)  # [B, T, D]
    pos = torch.tensor([list(positions)], dtype=torch.int64, device=e.device)  # one slot
    k = rng.derive(torch.as_tensor(key, dtype=torch.int64, device=e.device), perturbation.stream, 0)
    delta = perturbation.delta(tuple(e.shape), pos, k, e.dtype, e.device)[:, 0]  # [B, T, D]
    both = torch.cat([e, e + delta])  # one forward: clean rows, then noisy rows
    return _flip_rate(_labels(model.forward_embedded(both)), x.shape[0])


@torch.no_grad()
def token_replacement_flips(model, x: torch.Tensor, vocab_size: int, key,
                            positions: Sequence[int] = (0, 1)) -> torch.Tensor:
    """Flip rate when the tokens at ``positions`` of x [B, L] are all replaced by uniform
    vocabulary tokens (one draw; a draw may equal the original); a Stack with members' own
    inputs x [M, B, L] -> [M]."""
    if is_stack(model):
        return _per_member_inputs(token_replacement_flips, model, x, vocab_size, key, positions)
    perturbation = TokenReplacement(vocab_size)
    pos = torch.tensor([list(positions)], dtype=torch.int64, device=x.device)
    k = rng.derive(torch.as_tensor(key, dtype=torch.int64, device=x.device), perturbation.stream, 0)
    both = torch.cat([x, perturbation.copies(x, pos, k)[:, 0]])
    return _flip_rate(_labels(model(both)), x.shape[0])
