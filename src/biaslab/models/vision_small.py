"""Two small baselines on images x [B, C, H, W]: an MLP on the flattened pixels and a small CNN
(``n_layers`` blocks of 3x3 conv, ReLU, 2x2 max-pooling, then a hidden linear layer).

Activations (``acts=True``): MLP ``hidden.{i}`` [B, width]; CNN ``layers.{i}.out``
[B, C_i, H_i, W_i]; both ``readout`` (the vector fed to the head).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model
from .vit import image_shape_of


class ImageMLPConfig(ModelConfig):
    width: int = Field(default=256, gt=0, description="hidden width")
    depth: int = Field(default=2, ge=1, description="hidden layers")


class ImageMLP(nn.Module):
    def __init__(self, cfg: ImageMLPConfig, image_shape, n_outputs: int):
        super().__init__()
        dims = [math.prod(image_shape)] + [cfg.width] * cfg.depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = OutputHead(cfg.width, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        h = x.flatten(1)
        for i, layer in enumerate(self.hidden):
            h = torch.relu(layer(h))
            record[f"hidden.{i}"] = h
        record["readout"] = h
        out = self.head(h)
        return (out, record) if acts else out


class ImageCNNConfig(ModelConfig):
    channels: int = Field(default=32, gt=0, description="channels of the first conv (doubling)")
    n_layers: int = Field(default=2, ge=1, description="conv + pool blocks")
    hidden: int = Field(default=128, gt=0, description="width of the hidden linear layer")


class ImageCNN(nn.Module):
    def __init__(self, cfg: ImageCNNConfig, image_shape, n_outputs: int):
        super().__init__()
        C, H, W = image_shape
        chans = [C] + [cfg.channels * 2 ** i for i in range(cfg.n_layers)]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans[:-1], chans[1:]))
        h, w = H >> cfg.n_layers, W >> cfg.n_layers
        self.fc = nn.Linear(chans[-1] * max(h, 1) * max(w, 1), cfg.hidden)
        self.head = OutputHead(cfg.hidden, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        h = x
        for i, conv in enumerate(self.convs):
            h = F.max_pool2d(torch.relu(conv(h)), 2)
            record[f"layers.{i}.out"] = h
        r = torch.relu(self.fc(h.flatten(1)))
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("image_mlp", ImageMLPConfig, "MLP on flattened pixels (images)")
def build_image_mlp(cfg: ImageMLPConfig, task) -> nn.Module:
    return ImageMLP(cfg, image_shape_of(task), task.n_outputs)


@register_model("image_cnn", ImageCNNConfig, "small CNN: conv-ReLU-maxpool blocks, hidden "
                "linear layer (images)")
def build_image_cnn(cfg: ImageCNNConfig, task) -> nn.Module:
    from ..errors import InputError

    C, H, W = image_shape_of(task)
    if H >> cfg.n_layers < 1 or W >> cfg.n_layers < 1:
        raise InputError("model.params.n_layers", f"{cfg.n_layers} poolings of {H}x{W}",
                         f"at most {int(math.log2(min(H, W)))}")
    return ImageCNN(cfg, (C, H, W), task.n_outputs)
