"""Encoder-decoder transformer for teacher-forced sequence targets (Hahn & Rofin's scratchpad).

The sheet's scratchpad model: 2 encoder + 2 decoder layers, d_model 32, post-LN, vocabulary
{0, 1, BOS}; MSE at every decoder position. The input of one example is one token sequence whose
first ``encoder_len`` tokens feed the encoder and the rest the decoder (targets shifted right
behind BOS; see ``tasks/prefix_parity.py``); ``encoder_len`` comes from the task (default: half of
its length). The output is one real value per decoder position, [B, L_dec] (or [B, L_dec, C] with
``n_classes`` > 1). Attention is plain matmul (``models/attention.py``), so the model vmaps in a
Stack. The position tables are named ``pos_embed*`` so the sharpness and norm measures exclude
them, as for the encoder model.

Post-LN blocks (eps 1e-5), ReLU feed-forward:
  encoder:  h = LN1(h + SelfAttn(h));  h = LN2(h + FF(h))
  decoder:  g = LN1(g + CausalSelfAttn(g));  g = LN2(g + CrossAttn(g, memory));  g = LN3(g + FF(g))

Defaults (kept so stored runs keep their meaning): token and position embeddings *added*, one
position table per side, no final LayerNorm, nn.Linear's init. The reference's scratchpad model
(lacoco-lab/sensitivity-hardness ``src/model.py``, ``TorchModelWithScratchpad`` over
``torch.nn.Transformer``) is ``embed: concat`` (token d/2 ++ position d/2), ``shared_positions``
(one table for both sides), ``final_norm`` (nn.Transformer's encoder and decoder LayerNorms),
``d_ff = d_model`` (``dim_feedforward=hidden_dim``), ``qkv_init: xavier`` and
``matrix_init: xavier`` (``models/reference_init.py``). Its decoder reads one more token (BOS, y_1
.. y_n; the last output is dropped); under the causal mask that token changes no kept output.

Activations returned with ``acts=True``:
  ``encoder.{i}.ln1_in``, ``encoder.{i}.ln2_in``   [B, Le, d]  LayerNorm inputs
  ``decoder.{i}.ln1_in``, ``.ln2_in``, ``.ln3_in``  [B, Ld, d]  LayerNorm inputs
  ``encoder.final_in``, ``decoder.final_in``       inputs of the final LayerNorms (final_norm)
  ``memory``  [B, Le, d]  encoder output;  ``readout``  [B, Ld, d]  decoder output
(The generic ``layernorm_blowup`` reads only *.ln1_in/*.ln2_in and the last position of the last
layer; a decoder emits at every position, so the scratchpad experiment uses its own reduction.)
"""

from __future__ import annotations

import math

import torch
from typing import Literal

from pydantic import Field, model_validator
from torch import nn

from ..errors import InputError
from .attention import SelfAttention
from .base import ModelConfig, register_model
from .reference_init import torch_transformer_init_


class Seq2SeqConfig(ModelConfig):
    d_model: int = Field(default=32, gt=0, description="residual width")
    n_heads: int = Field(default=2, gt=0, description="attention heads")
    n_enc_layers: int = Field(default=2, ge=1, description="encoder layers")
    n_dec_layers: int = Field(default=2, ge=1, description="decoder layers")
    d_ff: int = Field(default=128, gt=0, description="feed-forward width")
    max_len: int = Field(default=0, ge=0, description="position tables' size; 0 = task length")
    n_classes: int = Field(default=1, ge=1, description="outputs per decoder position (1: real)")
    ln_eps: float = Field(default=1e-5, gt=0)
    embed: Literal["add", "concat"] = Field(
        default="add", description="add token and position embeddings (d each), or concatenate "
        "token (d/2) and position (d/2) embeddings as the reference does")
    shared_positions: bool = Field(default=False, description="one position table for encoder "
                                   "and decoder (the reference) instead of one per side")
    final_norm: bool = Field(default=False, description="a final LayerNorm on the encoder output "
                             "and on the decoder output (torch.nn.Transformer, the reference)")
    qkv_init: Literal["default", "xavier"] = Field(
        default="default", description="xavier: q/k/v of every attention as torch's "
        "MultiheadAttention initializes them (packed Xavier-uniform, zero q/k/v/output biases)")
    matrix_init: Literal["default", "xavier"] = Field(
        default="default", description="xavier: every other matrix of the layers (output "
        "projections, feed-forward) Xavier-uniform, as torch.nn.Transformer's reset does")

    @model_validator(mode="after")
    def _shapes(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.embed == "concat" and self.d_model % 2:
            raise ValueError("embed=concat needs an even d_model")
        return self


class CrossAttention(nn.Module):
    """Multi-head attention of queries from g [B, Lq, d] over memory m [B, Lk, d]."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, g, m):
        B, Lq, _ = g.shape
        Lk = m.shape[1]
        q = self.q(g).view(B, Lq, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(m).view(B, Lk, self.n_heads, self.d_head).transpose(1, 2)
        v = self.v(m).view(B, Lk, self.n_heads, self.d_head).transpose(1, 2)
        pattern = (q @ k.transpose(-1, -2) / math.sqrt(self.d_head)).softmax(-1)
        mixed = (pattern @ v).transpose(1, 2).reshape(B, Lq, self.n_heads * self.d_head)
        return self.out(mixed), pattern


class _FF(nn.Module):
    def __init__(self, d, d_ff):
        super().__init__()
        self.ff1, self.ff2 = nn.Linear(d, d_ff), nn.Linear(d_ff, d)

    def forward(self, h):
        return self.ff2(torch.relu(self.ff1(h)))


class EncLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.attn = SelfAttention(cfg.d_model, cfg.n_heads)
        self.ff = _FF(cfg.d_model, cfg.d_ff)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)

    def forward(self, h, acts, prefix):
        a, _ = self.attn(h)
        acts[prefix + "ln1_in"] = h = h + a
        h = self.ln1(h)
        acts[prefix + "ln2_in"] = h = h + self.ff(h)
        return self.ln2(h)


class DecLayer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig):
        super().__init__()
        self.self_attn = SelfAttention(cfg.d_model, cfg.n_heads)
        self.cross = CrossAttention(cfg.d_model, cfg.n_heads)
        self.ff = _FF(cfg.d_model, cfg.d_ff)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ln3 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)

    def forward(self, g, memory, acts, prefix):
        a, _ = self.self_attn(g, causal=True)
        acts[prefix + "ln1_in"] = g = g + a
        g = self.ln1(g)
        c, _ = self.cross(g, memory)
        acts[prefix + "ln2_in"] = g = g + c
        g = self.ln2(g)
        acts[prefix + "ln3_in"] = g = g + self.ff(g)
        return self.ln3(g)


class Seq2SeqTransformer(nn.Module):
    def __init__(self, cfg: Seq2SeqConfig, vocab_size: int, enc_len: int, dec_len: int):
        super().__init__()
        self.cfg, self.enc_len = cfg, enc_len
        max_len = cfg.max_len or max(enc_len, dec_len)
        d_tok = cfg.d_model // 2 if cfg.embed == "concat" else cfg.d_model
        d_pos = cfg.d_model - d_tok if cfg.embed == "concat" else cfg.d_model
        self.token_embed = nn.Embedding(vocab_size, d_tok)
        if cfg.shared_positions:
            self.pos_embed = nn.Embedding(max_len, d_pos)
        else:
            self.pos_embed_enc = nn.Embedding(max_len, d_pos)
            self.pos_embed_dec = nn.Embedding(max_len, d_pos)
        self.encoder = nn.ModuleList(EncLayer(cfg) for _ in range(cfg.n_enc_layers))
        self.decoder = nn.ModuleList(DecLayer(cfg) for _ in range(cfg.n_dec_layers))
        if cfg.final_norm:
            self.enc_norm = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
            self.dec_norm = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.head = nn.Linear(cfg.d_model, cfg.n_classes)
        if cfg.qkv_init == "xavier" or cfg.matrix_init == "xavier":  # default: no extra draws
            torch_transformer_init_(nn.ModuleList([self.encoder, self.decoder]),
                                    qkv=cfg.qkv_init == "xavier",
                                    matrices=cfg.matrix_init == "xavier")

    def embed(self, tokens, side: str):
        pos_table = self.pos_embed if self.cfg.shared_positions else getattr(self, "pos_embed_" + side)
        p = pos_table(torch.arange(tokens.shape[1], device=tokens.device))
        t = self.token_embed(tokens)
        if self.cfg.embed == "add":
            return t + p
        return torch.cat([t, p.expand(tokens.shape[0], -1, -1)], -1)

    def forward(self, x, acts: bool = False):
        record: dict = {}
        xe, xd = x[:, :self.enc_len], x[:, self.enc_len:]
        h = self.embed(xe, "enc")
        for i, layer in enumerate(self.encoder):
            h = layer(h, record, f"encoder.{i}.")
        if self.cfg.final_norm:
            record["encoder.final_in"] = h
            h = self.enc_norm(h)
        record["memory"] = h
        g = self.embed(xd, "dec")
        for i, layer in enumerate(self.decoder):
            g = layer(g, h, record, f"decoder.{i}.")
        if self.cfg.final_norm:
            record["decoder.final_in"] = g
            g = self.dec_norm(g)
        record["readout"] = g
        out = self.head(g)
        if self.cfg.n_classes == 1:
            out = out.squeeze(-1)
        return (out, record) if acts else out


@register_model("seq2seq", Seq2SeqConfig,
                "encoder-decoder transformer, post-LN, teacher-forced outputs at every decoder "
                "position (Hahn & Rofin's scratchpad model)")
def build_seq2seq(cfg: Seq2SeqConfig, task) -> nn.Module:
    enc_len = getattr(task, "encoder_len", task.seq_len // 2)
    dec_len = task.seq_len - enc_len
    if dec_len < 1:
        raise InputError("model.seq2seq", f"task {type(task).__name__} leaves no decoder tokens",
                         "a task with encoder_len < seq_len")
    if cfg.max_len and cfg.max_len < max(enc_len, dec_len):
        raise InputError("model.seq2seq.max_len", f"{cfg.max_len} is shorter than the task's "
                         f"sequences ({max(enc_len, dec_len)})", f">= {max(enc_len, dec_len)}")
    return Seq2SeqTransformer(cfg, task.vocab_size, enc_len, dec_len)
