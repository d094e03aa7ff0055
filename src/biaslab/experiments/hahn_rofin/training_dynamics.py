"""training-dynamics (Hahn & Rofin E3): sharpness, LayerNorm blow-up, squared norm and loss probed
along PARITY training, aligned at each run's convergence step, and compared in windows before
and after it. Measured with ``hahn_rofin/protocol.py``; its claims are in ``training_dynamics_claims.py`` on one fixed probe batch.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
from pydantic import Field, model_validator
from torch.func import vmap

from ...execute.plan import shared_config
from ...measure.norms import parameter_norm
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ...train.losses import get_loss
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from .. import rules
from ..claims import INCONCLUSIVE, Bar
from ..common import ModelChoice, planned_lr, members_of
from ..outcomes import member_outcomes
from .protocol import (MeasureSpec, blowup_of, measurement_batches, reference_model, sharpness_of,
                        validate_boolean)
from ..stats import jsonable, rounded

PROBE_STREAM = 0x7B0B  # rng stream of the fixed probe batch


def _dynamics_train() -> TrainConfig:
    # Sheet E3: 20k steps, logging (here: probing) every 100 steps, no early stop.
    return TrainConfig(steps=20_000, batch=1024, eval_every=100, converge="none",
                       stop_on_converge=False, eval_split="test")


def _dynamics_probe() -> MeasureSpec:
    # Sheet E3: a fixed batch of 1024, sharpness with R = 500 draws reseeded at every probe.
    return MeasureSpec(draws=500, batches=1, batch=1024)


class DynamicsSpec(SpecBase):
    target: str = Field(default="parity", description="Boolean target")
    n: int = Field(default=25, gt=0, description="input length")
    seeds: list[int] = Field(default=list(range(101)), min_length=1, description="model seeds")
    weight_decays: list[float] = Field(default=[0.0, 0.1, 0.2, 0.3], min_length=1,
                                       description="AdamW weight decays (one stack each)")
    lr: float = Field(default=3e-4, gt=0, description="learning rate unless model.lr is set")
    model: ModelChoice = Field(default_factory=reference_model,
                               description="the model trained (default: the reference's)")
    train: TrainConfig = Field(default_factory=_dynamics_train,
                               description="probes run every train.eval_every steps")
    probe: MeasureSpec = Field(default_factory=_dynamics_probe,
                               description="probe: one fixed batch (batches=1), fresh noise per probe")
    align_loss: float = Field(default=0.01, gt=0, description="convergence = first probe with "
                              "fixed-batch loss below this (the reference's alignment)")
    window: int = Field(default=1000, gt=0, description="steps in each comparison window")
    span: int = Field(default=5000, gt=0, description="aligned curves stored from -span to "
                      "max(span, post_end)")
    # Sheet E3: the reference draws norm-vs-blow-up paths 3k-10k steps after convergence
    # (claim ``norm-falls-blowup-rises-after-convergence``, training_dynamics_claims.py).
    post_start: int = Field(default=3000, ge=0, description="post-convergence path: first window "
                            "[c+post_start, c+post_start+window)")
    post_end: int = Field(default=10000, gt=0, description="post-convergence path: last window "
                          "[c+post_end-window, c+post_end)")

    @model_validator(mode="after")
    def _windows(self):
        every = self.train.eval_every
        if any(v % every for v in (self.window, self.span, self.post_start, self.post_end)):
            raise ValueError("window, span, post_start and post_end must be multiples of "
                             "train.eval_every")
        if self.post_end - self.post_start < 2 * self.window:
            raise ValueError("post_end - post_start must be >= 2 windows (the two windows of "
                             "the post-convergence path must not overlap)")
        return self


DYN_NAMES = ("loss", "sharpness_x4", "blowup", "norm_sq")


def window_stats(series: dict[int, float], c: int, window: int, every: int, last: int) -> dict:
    """Means of a probe series in [c-2W, c-W) (control), [c-W, c) (before), [c, c+W) (after).

    ``ok`` only when all three windows lie inside the probed range (c - 2W >= first probe and
    c + W <= last probe + every)."""
    def mean_in(a, b):
        vals = [v for s, v in series.items() if a <= s < b and v is not None and math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    ok = c > 0 and c - 2 * window >= every and c + window <= last + every
    return {"ctrl": mean_in(c - 2 * window, c - window), "before": mean_in(c - window, c),
            "after": mean_in(c, c + window), "ok": ok}


@register_experiment
class TrainingDynamics(Experiment):
    name = "training-dynamics"
    description = "sharpness, blow-up, norm and loss along PARITY training, aligned at convergence"
    Spec = DynamicsSpec

    def plan(self, spec: DynamicsSpec):
        spec.model.validate_now("model")
        validate_boolean(spec.target, spec.n)
        plans = []
        for wd in spec.weight_decays:
            for s in spec.seeds:
                cfg = {"target": spec.target, "n": spec.n, "seed": s, "weight_decay": wd,
                       "lr": planned_lr(spec.lr, spec.model.lr), "model": spec.model.model_dump(),
                       "train": spec.train.model_dump(), "probe": spec.probe.model_dump(),
                       "align_loss": spec.align_loss, "window": spec.window, "span": spec.span,
                       "post_start": spec.post_start, "post_end": spec.post_end}
                plans.append(self._plan(cfg, (f"wd={wd}",)))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        t0 = time.perf_counter()
        c0 = shared_config(plans)
        model = ModelChoice(**c0["model"])
        cfg = TrainConfig(**c0["train"])
        pm = MeasureSpec(**c0["probe"])
        members = members_of(plans)
        stack = Stack(model.name, model.params, make_task(c0["target"], {"n": c0["n"]}), members,
                      device)
        fixed = measurement_batches(stack, pm, salt=PROBE_STREAM)  # the same batch(es) every probe
        lossf = get_loss(cfg.loss).fn
        logs: dict[str, dict[int, list]] = {k: {} for k in DYN_NAMES}

        def probe(step):
            x, y = fixed[0]
            out = stack.forward(x, shared_input=False)
            logs["loss"][step] = vmap(lossf)(out, y).cpu().tolist()
            # Reseeded at every probe: fresh noise, keyed by the probe's step.
            logs["sharpness_x4"][step] = (4 * sharpness_of(stack, cfg.loss, fixed, pm, step)).cpu().tolist()
            logs["blowup"][step] = blowup_of(stack, fixed, pm.member_chunk).cpu().tolist()
            logs["norm_sq"][step] = parameter_norm(stack).pow(2).cpu().tolist()

        result = train(stack, cfg, progress=progress, probe=probe)
        seconds = time.perf_counter() - t0
        every, W, span = cfg.eval_every, c0["window"], c0["span"]
        reach = max(span, c0["post_end"])  # stored aligned range: [-span, +reach]
        last = max(logs["loss"])
        per = [{k: {s: v[i] for s, v in logs[k].items()} for k in DYN_NAMES} for i in range(len(plans))]

        def member(i):
            c = next((s for s in sorted(per[i]["loss"]) if per[i]["loss"][s] < c0["align_loss"]), -1)
            metrics = {"align_step": c, "final_loss": per[i]["loss"][last],
                       "diverged": float(result.diverged[i])}
            ok = True
            for k in ("sharpness_x4", "blowup", "norm_sq"):
                ws = window_stats(per[i][k], c, W, every, last)
                ok = ok and ws["ok"]
                for part in ("ctrl", "before", "after"):
                    metrics[f"{k}_{part}"] = ws[part]
                metrics[f"{k}_final"] = per[i][k][last]
            metrics["windows_ok"] = float(ok and c > 0)
            if c > 0:
                for k in DYN_NAMES:
                    for off in range(-span, reach + 1, every):
                        if c + off in per[i][k]:
                            metrics[f"aligned.{k}.{off:+d}"] = per[i][k][c + off]
            return metrics

        return member_outcomes(plans, member, seconds, curves=lambda i: [
            (s, k, per[i][k][s]) for k in DYN_NAMES for s in sorted(per[i][k])])

    def figures(self, table, artifacts):
        from . import figures

        return {"aligned_at_convergence": figures.dynamics_figure(table),
                "norm_blowup_after_convergence": figures.trajectory_figure(table)}
