"""A GPT-2-like decoder for sequence classification (Vasudeva et al.'s "GPT-2-scratch", sheet §3).

4 layers, 8 heads, hidden 256 by default; pre-LN blocks with GELU, a final LayerNorm, token plus
learned position embeddings, causal attention that also masks padding, and the classification
read out at the last token (the last real token of a left-padded pair), as GPT-2's sequence
classifier does. Weights start at N(0, 0.02). No dropout (see ``roberta.py``).

Embedding protocol: ``embed(x)`` = token + position embedding, exactly zero at padding (the
sheet: noise goes on token+position embeddings for GPT-2); ``forward_embedded(e)`` the rest.

Activations (``acts=True``): ``embed`` [B, T, d], ``layers.{i}.attn`` [B, H, T, T],
``layers.{i}.out`` [B, T, d], ``readout`` [B, d] (last position after the final LayerNorm).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from .base import ModelConfig, register_model
from .roberta import init_like_bert
from .text_attention import MaskedSelfAttention, mask_of, pad_mask, positions_of


class GPT2Config(ModelConfig):
    d_model: int = Field(default=256, gt=0, description="hidden size")
    n_heads: int = Field(default=8, gt=0, description="attention heads")
    n_layers: int = Field(default=4, ge=1, description="decoder blocks")
    d_ff: int = Field(default=1024, gt=0, description="MLP width (GPT-2: 4 d_model)")
    max_len: int = Field(default=0, ge=0, description="position table size; 0 = task length")
    ln_eps: float = Field(default=1e-5, gt=0)
    init_std: float = Field(default=0.02, gt=0, description="std of weights at init (GPT-2: 0.02)")

    @model_validator(mode="after")
    def _heads(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self


class GPT2Block(nn.Module):
    def __init__(self, cfg: GPT2Config):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.attn = MaskedSelfAttention(cfg.d_model, cfg.n_heads)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model)

    def forward(self, h, mask, acts: dict, prefix: str):
        a, pattern = self.attn(self.ln1(h), mask, causal=True)
        h = h + a
        h = h + self.ff2(nn.functional.gelu(self.ff1(self.ln2(h))))
        acts[prefix + "attn"] = pattern
        acts[prefix + "out"] = h
        return h


class GPT2Classifier(nn.Module):
    def __init__(self, cfg: GPT2Config, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.max_len or seq_len, cfg.d_model)
        self.layers = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg.n_layers))
        self.final_ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.head = nn.Linear(cfg.d_model, n_outputs)
        init_like_bert(self, cfg.init_std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        mask = pad_mask(x)
        e = self.token_embed(x) + self.pos_embed(positions_of(mask))
        return e * mask[..., None].to(e.dtype)

    def forward_embedded(self, e: torch.Tensor, acts: bool = False):
        record: dict = {"embed": e}
        mask = mask_of(e)
        h = e
        for i, layer in enumerate(self.layers):
            h = layer(h, mask, record, f"layers.{i}.")
        r = self.final_ln(h[:, -1])  # left padding: the last position is the last real token
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out

    def forward(self, x, acts: bool = False):
        return self.forward_embedded(self.embed(x), acts)


@register_model("gpt2", GPT2Config, "GPT-2-like causal decoder from scratch, last-token read-out")
def build_gpt2(cfg: GPT2Config, task) -> nn.Module:
    return GPT2Classifier(cfg, task.vocab_size, task.seq_len, task.n_outputs)
