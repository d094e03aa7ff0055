"""A RoBERTa-like encoder trained from scratch (Vasudeva et al.'s "RoBERTa-scratch", sheet §3).

The reference takes roberta-base's config with 4 layers, 8 heads and hidden 256 (intermediate
3072 inherited); defaults here are 4 layers, 8 heads, d_model 256 and d_ff 1024 (set
``d_ff: 3072`` for the reference's width). Post-LN layers with GELU as in BERT/RoBERTa; token
plus learned position embeddings, then LayerNorm; classification from the first token ([CLS],
the first real token of a left-padded pair) through RoBERTa's head: dense, tanh, projection.
``attention='relu'`` is the paper's un-normalised ReLU attention relu(QK^T/sqrt(d) + mask).
Dropout is left out: the lab trains stacks with counter-based randomness and no dropout streams.
Weights start as in RoBERTa: N(0, 0.02), biases 0, LayerNorm 1/0.

Embedding protocol (``measure/tokenwise.py``): ``embed(x)`` ends where the token-wise measure
adds its noise, exactly zero at padding (``text_attention.py``); ``forward_embedded(e)`` the rest.
``embed_at='word'`` (default): the word embedding, as Hugging Face's ``inputs_embeds`` that the
reference feeds its models -- the noise then goes through the position add and the embedding
LayerNorm, which rescales it. ``embed_at='layernorm'``: after the embedding LayerNorm, so the
noise reaches the first layer at full size. ``forward`` is the same function either way.

Activations (``acts=True``): ``embed`` [B, T, d], ``layers.{i}.attn`` [B, H, T, T],
``layers.{i}.out`` [B, T, d], ``readout`` [B, d] (the [CLS] vector fed to the head).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from .base import ModelConfig, register_model
from .text_attention import MaskedSelfAttention, mask_of, pad_mask, positions_of


class RobertaConfig(ModelConfig):
    d_model: int = Field(default=256, gt=0, description="hidden size")
    n_heads: int = Field(default=8, gt=0, description="attention heads")
    n_layers: int = Field(default=4, ge=1, description="encoder layers")
    d_ff: int = Field(default=1024, gt=0, description="intermediate (feed-forward) size")
    attention: Literal["softmax", "relu"] = Field(
        default="softmax", description="softmax, or the paper's un-normalised relu(QK^T/sqrt(d)+mask)")
    max_len: int = Field(default=0, ge=0, description="position table size; 0 = task length")
    ln_eps: float = Field(default=1e-5, gt=0)
    init_std: float = Field(default=0.02, gt=0, description="std of weights at init (RoBERTa: 0.02)")
    embed_at: Literal["word", "layernorm"] = Field(
        default="word", description="where embed() ends (where embedding noise goes): the word "
        "embedding (HF inputs_embeds) or after the embedding LayerNorm")

    @model_validator(mode="after")
    def _heads(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self


def init_like_bert(model: nn.Module, std: float) -> None:
    """N(0, std) weights, zero biases, LayerNorm 1/0: the BERT/RoBERTa/GPT-2 initialisation."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, std)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class RobertaLayer(nn.Module):
    def __init__(self, cfg: RobertaConfig):
        super().__init__()
        self.attn = MaskedSelfAttention(cfg.d_model, cfg.n_heads, cfg.attention)
        self.ln1 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.ff1 = nn.Linear(cfg.d_model, cfg.d_ff)
        self.ff2 = nn.Linear(cfg.d_ff, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)

    def forward(self, h, mask, acts: dict, prefix: str):
        a, pattern = self.attn(h, mask)
        h = self.ln1(h + a)
        h = self.ln2(h + self.ff2(nn.functional.gelu(self.ff1(h))))
        acts[prefix + "attn"] = pattern
        acts[prefix + "out"] = h
        return h


class RobertaEncoder(nn.Module):
    def __init__(self, cfg: RobertaConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.cfg = cfg
        self.token_embed = nn.Embedding(vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(cfg.max_len or seq_len, cfg.d_model)
        self.embed_ln = nn.LayerNorm(cfg.d_model, eps=cfg.ln_eps)
        self.layers = nn.ModuleList(RobertaLayer(cfg) for _ in range(cfg.n_layers))
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.head = nn.Linear(cfg.d_model, n_outputs)
        init_like_bert(self, cfg.init_std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        mask = pad_mask(x)
        e = self.token_embed(x)
        if self.cfg.embed_at == "layernorm":
            e = self.embed_ln(e + self.pos_embed(positions_of(mask)))
        return e * mask[..., None].to(e.dtype)

    def forward_embedded(self, e: torch.Tensor, acts: bool = False):
        record: dict = {"embed": e}
        mask = mask_of(e)
        h = e
        if self.cfg.embed_at == "word":
            h = self.embed_ln(e + self.pos_embed(positions_of(mask)))
        for i, layer in enumerate(self.layers):
            h = layer(h, mask, record, f"layers.{i}.")
        first = (~mask).sum(-1)  # left padding: the [CLS] token follows the pads
        r = h.gather(1, first[:, None, None].expand(-1, 1, h.shape[-1])).squeeze(1)
        record["readout"] = r
        out = self.head(torch.tanh(self.dense(r)))
        return (out, record) if acts else out

    def forward(self, x, acts: bool = False):
        return self.forward_embedded(self.embed(x), acts)


@register_model("roberta", RobertaConfig,
                "RoBERTa-like encoder from scratch (softmax or un-normalised ReLU attention), [CLS] head")
def build_roberta(cfg: RobertaConfig, task) -> nn.Module:
    return RobertaEncoder(cfg, task.vocab_size, task.seq_len, task.n_outputs)
