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
from ..experiments.hahn_rofin.protocol import (NOISE_STREAM, MeasureSpec, blowup_of, forward_measures,
                                    measurement_batches)
from ..measure.landscape import perturbation_sharpness
from ..measure.norms import parameter_norm
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
    if stack.task.target_kind == "classes":  # the protocol's evaluation reads {0,1} targets
        out = {"eval_acc": class_accuracy(stack, batches)}
        clean = None
        if "blowup" in measures:
            out["blowup"] = blowup_of(stack, batches, m.member_chunk)
    else:
        ev = forward_measures(stack, loss, batches, m.member_chunk)
        out = {"eval_acc": ev["eval_acc"], "eval_mse": ev["eval_mse"], "blowup": ev["blowup"]}
        clean = ev["clean"]
        if "blowup" not in measures:
            del out["blowup"]
    if "sharpness" in measures:
        # protocol.sharpness_of's call, with the batches said to be per member (images are 5-D)
        out["sharpness"] = perturbation_sharpness(
            stack, loss, batches, sigma=m.sigma, draws=m.draws,
            key=rng.derive(rng.key_of(m.seed, stack.device), NOISE_STREAM, 0),
            same_noise=m.same_noise, shared=False, chunk=m.draw_chunk,
            member_chunk=m.member_chunk, clean=clean)
    if "param_norm" in measures:
        out["param_norm"] = parameter_norm(stack)
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
                                                      predict=labels_of(stack.task, loss))["mean"]
    return {k: v.detach().cpu() for k, v in out.items()}


def class_accuracy(stack: Stack, batches) -> torch.Tensor:
    """Accuracy of every member over its own measurement batches (x [M, B, ...]), [M]."""
    with torch.no_grad():
        hits = [stack.task.correct(stack.forward(x, shared_input=False), y).float().flatten(1).mean(1)
                for x, y in batches]
    return torch.stack(hits).mean(0)


def labels_of(task, loss: str):
    """Outputs of one member -> labels: argmax over classes, else the loss's prediction > 0.5
    (the labels ``learned_tables`` reads)."""
    if task.target_kind == "classes":
        return lambda out: out.argmax(-1).float()
    predict = get_loss(loss).predict

    def binary(out):
        p = predict(out)
        return (p.reshape(p.shape[0]) > 0.5).float()

    return binary
