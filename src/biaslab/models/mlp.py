"""MLP on one-hot tokens: the sequence is one-hot encoded and flattened.

Activations (``acts=True``): ``hidden.{i}`` [B, width] after each ReLU; ``readout`` = last hidden.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model


class MLPConfig(ModelConfig):
    width: int = Field(default=256, gt=0, description="hidden width")
    depth: int = Field(default=2, ge=1, description="hidden layers")


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig, vocab_size: int, seq_len: int, n_outputs: int):
        super().__init__()
        self.vocab_size = vocab_size
        dims = [vocab_size * seq_len] + [cfg.width] * cfg.depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = OutputHead(cfg.width, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        # one_hot() checks its input on the host, which vmap forbids; a comparison does not.
        vocab = torch.arange(self.vocab_size, device=x.device)
        h = (x[..., None] == vocab).to(self.hidden[0].weight.dtype).flatten(1)
        for i, layer in enumerate(self.hidden):
            h = torch.relu(layer(h))
            record[f"hidden.{i}"] = h
        record["readout"] = h
        out = self.head(h)
        return (out, record) if acts else out


@register_model("mlp", MLPConfig, "multi-layer perceptron on flattened one-hot tokens")
def build_mlp(cfg: MLPConfig, task) -> nn.Module:
    return MLP(cfg, task.vocab_size, task.seq_len, task.n_outputs)
