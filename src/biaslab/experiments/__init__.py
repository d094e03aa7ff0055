"""Experiments: declarative grids with measures, figures and claims. Importing registers them."""

from .base import Claim, Experiment, RunOutcome, RunPlan, Verdict, get_experiment
from . import anchor_init, architecture, landscape, lengthgen, lowsens, scratchpad  # noqa: F401  (registers)
from .vasudeva import synthetic_vocabulary, text_sensitivity  # noqa: F401  (registers)
from .charton import failure_anatomy, lawt_accuracy, lawt_encodings, ood_eigen_distributions  # noqa: F401,E402  (registers)
from .vasudeva import grokking_sensitivity  # noqa: F401  (registers)
from .vasudeva import sensitivity_regularization, sensitivity_sharpness_architectures, vision_sensitivity  # noqa: F401,E501  (registers)

__all__ = ["Claim", "Experiment", "RunOutcome", "RunPlan", "Verdict", "get_experiment"]
