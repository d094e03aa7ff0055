"""Model configs and the builder. Every model maps tokens [B, L] to outputs [B] or [B, C].

Every model's ``forward(x, acts=False)`` returns the output, or ``(output, acts)`` with a dict of
named activations when ``acts=True``. Activations are returned, never hooked, so a measure stays a
pure function that works under vmap and torch.compile. Names are stable and documented per model.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import pydantic_to_input_error

from .roles import POSITION_PREFIX  # noqa: F401  (re-exported: the models' naming convention)


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    gamma: Optional[float] = Field(
        default=None,
        gt=0,
        description="initialization rate: every weight ~ N(0, d_in^(-2 gamma)); None = default init",
    )


class ModelSpec:
    """A registered model: its config class, a builder, and a description."""

    def __init__(self, name: str, config_cls: type[ModelConfig], builder, description: str):
        self.name = name
        self.config_cls = config_cls
        self.builder = builder
        self.description = description

    def config(self, values: dict) -> ModelConfig:
        try:
            return self.config_cls(**values)
        except ValidationError as exc:
            raise pydantic_to_input_error(exc, f"model.{self.name}", self.config_cls) from None


def build_model(name: str, values: dict, task, seed: int, gamma: Optional[float] = None):
    """Build model ``name`` for ``task`` with a deterministic init from ``seed``.

    The parameters are drawn on the CPU with a private generator (so the same seed gives the
    same weights on any device and whatever else ran before), then ``gamma`` (or the config's
    gamma) re-draws every weight with std d_in^-gamma.
    """
    from ..registry import MODELS
    from .init import apply_gamma_init

    spec: ModelSpec = MODELS.get(name)
    cfg = spec.config(values)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = spec.builder(cfg, task)
    g = gamma if gamma is not None else cfg.gamma
    if g is not None:
        apply_gamma_init(model, g, torch.Generator().manual_seed(seed + 7919))
    return model


def register_model(name: str, config_cls: type[ModelConfig], description: str):
    from ..registry import MODELS

    def deco(builder):
        MODELS.add(name, ModelSpec(name, config_cls, builder, description), description)
        return builder

    return deco


class OutputHead(torch.nn.Module):
    """Linear read-out; squeezes to [B] when the task wants one output."""

    def __init__(self, d: int, n_outputs: int):
        super().__init__()
        self.linear = torch.nn.Linear(d, n_outputs)
        self.squeeze = n_outputs == 1

    def forward(self, h):
        out = self.linear(h)
        return out.squeeze(-1) if self.squeeze else out


__all__ = ["ModelConfig", "build_model", "register_model", "OutputHead", "POSITION_PREFIX"]

_ = ClassVar
