"""Models: who learns. Importing this package registers every model."""

from .base import ModelConfig, build_model, POSITION_PREFIX
from .roles import ParamRoles, parameter_roles
from . import cnn, decoder, lawt, lstm, mlp, seq2seq, transformer  # noqa: F401  (registers)
from . import grokking  # noqa: F401  (registers)
from . import convmixer, resnet, vision_small, vit  # noqa: F401  (registers the image models)
from . import gpt2, one_layer_attention, roberta, text_lstm  # noqa: F401  (registers)

__all__ = ["ModelConfig", "build_model", "POSITION_PREFIX", "ParamRoles", "parameter_roles"]
