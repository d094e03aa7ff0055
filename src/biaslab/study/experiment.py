"""The ``Study`` experiment: a study file's grid through the lab's plan / executor / store.

One instance per study file (``Study(spec)``), named ``study-NAME`` in the store, so two
studies never mix their runs, and a study resumes like every experiment (run ids hash the
config). Runs of one task x model train as one stack: the settings and seeds are its members.
"""

from __future__ import annotations

import time

import torch

from .. import rng
from ..experiments.base import Experiment
from ..experiments.common import ModelChoice, learned_tables, members_of
from ..experiments.outcomes import member_outcomes, train_metrics
from ..experiments.protocol import MeasureSpec, forward_measures, measurement_batches, sharpness_of
from ..measure.norms import parameter_norm_stack
from ..tasks import make_task
from ..train import Stack, TrainConfig, train
from ..train.losses import get_loss
from .spec import StudySpec

STUDY_STREAM = 0x57D1  # rng stream of the study's weight-noise and token-wise draws


class Study(Experiment):
    description = "a study file's grid: tasks x models x training settings x seeds, measured"
    Spec = StudySpec

    def __init__(self, spec: StudySpec):
        self.name = f"study-{spec.name}"
        self.study = spec

    def plan(self, spec: StudySpec):
        plans = []
        for cell in spec.grid():
            task = spec.tasks[cell["task"]]
            cfg = {**cell, "task_name": task.name, "task_params": task.params,
                   "model_choice": spec.models[cell["model"]].model_dump(),
                   "train": spec.train.model_dump(), "measures": sorted(spec.measures),
                   "measure": spec.measure.model_dump()}
            if "tokenwise" in spec.measures:  # the id hashes only what decides the result
                cfg["patch_sigma"] = spec.patch_sigma
            plans.append(self._plan(cfg, (cell["task"], cell["model"])))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        c0 = plans[0].config
        cfg = TrainConfig(**c0["train"])
        m = MeasureSpec(**c0["measure"])
        t0 = time.perf_counter()
        choice = ModelChoice(**c0["model_choice"])
        stack = Stack(choice.name, choice.params, make_task(c0["task_name"], c0["task_params"]),
                      members_of(plans, "gamma", "clip_norm"), device)
        result = train(stack, cfg, progress=progress)
        metrics = measure_stack(stack, cfg.loss, m, set(c0["measures"]), c0["task_params"],
                                c0.get("patch_sigma", spec.patch_sigma))
        return member_outcomes(plans, lambda i: {**{k: float(v[i]) for k, v in metrics.items()},
                                                 **train_metrics(result, cfg, i)},
                               time.perf_counter() - t0, result=result, series=("train_loss",))

    def figures(self, table, artifacts):
        from .report import axis_figures

        return axis_figures(self.study, table)


def measure_stack(stack: Stack, loss: str, m: MeasureSpec, measures: set, task_params: dict,
                  patch_sigma: float) -> dict:
    """name -> [M] for what ``measures`` asks (accuracy and mse always: they are one forward)."""
    batches = measurement_batches(stack, m)
    ev = forward_measures(stack, loss, batches, m.member_chunk)
    out = {"eval_acc": ev["eval_acc"], "eval_mse": ev["eval_mse"]}
    if "sharpness" in measures:
        out["sharpness"] = sharpness_of(stack, loss, batches, m, clean=ev["clean"])
    if "blowup" in measures:
        out["blowup"] = ev["blowup"]
    if "param_norm" in measures:
        out["param_norm"] = parameter_norm_stack(stack)
    if "sensitivity" in measures:
        from ..measure.sensitivity import average_sensitivity

        tables = learned_tables(stack, loss, task_params["n"])
        out["as_learned"] = torch.stack([average_sensitivity(t) for t in tables])
    # Inputs-only measures read one shared batch: member 0's first test batch (every member of
    # a Boolean task sees the same inputs distribution; shared inputs keep them comparable).
    x = batches[0][0][0]
    key = rng.derive(rng.key_of(m.seed, stack.device), STUDY_STREAM)
    if "weight_noise" in measures:
        from ..measure.weight_noise import weight_noise_sharpness

        out["weight_noise_l1"] = weight_noise_sharpness(stack, x, key)["l1"]
    if "tokenwise" in measures:
        from ..measure.tokenwise import PatchNoise, TokenReplacement, tokenwise_flip_sensitivity

        pert = (TokenReplacement(stack.task.vocab_size) if not x.dtype.is_floating_point
                else PatchNoise(patch_sigma, 4))
        out["tokenwise"] = tokenwise_flip_sensitivity(stack, x, pert, key, draws=2,
                                                      predict=get_loss(loss).predict)["mean"]
    return {k: v.detach().cpu() for k, v in out.items()}
