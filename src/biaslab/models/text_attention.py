"""Pieces of the text models: padding travels inside the embedding, masked attention.

The token-wise measure (``measure/tokenwise.py``) splits a model at its embedding:
``embed(x) -> e [B, T, D]`` and ``forward_embedded(e)``. Text batches are left-padded, and the
rest of the model must still know which positions are padding; so every text model's ``embed``
returns exactly zero rows at padded positions, and ``forward_embedded`` reads the mask back as
"rows that are not all zero". A real token's embedding is never exactly zero (it is a learned
vector, after LayerNorm or plus a position vector), and noise added to a real token keeps it
non-zero, so ``forward(x) == forward_embedded(embed(x))`` holds with the padding respected.
(Noise added to a *padded* slot turns it into a token; the measure's ``mask`` leaves such
slots out of every rate, so that case never counts.)

``MaskedSelfAttention`` is the plain-matmul attention of ``attention.py`` (vmappable, no SDPA)
with a key-padding mask, an optional causal mask, and the reference's two normalisations:
``softmax``, or the un-normalised ``relu`` attention relu(QK^T / sqrt(d) + mask) of
Vasudeva et al.'s RoBERTa variant (sheet §3), where masked scores become 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn


PAD = 0  #: the [PAD] id of tasks/tokenizer.py (text models do not import tasks)

#: a finite "minus infinity": softmax gives exactly 0 to masked keys, and a row with every key
#: masked (a padded query) stays finite instead of turning into NaN that would leak through
#: 0 * NaN in the next layer.
MASKED = -1e9


def pad_mask(x: torch.Tensor) -> torch.Tensor:
    """True at real tokens of token ids [B, T]."""
    return x != PAD


def mask_of(e: torch.Tensor) -> torch.Tensor:
    """True at real tokens of an embedding [B, T, D] made by a text model's ``embed``."""
    return e.abs().amax(-1) > 0


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted from each sequence's first real token (0 at padding), [B, T].

    With left padding the same sentence gets the same positions however much it is padded,
    as with RoBERTa's and GPT-2's position ids under an attention mask."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class MaskedSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, attention: str = "softmax", bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.attention = attention
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, h: torch.Tensor, mask: torch.Tensor, causal: bool = False):
        """h [B, T, d], mask [B, T] (True = real) -> (output [B, T, d], pattern [B, H, T, T])."""
        B, T, d = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        allowed = mask[:, None, None, :]
        if causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
        scores = scores.masked_fill(~allowed, MASKED)
        pattern = scores.softmax(-1) if self.attention == "softmax" else torch.relu(scores)
        mixed = (pattern @ v).transpose(1, 2).reshape(B, T, d)
        return self.out(mixed), pattern
