"""Multi-head self-attention written with plain matmuls.

``F.scaled_dot_product_attention`` has no vmap batching rule on CUDA and falls back to a slow
per-example loop on CPU, so stacked training could not use it. Plain matmul + softmax vmaps and
compiles everywhere, and returns the attention pattern for the analysis measures.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, d_head: int | None = None, bias: bool = True,
                 d_value: int | None = None):
        super().__init__()
        self.n_heads = n_heads
        self.d_head = d_head or d_model // n_heads
        self.d_value = d_value or self.d_head
        self.q = nn.Linear(d_model, n_heads * self.d_head, bias=bias)
        self.k = nn.Linear(d_model, n_heads * self.d_head, bias=bias)
        self.v = nn.Linear(d_model, n_heads * self.d_value, bias=bias)
        self.out = nn.Linear(n_heads * self.d_value, d_model, bias=bias)

    def forward(self, h: torch.Tensor, causal: bool = False):
        """h [B, L, d] -> (output [B, L, d], pattern [B, heads, L, L])."""
        B, L, _ = h.shape
        q = self.q(h).view(B, L, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(h).view(B, L, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(h).view(B, L, self.n_heads, self.d_value).transpose(1, 2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)
        if causal:
            mask = torch.ones(L, L, dtype=torch.bool, device=h.device).triu(1)
            scores = scores.masked_fill(mask, float("-inf"))
        pattern = scores.softmax(-1)
        mixed = (pattern @ v).transpose(1, 2).reshape(B, L, self.n_heads * self.d_value)
        return self.out(mixed), pattern


def sinusoidal_positions(max_len: int, d: int) -> torch.Tensor:
    """The fixed sin/cos table of Vaswani et al., [max_len, d]."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    i = torch.arange(0, d, 2, dtype=torch.float32)
    angle = pos / (10000.0 ** (i / d))
    table = torch.zeros(max_len, d)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle[:, : d // 2])
    return table
