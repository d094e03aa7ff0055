"""1D CNN over token embeddings: same-padded convolutions, ReLU, global mean pooling.

Activations (``acts=True``): ``embed`` [B, L, d], ``layers.{i}.out`` [B, channels, L], ``readout``.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from .base import ModelConfig, OutputHead, register_model


class CNNConfig(ModelConfig):
    d_embed: int = Field(default=64, gt=0, description="token embedding width")
    channels: int = Field(default=128, gt=0, description="channels of every conv layer")
    kernel: int = Field(default=3, gt=0, description="odd kernel size")
    n_layers: int = Field(default=2, ge=1, description="conv layers")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v):
        if v % 2 == 0:
            raise ValueError("kernel must be odd (same padding)")
        return v


class CNN(nn.Module):
    def __init__(self, cfg: CNNConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.token_embed = nn.Embedding(vocab_size, cfg.d_embed)
        dims = [cfg.d_embed] + [cfg.channels] * cfg.n_layers
        self.convs = nn.ModuleList(
            nn.Conv1d(a, b, cfg.kernel, padding=cfg.kernel // 2) for a, b in zip(dims[:-1], dims[1:])
        )
        self.head = OutputHead(cfg.channels, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        e = self.token_embed(x)
        record["embed"] = e
        h = e.transpose(1, 2)
        for i, conv in enumerate(self.convs):
            h = torch.relu(conv(h))
            record[f"layers.{i}.out"] = h
        r = h.mean(-1)
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("cnn", CNNConfig, "1D CNN over token embeddings with global mean pooling")
def build_cnn(cfg: CNNConfig, task) -> nn.Module:
    return CNN(cfg, task.vocab_size, task.seq_len, task.n_outputs)
