"""Models: who learns. Importing this package registers every model."""

from .base import ModelConfig, build_model, POSITION_PREFIX
from . import transformer, mlp, lstm, cnn  # noqa: F401  (registers)

__all__ = ["ModelConfig", "build_model", "POSITION_PREFIX"]
