"""Encoder transformer for sequence classification and regression (Hahn & Rofin's model).

Defaults follow the sharpness paper's reference model: 2 layers, d_model 128, 2 heads, FFN 128,
ReLU, post-LN (eps 1e-5), no final LayerNorm, token embedding (d/2) *concatenated* with a learned
position embedding (d/2), read-out at the last position. Every switch the lab needs is a field.
The reference's FFN width equals d_model (``dim_feedforward=hidden_dim``), so set d_ff with it;
``qkv_init: xavier`` initializes q/k/v as its ``nn.MultiheadAttention`` does.

Activations returned with ``acts=True`` (B = batch, L = length, d = d_model):
  ``embed``              [B, L, d]  input to the first layer
  ``layers.{i}.ln1_in``  [B, L, d]  input of layer i's first LayerNorm (post-LN: x + attn(x))
  ``layers.{i}.ln2_in``  [B, L, d]  input of layer i's second LayerNorm
  ``layers.{i}.attn``    [B, H, L, L] attention pattern
  ``layers.{i}.out``     [B, L, d]  layer output (residual stream)
  ``readout``            [B, d]     vector fed to the head
With ``norm='none'`` the ln*_in entries are absent.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from .attention import SelfAttention, sinusoidal_positions
from .base import ModelConfig, OutputHead, register_model
from .reference_init import xavier_attention_


class TransformerConfig(ModelConfig):
    d_model: int = Field(default=128, gt=0, description="residual width")
    n_heads: int = Field(default=2, gt=0, description="attention heads")
    n_layers: int = Field(default=2, ge=1, description="encoder layers")
    d_ff: int = Field(default=128, gt=0, description="feed-forward width")
    norm: Literal["post", "pre", "none"] = Field(default="post", description="LayerNorm placement")
    positions: Literal["learned", "sinusoidal", "none"] = Field(default="learned")
    embed: Literal["concat", "add"] = Field(
        default="concat", description="combine token and position embeddings"
    )
    readout: Literal["last", "mean"] = Field(default="last", description="read-out position")
    max_len: int = Field(default=0, ge=0, description="position table size; 0 = task length")
    ln_eps: float = Field(default=1e-5, gt=0)
    qkv_init: Literal["default", "xavier"] = Field(
        default="default", description="xavier: q/k/v as torch's MultiheadAttention initializes "
        "them in the reference (one packed Xavier-uniform [3d, d] matrix, zero q/k/v and output "
        "biases; models/reference_init.py); default: nn.Linear's init, as before")

    @model_validator(mode="after")
    def _shapes(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.embed == "concat" and self.positions != "none" and self.d_model % 2:
            raise ValueError("embed=concat needs an even d_model")
        return self


class EncoderLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.norm = cfg.norm
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model)
        if cfg.norm != "none":
            self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
            self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)

    def ff(self, h):
        return self.ff2(torch.relu(self.ff1(h)))

    def forward(self, h, acts: dict, prefix: str):
        if self.norm == "post":
            a, pattern = self.attn(h)
            acts[prefix + "ln1_in"] = h = h + a
            h = self.ln1(h)
            acts[prefix + "ln2_in"] = h = h + self.ff(h)
            h = self.ln2(h)
        elif self.norm == "pre":
            acts[prefix + "ln1_in"] = h
            a, pattern = self.attn(self.ln1(h))
            h = h + a
            acts[prefix + "ln2_in"] = h
            h = h + self.ff(self.ln2(h))
        else:
            a, pattern = self.attn(h)
            h = h + a
            h = h + self.ff(h)
        acts[prefix + "attn"] = pattern
        acts[prefix + "out"] = h
        return h


class EncoderTransformer(nn.Module):
    def __init__(self, cfg: TransformerConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.cfg = cfg
        self.max_len = cfg.max_len or seq_len
        concat = cfg.embed == "concat" and cfg.positions != "none"
        d_tok = cfg.d_model // 2 if concat else cfg.d_model
        d_pos = cfg.d_model - d_tok if concat else cfg.d_model
        self.token_embed = nn.Embedding(vocab_size, d_tok)
        if cfg.positions == "learned":
            self.pos_embed = nn.Embedding(self.max_len, d_pos)
        elif cfg.positions == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(self.max_len, d_pos))
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_layers))
        self.head = OutputHead(cfg.d_model, n_outputs)
        if cfg.qkv_init == "xavier":  # after every module exists: the default path draws nothing more
            for layer in self.layers:
                xavier_attention_(layer.attn)

    def positions(self, L: int, device):
        if self.cfg.positions == "learned":
            return self.pos_embed(torch.arange(L, device=device))
        return self.pos_table[:L]

    def forward(self, x, acts: bool = False):
        record: dict = {}
        h = self.token_embed(x)
        if self.cfg.positions != "none":
            p = self.positions(x.shape[-1], x.device).expand(x.shape[0], -1, -1)
            h = torch.cat([h, p], -1) if self.cfg.embed == "concat" else h + p
        record["embed"] = h
        for i, layer in enumerate(self.layers):
            h = layer(h, record, f"layers.{i}.")
        r = h[:, -1] if self.cfg.readout == "last" else h.mean(1)
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("transformer", TransformerConfig, "encoder transformer (pre/post/no LN, positions, read-out)")
def build_transformer(cfg: TransformerConfig, task) -> nn.Module:
    return EncoderTransformer(cfg, task.vocab_size, task.seq_len, task.n_outputs)
