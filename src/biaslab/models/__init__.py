"""Models: who learns. Importing this package registers every model."""

from .base import ModelConfig, build_model, POSITION_PREFIX
from .roles import ParamRoles, parameter_roles
from . import cnn, decoder, lstm, mlp, seq2seq, transformer  # noqa: F401  (registers)

__all__ = ["ModelConfig", "build_model", "POSITION_PREFIX", "ParamRoles", "parameter_roles"]
