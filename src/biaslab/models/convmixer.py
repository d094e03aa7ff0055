"""ConvMixer (Trockman & Kolter 2022): a patch embedding (conv, kernel = stride = patch), then
``depth`` blocks of a residual depthwise conv (spatial mixing) and a pointwise conv (channel
mixing), each followed by GELU and a norm; global average pooling, a linear head.

The original uses BatchNorm; here GroupNorm with one group (a LayerNorm over channels and
positions), which is per example and so vmaps over stack members (see resnet.py). Per-channel
groups would not do: an instance-normalised map has a constant spatial mean, so global pooling
after the last block would read only the norm's bias. Images x [B, C, H, W].

Activations (``acts=True``): ``layers.{i}.out`` [B, dim, H/p, W/p], ``readout`` [B, dim].
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model
from .resnet import make_norm
from .vit import image_shape_of


class ConvMixerConfig(ModelConfig):
    dim: int = Field(default=64, gt=0, description="channels")
    depth: int = Field(default=4, ge=1, description="mixer blocks")
    kernel: int = Field(default=3, gt=0, description="depthwise kernel (reference: 3), odd")
    patch: int = Field(default=2, gt=0, description="patch embedding kernel and stride")


class MixerBlock(nn.Module):
    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.depthwise = nn.Conv2d(dim, dim, kernel, groups=dim, padding=kernel // 2)
        self.n1 = make_norm("group", dim, groups=1)
        self.pointwise = nn.Conv2d(dim, dim, 1)
        self.n2 = make_norm("group", dim, groups=1)

    def forward(self, h):
        h = h + self.n1(F.gelu(self.depthwise(h)))
        return self.n2(F.gelu(self.pointwise(h)))


class ConvMixer(nn.Module):
    def __init__(self, cfg: ConvMixerConfig, image_shape, n_outputs: int):
        super().__init__()
        self.embed_conv = nn.Conv2d(image_shape[0], cfg.dim, cfg.patch, stride=cfg.patch)
        self.embed_norm = make_norm("group", cfg.dim, groups=1)
        self.blocks = nn.ModuleList(MixerBlock(cfg.dim, cfg.kernel) for _ in range(cfg.depth))
        self.head = OutputHead(cfg.dim, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        h = self.embed_norm(F.gelu(self.embed_conv(x)))
        for i, block in enumerate(self.blocks):
            h = block(h)
            record[f"layers.{i}.out"] = h
        r = h.mean((-2, -1))
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("convmixer", ConvMixerConfig, "ConvMixer: patch conv, depthwise + pointwise "
                "mixing, GroupNorm (images)")
def build_convmixer(cfg: ConvMixerConfig, task) -> nn.Module:
    from ..errors import InputError

    if cfg.kernel % 2 == 0:
        raise InputError("model.params.kernel", f"{cfg.kernel} is even", "an odd kernel")
    return ConvMixer(cfg, image_shape_of(task), task.n_outputs)
