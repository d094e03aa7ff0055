"""The schema of a study file and its checks, all before anything trains."""

from __future__ import annotations

import itertools
import re
from typing import Literal, Optional

from pydantic import Field

from ..experiments.base import SpecBase
from ..experiments.common import ModelChoice
from ..experiments.hahn_rofin.protocol import MeasureSpec
from ..train import TrainConfig

#: What a study can measure on every trained member (the columns its figures and claims read).
STUDY_MEASURES = {
    "accuracy": "eval_acc: accuracy on fresh test batches",
    "mse": "eval_mse: MSE of the predictions on fresh test batches",
    "sharpness": "perturbation sharpness (loss rise under N(0, 0.02^2) weight noise; Hahn & Rofin)",
    "blowup": "LayerNorm blow-up (Hahn & Rofin; models with LayerNorm)",
    "param_norm": "parameter norm, positional embeddings excluded",
    "sensitivity": "exact average sensitivity of the learned function (Boolean tasks, n <= 16)",
    "weight_noise": "mean L1 logit change under N(0, 0.05^2) weight noise (Vasudeva et al.; "
                    "models with class logits)",
    "tokenwise": "label-flip rate per token (uniform replacement) or 4x4 image patch (Gaussian "
                 "noise of std patch_sigma)",
}
#: The columns each measure writes (the figures draw these; claims name them).
COLUMNS = {"accuracy": "eval_acc", "mse": "eval_mse", "sharpness": "sharpness", "blowup": "blowup",
           "param_norm": "param_norm", "sensitivity": "as_learned", "weight_noise": "weight_noise_l1",
           "tokenwise": "tokenwise"}
SETTINGS = ("lr", "weight_decay", "gamma", "clip_norm")
AXES = ("task", "model") + SETTINGS
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,60}$")


class TaskChoice(SpecBase):
    name: str = Field(description="registered task name (see `biaslab list`)")
    params: dict = Field(default_factory=dict, description="task parameters")


class Settings(SpecBase):
    """Training settings, each a list: the grid is their product (members of one stack)."""

    lr: list[float] = Field(default=[1e-3], min_length=1, description="learning rates")
    weight_decay: list[float] = Field(default=[0.0], min_length=1, description="AdamW weight decays")
    gamma: list[Optional[float]] = Field(default=[None], min_length=1,
                                         description="initialization rates (std = d_in^-gamma; "
                                                     "null: the framework default)")
    clip_norm: list[Optional[float]] = Field(default=[None], min_length=1,
                                             description="gradient-norm clipping (null: none)")


class ClaimSpec(SpecBase):
    """A claim written in the study file, decided by ``experiments.rules`` (ties within 2 se and
    cells under 3 runs are INCONCLUSIVE)."""

    name: str = Field(description="claim name (lower case, digits, dashes)")
    statement: str = Field(description="what is claimed, in words")
    statistic: str = Field(description="the measure compared (one of the study's measures)")
    comparison: Literal["slope", "correlation", "means"] = Field(
        description="slope or Spearman correlation of the statistic on a numeric axis, or the "
                    "difference of its means at two values of an axis")
    axis: str = Field(description="the grid axis: task, model, lr, weight_decay, gamma, clip_norm")
    a: Optional[str | float] = Field(default=None, description="means: the value whose mean is "
                                     "claimed above (greater) or below (less) b's")
    b: Optional[str | float] = Field(default=None, description="means: the other value")
    direction: Literal["greater", "less"] = Field(description="which side of the bar is claimed")
    bar: float = Field(default=0.0, description="the bar the estimate is compared with")
    source: str = Field(description="where the bar comes from: a paper figure/table, or "
                        "'reason: <one line>'")
    where: dict[str, str | float] = Field(default_factory=dict,
                                          description="keep only runs with these axis values")


class StudySpec(SpecBase):
    name: str = Field(description="study name: its runs are stored as experiment study-NAME")
    question: str = Field(description="the question, in words (shown on the report page)")
    tasks: dict[str, TaskChoice] = Field(min_length=1, description="label -> task")
    models: dict[str, ModelChoice] = Field(min_length=1, description="label -> model")
    settings: Settings = Field(default_factory=Settings, description="training settings grid")
    seeds: list[int] = Field(default=[0, 1, 2], min_length=1, description="model/task seeds")
    train: TrainConfig = Field(description="training recipe (every field of TrainConfig)")
    measures: list[str] = Field(min_length=1, description="what is measured: "
                                + ", ".join(STUDY_MEASURES))
    measure: MeasureSpec = Field(default_factory=lambda: MeasureSpec(batches=2, batch=256, draws=8),
                                 description="batches and noise of sharpness and evaluation")
    patch_sigma: float = Field(default=0.5, gt=0, description="tokenwise on images: std of the "
                               "noise on one 4x4 patch")
    max_runs: int = Field(default=256, gt=0, description="refuse grids larger than this")
    claims: list[ClaimSpec] = Field(default_factory=list, description="optional claims")

    def grid(self) -> list[dict]:
        """Every run's axis values: task x model x settings x seeds."""
        s = self.settings
        return [{"task": t, "model": m, "lr": lr, "weight_decay": wd, "gamma": g, "clip_norm": c,
                 "seed": seed}
                for t, m, lr, wd, g, c, seed in itertools.product(
                    self.tasks, self.models, s.lr, s.weight_decay, s.gamma, s.clip_norm, self.seeds)]

    def varying_axes(self) -> list[str]:
        values = {"task": list(self.tasks), "model": list(self.models),
                  **{k: getattr(self.settings, k) for k in SETTINGS}}
        return [a for a in AXES if len(values[a]) > 1]
