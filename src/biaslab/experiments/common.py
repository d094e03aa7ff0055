"""Pieces shared by experiments: model choice in a spec, members of a stack, fitting Boolean subsets."""

from __future__ import annotations

import time
from typing import Optional

import torch
from pydantic import Field

from ..registry import MODELS
from ..tasks import make_task
from ..tasks.boolean import all_inputs
from ..train import Member, Stack, TrainConfig, train
from ..train.losses import get_loss
from .base import SpecBase
from .stats import mean_sd, stderr  # noqa: F401  (re-exported: experiments import them from here)


class ModelChoice(SpecBase):
    """A registered model name and its config values (see ``biaslab list``)."""

    name: str = Field(default="transformer", description="registered model name")
    params: dict = Field(default_factory=dict, description="model config fields")
    lr: Optional[float] = Field(default=None, gt=0, description="learning rate (None: the spec's)")

    def validate_now(self, field: str) -> None:
        """Raise a one-line InputError now, before anything is trained, if the model is bad."""
        from ..errors import InputError

        try:
            MODELS.get(self.name).config(self.params)
        except InputError as exc:
            if exc.field == "model":  # unknown model name
                raise InputError(f"{field}.name", exc.problem, exc.accepted) from None
            inner = exc.field.removeprefix(f"model.{self.name}").lstrip(".")
            raise InputError(f"{field}.params" + (f".{inner}" if inner else ""), exc.problem,
                             exc.accepted) from None


def planned_lr(spec_lr: float, model_lr: Optional[float] = None,
               entry_lr: Optional[float] = None) -> float:
    """The one learning-rate precedence of a plan: an entry's own lr (a sweep entry, e.g. one
    LAWT entry), else its model's (``model.lr``), else the spec's ``lr``. None means "not set"."""
    for lr in (entry_lr, model_lr):
        if lr is not None:
            return lr
    return spec_lr


def fit_subset_train(steps: int, batch: int) -> TrainConfig:
    """Train until the fixed training subset is fitted exactly: every one of its inputs is
    classified correctly (evaluated on the whole subset, not a sample of it)."""
    return TrainConfig(steps=steps, batch=batch, converge="acc", converge_acc=1.0, eval_split="train")


def members_of(plans, *extra: str) -> list[Member]:
    """One Member per run plan, from its config's seed, lr and weight_decay (plus ``extra``
    Member fields such as gamma or clip_norm)."""
    names = ("seed", "lr", "weight_decay", *extra)
    return [Member(**{k: p.config[k] for k in names}) for p in plans]


def learned_tables(stack: Stack, loss_name: str, n: int, chunk: int = 1 << 14) -> torch.Tensor:
    """Every member's thresholded prediction on all of {0,1}^n: [M, 2^n] float in {0,1}."""
    predict = get_loss(loss_name).predict
    xs = all_inputs(n, stack.device)
    outs = []
    with torch.no_grad():
        for i in range(0, xs.shape[0], chunk):
            outs.append(predict(stack.forward(xs[i:i + chunk]).float()))
    return (torch.cat(outs, -1) > 0.5).float()


def fit_boolean(task_name: str, task_params: list[dict], members: list[Member], model: ModelChoice,
                train_cfg: TrainConfig, device, progress=False):
    """Train one stack on per-member Boolean tasks; returns (stack, TrainResult, seconds)."""
    tasks = [make_task(task_name, p) for p in task_params]
    t0 = time.perf_counter()
    stack = Stack(model.name, model.params, tasks, members, device)
    result = train(stack, train_cfg, progress=progress)
    return stack, result, time.perf_counter() - t0


def completion_metrics(learned: torch.Tensor, truth: torch.Tensor, subset_idx: torch.Tensor) -> dict:
    """How one member's learned table [2^n] completes the target ``truth`` [2^n] it was fitted
    to on the inputs ``subset_idx``: fitted (every training input right), accuracy on and off
    the subset, and the average sensitivity of the learned function and of the target."""
    from ..measure.sensitivity import average_sensitivity

    in_train = torch.zeros(truth.shape[-1], dtype=torch.bool, device=learned.device)
    in_train[subset_idx] = True
    train_acc = (learned[in_train] == truth[in_train]).float().mean()
    return {"fitted": float(train_acc == 1.0), "train_acc": float(train_acc),
            "test_acc": float((learned[~in_train] == truth[~in_train]).float().mean()),
            "as_learned": float(average_sensitivity(learned)),
            "as_target": float(average_sensitivity(truth))}
