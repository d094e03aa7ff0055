"""1D CNN over token embeddings: same-padded convolutions, ReLU, then a read-out.

The default read-out flattens the feature map into a linear head, so the network can fit any
function of the whole input; ``pool='mean'`` (global average pooling) limits what it sees to a
receptive field of n_layers * (kernel - 1) + 1 positions, which cannot fit, e.g., a random
function of 10 bits with 2 layers of kernel 3.

Activations (``acts=True``): ``embed`` [B, L, d], ``layers.{i}.out`` [B, channels, L], ``readout``.
"""

from __future__ import annotations

import torch
from typing import Literal

from pydantic import Field, field_validator
from torch import nn

from .base import ModelConfig, OutputHead, register_model


class CNNConfig(ModelConfig):
    d_embed: int = Field(default=64, gt=0, description="token embedding width")
    channels: int = Field(default=128, gt=0, description="channels of every conv layer")
    kernel: int = Field(default=3, gt=0, description="odd kernel size")
    n_layers: int = Field(default=2, ge=1, description="conv layers")
    pool: Literal["flatten", "mean"] = Field(default="flatten", description="read-out of the feature map")

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
        self.pool = cfg.pool
        self.head = OutputHead(cfg.channels * (seq_len if cfg.pool == "flatten" else 1), n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        e = self.token_embed(x)
        record["embed"] = e
        h = e.transpose(1, 2)
        for i, conv in enumerate(self.convs):
            h = torch.relu(conv(h))
            record[f"layers.{i}.out"] = h
        r = h.flatten(1) if self.pool == "flatten" else h.mean(-1)
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("cnn", CNNConfig, "1D CNN over token embeddings, flattened (or mean-pooled) read-out")
def build_cnn(cfg: CNNConfig, task) -> nn.Module:
    return CNN(cfg, task.vocab_size, task.seq_len, task.n_outputs)
