"""LSTM written as an explicit loop over positions.

``nn.LSTM`` dispatches to fused kernels that have no vmap batching rule, so a stack could not
train it; an explicit cell is vmappable and compiles. The read-out is the last hidden state.

Activations (``acts=True``): ``embed`` [B, L, d], ``layers.{i}.out`` [B, L, hidden], ``readout``.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model


class LSTMConfig(ModelConfig):
    d_embed: int = Field(default=64, gt=0, description="token embedding width")
    hidden: int = Field(default=128, gt=0, description="hidden state width")
    n_layers: int = Field(default=1, ge=1, description="stacked LSTM layers")


class LSTMLayer(nn.Module):
    def __init__(self, d_in: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.input_proj = nn.Linear(d_in, 4 * hidden)
        self.recurrent = nn.Linear(hidden, 4 * hidden, bias=False)

    def forward(self, xs):
        B, L, _ = xs.shape
        h = xs.new_zeros(B, self.hidden)
        c = xs.new_zeros(B, self.hidden)
        pre = self.input_proj(xs)  # all positions at once; only the recurrence is sequential
        outs = []
        for t in range(L):
            i, f, g, o = (pre[:, t] + self.recurrent(h)).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, 1)


class LSTM(nn.Module):
    def __init__(self, cfg: LSTMConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, cfg.d_embed)
        dims = [cfg.d_embed] + [cfg.hidden] * cfg.n_layers
        self.layers = nn.ModuleList(LSTMLayer(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = OutputHead(cfg.hidden, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        h = self.token_embed(x)
        record["embed"] = h
        for i, layer in enumerate(self.layers):
            h = layer(h)
            record[f"layers.{i}.out"] = h
        r = h[:, -1]
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("lstm", LSTMConfig, "LSTM (explicit cell, vmappable), last hidden state read out")
def build_lstm(cfg: LSTMConfig, task) -> nn.Module:
    return LSTM(cfg, task.vocab_size, task.seq_len, task.n_outputs)
