"""ResNet-18, CIFAR variant (He et al. 2016, as in kuangliu/pytorch-cifar): a 3x3 stem without
max-pooling, four stages of two basic blocks (widths w, 2w, 4w, 8w; stride 2 from stage 2),
global average pooling, a linear head. Images x [B, C, H, W].

Normalisation: BatchNorm keeps running statistics and couples the examples of a batch, which
does not vmap over stack members in training mode. ``norm='group'`` (default) uses GroupNorm
(up to 32 groups of >= 4 channels; per example, so it vmaps), ``norm='none'`` none. This is a documented
departure from the reference's BatchNorm.

Activations (``acts=True``): ``stages.{i}.out`` [B, C_i, H_i, W_i], ``readout`` [B, 8w].
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from pydantic import Field
from torch import nn

from .base import ModelConfig, OutputHead, register_model
from .vit import image_shape_of


class ResNetConfig(ModelConfig):
    width: int = Field(default=16, gt=0, description="channels of the first stage (reference: 64)")
    blocks: list[int] = Field(default=[2, 2, 2, 2], min_length=1,
                              description="basic blocks per stage (ResNet-18: [2, 2, 2, 2])")
    norm: Literal["group", "none"] = Field(default="group", description="normalisation layer")


def make_norm(kind: str, channels: int, groups: int | None = None) -> nn.Module:
    """GroupNorm with ``groups`` groups (default: up to 32, at least 4 channels per group, so
    narrow layers are not instance-normalised), or nothing."""
    if kind != "group":
        return nn.Identity()
    return nn.GroupNorm(groups or min(32, max(1, channels // 4)), channels)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=norm == "none")
        self.n1 = make_norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=norm == "none")
        self.n2 = make_norm(norm, c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=norm == "none"),
                                          make_norm(norm, c_out))

    def forward(self, x):
        h = F.relu(self.n1(self.conv1(x)))
        return F.relu(self.n2(self.conv2(h)) + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig, image_shape, n_outputs: int):
        super().__init__()
        C = image_shape[0]
        w = cfg.width
        self.stem = nn.Conv2d(C, w, 3, 1, 1, bias=cfg.norm == "none")
        self.stem_norm = make_norm(cfg.norm, w)
        stages, c_in = [], w
        for i, n in enumerate(cfg.blocks):
            c_out = w * 2 ** i
            layers = [BasicBlock(c_in if j == 0 else c_out, c_out, 2 if (i > 0 and j == 0) else 1,
                                 cfg.norm) for j in range(n)]
            stages.append(nn.Sequential(*layers))
            c_in = c_out
        self.stages = nn.ModuleList(stages)
        self.head = OutputHead(c_in, n_outputs)

    def forward(self, x, acts: bool = False):
        record = {}
        h = F.relu(self.stem_norm(self.stem(x)))
        for i, stage in enumerate(self.stages):
            h = stage(h)
            record[f"stages.{i}.out"] = h
        r = h.mean((-2, -1))
        record["readout"] = r
        out = self.head(r)
        return (out, record) if acts else out


@register_model("resnet18", ResNetConfig, "ResNet-18, CIFAR variant (3x3 stem, GroupNorm) (images)")
def build_resnet(cfg: ResNetConfig, task) -> nn.Module:
    return ResNet(cfg, image_shape_of(task), task.n_outputs)
