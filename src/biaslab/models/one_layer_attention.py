"""One attention layer: value matrix W_v, then a linear read-out U (Vasudeva et al.'s model for
the synthetic-vocabulary experiment, sheet §2).

    f(X) = U · mean_t sum_s softmax_s(q_t · k_s / sqrt(d)) W_v e_s,   q = W_q e, k = W_k e

with e the token embedding (plus a learned position embedding if ``positions``). No residual,
no LayerNorm, no MLP: the only paths from a token to the output go through attention, W_v and U.
Embedding protocol: ``embed(x)`` is e, ``forward_embedded(e)`` the rest (no padding here).

Activations (``acts=True``): ``embed`` [B, T, d], ``attn`` [B, T, T], ``values`` [B, T, d]
(W_v e), ``readout`` [B, d] (the pooled vector fed to U).
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model


class OneLayerAttentionConfig(ModelConfig):
    d_model: int = Field(default=64, gt=0, description="embedding width (= query/key/value width)")
    positions: bool = Field(default=False, description="add a learned position embedding")


class OneLayerAttention(nn.Module):
    def __init__(self, cfg: OneLayerAttentionConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        d = cfg.d_model
        self.token_embed = nn.Embedding(vocab_size, d)
        self.pos_embed = nn.Embedding(seq_len, d) if cfg.positions else None
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, d, bias=False)
        self.v = nn.Linear(d, d, bias=False)  # W_v
        self.head = OutputHead(d, n_outputs)  # U

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        e = self.token_embed(x)
        if self.pos_embed is not None:
            e = e + self.pos_embed(torch.arange(x.shape[-1], device=x.device))
        return e

    def forward_embedded(self, e: torch.Tensor, acts: bool = False):
        scores = self.q(e) @ self.k(e).transpose(-1, -2) / math.sqrt(e.shape[-1])
        pattern = scores.softmax(-1)
        values = self.v(e)
        r = (pattern @ values).mean(1)
        out = self.head(r)
        if acts:
            return out, {"embed": e, "attn": pattern, "values": values, "readout": r}
        return out

    def forward(self, x, acts: bool = False):
        return self.forward_embedded(self.embed(x), acts)


@register_model("one_layer_attention", OneLayerAttentionConfig,
                "one softmax attention layer, value matrix W_v then linear U (synthetic vocabulary)")
def build_one_layer_attention(cfg: OneLayerAttentionConfig, task) -> nn.Module:
    return OneLayerAttention(cfg, task.vocab_size, task.seq_len, task.n_outputs)
