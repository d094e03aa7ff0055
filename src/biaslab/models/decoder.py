"""Decoder-only (causal) transformer of Zhang et al.'s anchor-function study.

Defaults follow the paper (eqs 3-6) and its code: 1 head, d_model 400, FFN 1200, d_k = d_v =
200, post-LN, learned absolute positions (max_pos 20) *added* to the token embedding, causal
mask, no biases in Q/K/V, attention output and FFN, ReLU, a linear output projection with
bias and no final LayerNorm. The output is the logits at the last position, [B, vocab]: the
paper trains with the loss on the last token only, and under a causal mask the last position
is the only one that sees the whole sequence.

Post-LN block:  X_ao = LN1(X + Attn(X));  X_next = LN2(X_ao + FFN(X_ao)).
Pre-LN block:   X_ao = X + Attn(LN1(X));  X_next = X_ao + FFN(LN2(X_ao))  (optional final LN).

With gamma (``build_model``), every Linear and Embedding weight is redrawn with std d_in^-gamma
where d_in is the Linear's in_features or the Embedding's width, which gives exactly the
paper's table: Q/K/V d_model, attention output n_heads*d_v, FFN in d_model, FFN out d_ff,
output projection d_model, token and position embeddings d_model. LayerNorms keep 1 and 0.
The head's bias: ``head_bias_init="torch"`` keeps PyTorch's default U(+-1/sqrt(d_model)), as
the authors' model does (its bias is not in their gamma table); the default "gamma" redraws
it with std d_model^-gamma like every Linear parameter (the behaviour of runs stored before).

Activations returned with ``acts=True`` (B = batch, L = length, d = d_model, H = heads):
  ``embed``              [B, L, d]     token + position embedding
  ``layers.{i}.ln1_in``  [B, L, d]     input of LN1 (post-LN: X + Attn(X); pre-LN: X)
  ``layers.{i}.attn``    [B, H, L, L]  attention pattern (row = query, causal)
  ``layers.{i}.ao``      [B, L, d]     X_ao: post-LN, after LN1; pre-LN, the stream after attention
  ``layers.{i}.ln2_in``  [B, L, d]     input of LN2 (post-LN: X_ao + FFN(X_ao); pre-LN: X_ao)
  ``layers.{i}.out``     [B, L, d]     layer output
  ``readout``            [B, d]        last position of the final stream (after the final LN if any)
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from ..errors import InputError
from .attention import SelfAttention
from .base import ModelConfig, register_model


class DecoderConfig(ModelConfig):
    d_model: int = Field(default=400, gt=0, description="residual width")
    n_heads: int = Field(default=1, gt=0, description="attention heads")
    n_layers: int = Field(default=2, ge=1, description="decoder blocks (the paper: 2..7)")
    d_ff: int = Field(default=1200, gt=0, description="feed-forward width")
    d_head: int = Field(default=200, gt=0, description="d_k: query/key width per head")
    d_value: Optional[int] = Field(default=None, gt=0, description="d_v per head; None = d_head")
    norm: Literal["post", "pre"] = Field(default="post", description="LayerNorm placement")
    final_norm: bool = Field(default=False, description="LayerNorm before the output projection")
    bias: bool = Field(default=False, description="biases in Q/K/V, attention output and FFN")
    head_bias: bool = Field(default=True, description="bias of the output projection")
    head_bias_init: Literal["gamma", "torch"] = Field(
        default="gamma", description="with a gamma init: 'torch' keeps the head bias at PyTorch's "
        "default (the authors' model), 'gamma' redraws it with the weights (the old behaviour)")
    max_pos: int = Field(default=20, gt=0, description="size of the learned position table")
    ln_eps: float = Field(default=1e-5, gt=0)


class DecoderBlock(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.pre = cfg.norm == "pre"
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads, cfg.d_head, bias=cfg.bias,
                                  d_value=cfg.d_value or cfg.d_head)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)

    def ff(self, h):
        return self.ff2(torch.relu(self.ff1(h)))

    def forward(self, h, acts: dict, prefix: str):
        if self.pre:
            acts[prefix + "ln1_in"] = h
            a, pattern = self.attn(self.ln1(h), causal=True)
            acts[prefix + "ao"] = h = h + a
            acts[prefix + "ln2_in"] = h
            h = h + self.ff(self.ln2(h))
        else:
            a, pattern = self.attn(h, causal=True)
            acts[prefix + "ln1_in"] = h = h + a
            acts[prefix + "ao"] = h = self.ln1(h)
            acts[prefix + "ln2_in"] = h = h + self.ff(h)
            h = self.ln2(h)
        acts[prefix + "attn"] = pattern
        acts[prefix + "out"] = h
        return h


class DecoderTransformer(nn.Module):
    def __init__(self, cfg: DecoderConfig, vocab_size: int, n_outputs: int):
        super().__init__()
        self.cfg = cfg
        self.token_embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.max_pos, cfg.d_model)
        self.layers = nn.ModuleList(DecoderBlock(cfg) for _ in range(cfg.n_layers))
        self.final_ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps) if cfg.final_norm else None
        self.head = nn.Linear(cfg.d_model, n_outputs, bias=cfg.head_bias)
        self.head_bias = None
        if cfg.head_bias and cfg.head_bias_init == "torch":
            # The gamma init redraws every parameter of a Linear; a bias held by this module
            # (not a Linear) keeps the default it was drawn with above, in the same RNG order.
            self.head_bias = self.head.bias
            self.head.register_parameter("bias", None)

    def forward(self, x, acts: bool = False):
        record: dict = {}
        h = self.token_embed(x) + self.pos_embed(torch.arange(x.shape[-1], device=x.device))
        record["embed"] = h
        for i, layer in enumerate(self.layers):
            h = layer(h, record, f"layers.{i}.")
        r = h[:, -1]
        if self.final_ln is not None:
            r = self.final_ln(r)
        record["readout"] = r
        out = self.head(r)
        if self.head_bias is not None:
            out = out + self.head_bias
        return (out, record) if acts else out


@register_model("decoder", DecoderConfig,
                "decoder-only causal transformer (Zhang et al.: post-LN, 1 head, added positions)")
def build_decoder(cfg: DecoderConfig, task) -> nn.Module:
    if task.seq_len > cfg.max_pos:
        raise InputError("model.decoder.max_pos", f"{cfg.max_pos} is shorter than the task's "
                         f"sequences ({task.seq_len})", f">= {task.seq_len}")
    return DecoderTransformer(cfg, task.vocab_size, task.n_outputs)
