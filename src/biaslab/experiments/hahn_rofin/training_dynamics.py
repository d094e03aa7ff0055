"""training-dynamics (Hahn & Rofin E3): sharpness, LayerNorm blow-up, squared norm and loss probed
along PARITY training, aligned at each run's convergence step, and compared in windows before
and after it. Measured with ``experiments/protocol.py`` on one fixed probe batch.
"""

from __future__ import annotations

import math
import time
from typing import Optional

import numpy as np
from pydantic import Field, model_validator
from torch.func import vmap

from ...execute.plan import shared_config
from ...measure.norms import parameter_norm_stack
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ...train.losses import get_loss
from ..base import Experiment, SpecBase, Verdict, register_claim, register_experiment
from ..claims import FAIL, INCONCLUSIVE, PASS, combine
from ..common import ModelChoice, planned_lr, members_of
from ..outcomes import member_outcomes
from ..protocol import (MeasureSpec, blowup_of, measurement_batches, reference_model, sharpness_of,
                        validate_boolean)
from ..stats import jsonable, rounded, stderr
from .dynamics_after import aligned_curve

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
    # (claim ``norm-falls-blowup-rises-after-convergence``, module dynamics_after.py).
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
            logs["norm_sq"][step] = parameter_norm_stack(stack).pow(2).cpu().tolist()

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
        from . import dynamics_after, figures

        return {"aligned_at_convergence": figures.dynamics_figure(table),
                "norm_blowup_after_convergence": dynamics_after.trajectory_figure(table)}


DYN_MIN_RUNS = 3
# A priori: the window is short (the reference's plots mark -800..-1200 steps around convergence,
# a few percent of a 20k-step run), so a two-fold change of the mean across it is abrupt on the
# run's time scale; the control ratio (the window before vs the one before that) must be at most
# half as large in log terms, so that a steady drift does not count as a change at convergence.
DYN_FACTOR = 2.0


def dynamics_ratios(table) -> dict:
    rows = [r for r in table if r.get("windows_ok") == 1.0]
    out = {"runs": len(rows), "total": len(table)}
    for k in ("sharpness_x4", "blowup", "norm_sq"):
        before = [r[f"{k}_before"] for r in rows]
        after = [r[f"{k}_after"] for r in rows]
        ctrl = [r[f"{k}_ctrl"] for r in rows]
        mb, ma, mc = (float(np.mean(v)) if v else float("nan") for v in (before, after, ctrl))

        def ratio(num, den):
            if not (math.isfinite(num) and math.isfinite(den)):
                return float("nan")
            if den <= 0:
                return float("inf") if num > 0 else float("nan")
            return num / den

        out[k] = {"before": rounded(mb, 5), "after": rounded(ma, 5), "ctrl": rounded(mc, 5),
                  "ratio": ratio(ma, mb), "ctrl_ratio": ratio(mb, mc)}
    return out


@register_claim(
    "abrupt-change-at-convergence-old-rule",
    "training-dynamics",
    "(old rule, kept for the record; was 'abrupt-change-at-convergence': its 'before' window "
    "[c-W, c) lies inside the transition) along PARITY training, sharpness and LayerNorm blow-up "
    "change abruptly at convergence: the "
    "mean over runs in a window after convergence differs from the window before by a factor "
    ">= 2, and by at least twice as much (in log) as between the two windows before",
    "Hahn & Rofin Figs 3, 12-14 (E3): abrupt changes in sharpness and blow-up at convergence "
    "(n = 25, seeds 0-100, wd 0-0.3); curve values not published in the sheet",
)
def check_dynamics(table):
    st = dynamics_ratios(table)
    if st["runs"] < DYN_MIN_RUNS:
        return Verdict("INCONCLUSIVE", f"{st['runs']}/{st['total']} runs converged with full "
                       f"windows (need {DYN_MIN_RUNS})", jsonable(st))
    statuses, parts = [], []
    for k in ("sharpness_x4", "blowup"):
        R, Rc = st[k]["ratio"], st[k]["ctrl_ratio"]
        if not math.isfinite(R) and R != float("inf"):
            statuses.append("INCONCLUSIVE")
            parts.append(f"{k}: undefined ratio")
            continue
        lr = abs(math.log(R)) if R != float("inf") else float("inf")
        lc = abs(math.log(Rc)) if math.isfinite(Rc) and Rc > 0 else float("inf")
        ok = lr >= math.log(DYN_FACTOR) and lr >= 2 * lc
        statuses.append("PASS" if ok else "FAIL")
        parts.append(f"{k}: after/before {R:.3g} (control {Rc:.3g})")
    return Verdict(combine(statuses), f"{st['runs']} runs; " + "; ".join(parts), jsonable(st))



# --- The rule as the reference places its windows (issue 10 item 1) -----------------------------
# Reference (lacoco-lab/sensitivity-hardness plotting code, sheet §4 E3 "dashed marks at -800,
# -900, -1100, -1200"): the transition is shaded at roughly [c-1200, c-800] before the convergence
# step c, with curves logged every 100 steps, i.e. it starts 12 logging intervals before c. The
# old rule's "before" window [c-W, c) lies inside that change. Here, scaled to the preset's
# logging: before = [c - 12*every - W, c - 12*every) (ends where the reference's shading begins),
# after = [c, c + W). Computed from the stored aligned curves (``aligned.<measure>.<offset>``),
# so the rule is a function of the stored table. Sharpness and blow-up are two claims.
TRANSITION_PROBES = 12  # 1200 steps / 100-step logging in the reference
ABRUPT_FACTOR = DYN_FACTOR  # a two-fold change, as in the old rule


def aligned_windows(row: dict, measure: str) -> Optional[tuple[float, float]]:
    """(mean before the transition, mean after convergence) of one run, or None when the run's
    aligned curve does not cover both windows."""
    curve = aligned_curve(row, measure)
    offs = sorted(curve)
    if len(offs) < 2:
        return None
    every = min(b - a for a, b in zip(offs, offs[1:]))
    W = int(row.get("window") or every)
    hi = -TRANSITION_PROBES * every
    lo = hi - W
    before = [v for o, v in curve.items() if lo <= o < hi]
    after = [v for o, v in curve.items() if 0 <= o < W]
    if offs[0] > lo or offs[-1] < W - every or not before or not after:
        return None
    return float(np.mean(before)), float(np.mean(after))


def abrupt_change(table, measure: str) -> Verdict:
    """Per run r = log(mean after / mean before); over runs m = mean(r), se = its standard error.
    PASS when |m| - 2 se >= log 2 (a two-fold change beyond noise), FAIL when |m| + 2 se < log 2
    (surely less than two-fold), INCONCLUSIVE otherwise or with fewer than DYN_MIN_RUNS runs whose
    curves cover both windows (or a non-positive window mean)."""
    logs, pairs = [], []
    for r in table:
        w = aligned_windows(r, measure)
        if w is None:
            continue
        pairs.append(w)
        if w[0] > 0 and w[1] > 0:
            logs.append(math.log(w[1] / w[0]))
    numbers = {"runs_with_windows": len(pairs), "runs": len(table),
               "transition_probes": TRANSITION_PROBES,
               "before_mean": rounded(float(np.mean([b for b, _ in pairs])) if pairs else None, 5),
               "after_mean": rounded(float(np.mean([a for _, a in pairs])) if pairs else None, 5)}
    if len(logs) < DYN_MIN_RUNS or len(logs) < len(pairs):
        return Verdict(INCONCLUSIVE, f"{len(logs)}/{len(table)} runs cover both windows with "
                       f"positive means (need {DYN_MIN_RUNS})", jsonable(numbers))
    m = float(np.mean(logs))
    se = stderr(logs)
    numbers.update({"mean_log_ratio": rounded(m, 4), "se": rounded(se, 4),
                    "geo_mean_ratio": rounded(math.exp(m), 4)})
    bar = math.log(ABRUPT_FACTOR)
    status = PASS if abs(m) - 2 * se >= bar else FAIL if abs(m) + 2 * se < bar else INCONCLUSIVE
    return Verdict(status, f"{len(logs)} runs; after/before (geometric mean) {math.exp(m):.3g}, "
                   f"log ratio {m:.3f} +- {2 * se:.3f} (2 se) vs bar log 2", jsonable(numbers))


@register_claim(
    "abrupt-sharpness-change-at-convergence",
    "training-dynamics",
    "along PARITY training, sharpness changes at least two-fold between a window before the "
    "transition (ending 12 logging intervals before convergence, as the reference shades it) and "
    "the window after convergence, beyond 2 standard errors over runs",
    "Hahn & Rofin Figs 3, 12-14 (E3): abrupt change in sharpness at convergence; reference plots "
    "shade ~[c-1200, c-800] at 100-step logging; values not published",
)
def check_sharpness_change(table):
    return abrupt_change(table, "sharpness_x4")


@register_claim(
    "abrupt-blowup-change-at-convergence",
    "training-dynamics",
    "along PARITY training, LayerNorm blow-up changes at least two-fold between a window before "
    "the transition (ending 12 logging intervals before convergence) and the window after "
    "convergence, beyond 2 standard errors over runs",
    "Hahn & Rofin Figs 3, 12-14 (E3): abrupt change in blow-up at convergence; values not published",
)
def check_blowup_change(table):
    return abrupt_change(table, "blowup")
