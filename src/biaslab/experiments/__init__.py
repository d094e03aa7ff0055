"""Experiments grouped by the paper they reproduce (``hahn_rofin/``, ``zhang_anchor/``,
``vasudeva/``, ...), one file per experiment holding its spec, grid, run, figures and claims.
They are registered by the explicit list in ``biaslab/catalog.py``, not by importing this package."""

from .base import Experiment, RunOutcome, RunPlan, get_experiment
from .claims import Claim, Verdict

__all__ = ["Claim", "Experiment", "RunOutcome", "RunPlan", "Verdict", "get_experiment"]
