"""The initialization rate gamma of Zhang et al.: every weight ~ N(0, (d_in^-gamma)^2).

Larger gamma means a smaller initialization. d_in is the true fan-in of each layer: the input
width of a Linear, in_channels / groups * kernel area of a convolution (1-D or 2-D), and for an
embedding table the width of the vectors it produces (d_model, not the vocabulary size), as in
the paper's code.
LayerNorm gains and biases keep their defaults (1 and 0).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def fan_in(module: nn.Module, name: str, p: torch.Tensor) -> int | None:
    """The d_in of parameter ``name`` of ``module``, or None to keep its default init."""
    if isinstance(module, (nn.LayerNorm,)):
        return None
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, nn.Embedding):
        return module.embedding_dim
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):  # grouped (depthwise) convs see in/groups
        return module.in_channels // module.groups * math.prod(module.kernel_size)
    custom = getattr(module, "gamma_fan_in", None)
    if custom is not None:
        return custom(name, p)
    return None


@torch.no_grad()
def apply_gamma_init(model: nn.Module, gamma: float, generator: torch.Generator) -> None:
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            d_in = fan_in(module, name, p)
            if d_in is None:
                continue
            std = float(d_in) ** (-gamma)
            p.copy_(torch.randn(p.shape, generator=generator, dtype=p.dtype) * std)
