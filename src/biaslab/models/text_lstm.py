"""The LSTM of Vasudeva et al.'s text experiments (sheet §3): embedding -> LayerNorm -> 4 LSTM
layers (hidden 256) -> last hidden state -> linear head.

Unlike the reference (quirk 4), every parameter is a parameter of the model and is trained by
the one trainer: embedding, LayerNorm, cell and head; and the embedding width is free (the
LayerNorm acts on the embedding, so it need not equal the hidden width). The cell is the
explicit, vmappable ``LSTMLayer`` of ``lstm.py``, here with padding: at a padded position the
state is carried unchanged, so with left padding every layer starts the real tokens from the
zero state, and the read-out (the last position) is the last real token's hidden state.

Embedding protocol: ``embed(x)`` = LayerNorm(token embedding), exactly zero at padding (the
sheet: noise goes after Embedding + LayerNorm for the LSTM); ``forward_embedded(e)`` the rest.

Activations (``acts=True``): ``embed`` [B, T, d], ``layers.{i}.out`` [B, T, hidden], ``readout``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model
from .lstm import LSTMLayer
from .text_attention import mask_of, pad_mask


class TextLSTMConfig(ModelConfig):
    d_embed: int = Field(default=256, gt=0, description="token embedding width")
    hidden: int = Field(default=256, gt=0, description="hidden state width")
    n_layers: int = Field(default=4, ge=1, description="stacked LSTM layers")
    ln_eps: float = Field(default=1e-5, gt=0)


class MaskedLSTMLayer(LSTMLayer):
    """``LSTMLayer`` whose state skips padded positions (output 0 there)."""

    def forward(self, xs, mask):
        B, L, _ = xs.shape
        h = xs.new_zeros(B, self.hidden)
        c = xs.new_zeros(B, self.hidden)
        pre = self.input_proj(xs)
        keep = mask[..., None].to(xs.dtype)  # [B, L, 1]
        outs = []
        for t in range(L):
            i, f, g, o = (pre[:, t] + self.recurrent(h)).chunk(4, -1)
            c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h_new = torch.sigmoid(o) * torch.tanh(c_new)
            k = keep[:, t]
            c = k * c_new + (1 - k) * c
            h = k * h_new + (1 - k) * h
            outs.append(h * k)
        return torch.stack(outs, 1)


class TextLSTM(nn.Module):
    def __init__(self, cfg: TextLSTMConfig, vocab_size: int, n_outputs: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, cfg.d_embed)
        self.embed_ln = nn.LayerNorm(cfg.d_embed, eps=cfg.ln_eps)
        dims = [cfg.d_embed] + [cfg.hidden] * cfg.n_layers
        self.layers = nn.ModuleList(MaskedLSTMLayer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = OutputHead(cfg.hidden, n_outputs)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed_ln(self.token_embed(x))
        return e * pad_mask(x)[..., None].to(e.dtype)

    def forward_embedded(self, e: torch.Tensor, acts: bool = False):
        record: dict = {"embed": e}
        mask = mask_of(e)
        h = e
        for i, layer in enumerate(self.layers):
            h = layer(h, mask)
            record[f"layers.{i}.out"] = h
        r = h[:, -1]  # left padding: the last position is the last real token
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out

    def forward(self, x, acts: bool = False):
        return self.forward_embedded(self.embed(x), acts)


@register_model("text_lstm", TextLSTMConfig,
                "LSTM for text: embedding LayerNorm, padding-aware explicit cell, last state read out")
def build_text_lstm(cfg: TextLSTMConfig, task) -> nn.Module:
    return TextLSTM(cfg, task.vocab_size, task.n_outputs)
