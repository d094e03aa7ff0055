"""complexity-control (Zhang et al. E4): inferential accuracy on (4,3) over learning rate x
weight decay at gamma 0.5, 3 layers, with both (3,4) and (4,3) held out. The shared setup:
``zhang_anchor/protocol.py``.
"""

from __future__ import annotations

import math

from pydantic import Field

from ..base import Experiment, Verdict, register_claim, register_experiment
from ..claims import INCONCLUSIVE, combine
from ..stats import mean_sd, spearman
from .protocol import AnchorSetup, compare, rounded3, run_solution_group, valid


def _both_held_out() -> dict:
    # App. E: hold out (3,4) too (so nothing is perturbed); avoids high-lr instability. Then the
    # mirror of (4,3) is trained to nothing, so symmetric_acc equals inferential_acc by
    # construction here; the deviation histogram still shows x-6 answers as +4.
    return {"held_out": ["3,4", "4,3"], "perturbed": {}}


class ComplexitySpec(AnchorSetup):
    task: dict = Field(default_factory=_both_held_out,
                       description="anchor task params (default: (3,4) and (4,3) held out)")
    gamma: float = Field(default=0.5, gt=0, description="initialization rate")
    depth: int = Field(default=3, ge=1, description="decoder layers")
    lrs: list[float] = Field(default=[2.5e-4, 5e-4, 1e-3, 2e-3, 3e-3], min_length=2,
                             description="peak learning rates")
    weight_decays: list[float] = Field(default=[0.003, 0.01, 0.03, 0.1, 0.3], min_length=2,
                                       description="AdamW weight decays")
    seeds: list[int] = Field(default=[1, 2, 3], min_length=1, description="model seeds")


@register_experiment
class ComplexityControl(Experiment):
    name = "complexity-control"
    description = "inferential accuracy on (4,3) over learning rate x weight decay (gamma 0.5, 3 layers)"
    Spec = ComplexitySpec

    def plan(self, spec: ComplexitySpec):
        spec.validate_now([spec.depth])
        plans = []
        for lr in spec.lrs:
            for wd in spec.weight_decays:
                for s in spec.seeds:
                    cfg = spec.config(depth=spec.depth, gamma=spec.gamma, seed=s, lr=lr)
                    cfg["weight_decay"] = wd
                    plans.append(self._plan(cfg, (f"depth={spec.depth}",)))
        return plans

    def run_group(self, spec, plans, device, progress=False):
        return run_solution_group(plans, device, progress)

    def figures(self, table, artifacts):
        from .figures import lr_wd_figure

        return {"lr_weight_decay": lr_wd_figure(table)}


def axis_trend(table, axis: str) -> dict:
    """Inferential accuracy along ``axis`` (lr or weight_decay), pooled over the other axis."""
    rows = [r for r in table if valid(r)]
    xs, ys = [float(r[axis]) for r in rows], [r["inferential_acc"] for r in rows]
    values = sorted(set(xs))
    ends = [[y for x, y in zip(xs, ys) if x == v] for v in (values[:1] + values[-1:])] if values else [[], []]
    cmp = compare(ends[0], ends[1])
    means = {f"{v:g}": rounded3(mean_sd([y for x, y in zip(xs, ys) if x == v])[0]) for v in values}
    return {"rho": spearman(xs, ys) if len(xs) > 2 else float("nan"), "diff": cmp["diff"],
            "se": cmp["se"], "n_ends": cmp["n"], "means": means, "valid": len(rows), "runs": len(table)}


@register_claim(
    "complexity-lr-wd-no-drop",
    "complexity-control",
    "with (3,4) and (4,3) held out, 3 layers, gamma 0.5: inferential accuracy on (4,3) does not "
    "fall as the learning rate grows, nor as the weight decay grows",
    "Zhang et al. App. E (sheet target 6): larger lr (warmup multiplier 5 -> 60) and larger "
    "weight decay (0.003 -> 0.3) raise inferential accuracy (trend only; 9-run means, figures only)",
)
def check_lr_wd(table):
    # Rule fixed before the runs, per axis over valid runs (seen-pair test acc >= 90%), pooled
    # over the other axis: FAIL when the largest setting's mean is below the smallest's by more
    # than two standard errors AND the Spearman correlation is negative; PASS when it is not
    # below by more than two standard errors AND Spearman >= 0; INCONCLUSIVE otherwise (also
    # when an end has fewer than 2 valid runs or accuracy does not vary at all).
    numbers, statuses = {}, []
    for axis in ("lr", "weight_decay"):
        t = axis_trend(table, axis)
        if min(t["n_ends"]) < 2 or math.isnan(t["rho"]):
            status = "INCONCLUSIVE"
        elif t["diff"] < -2 * t["se"] and t["rho"] < 0:
            status = "FAIL"
        elif t["diff"] >= -2 * t["se"] and t["rho"] >= 0:
            status = "PASS"
        else:
            status = "INCONCLUSIVE"
        statuses.append(status)
        numbers[axis] = {"spearman": rounded3(t["rho"]), "last_minus_first": rounded3(t["diff"]),
                         "se": rounded3(t["se"]), "mean_inferential_by_value": t["means"],
                         "valid_runs": f"{t['valid']}/{t['runs']}", "status": status}
    summary = "; ".join(f"{a}: Spearman {n['spearman']}, last-first {n['last_minus_first']} "
                        f"(se {n['se']}), valid {n['valid_runs']}" for a, n in numbers.items())
    return Verdict(combine(statuses), summary, numbers)



# Issue 10 item 6: the paper's statement is a rise, not "does not fall" (anchor-init.md §4 E4 /
# App. E: "larger lr and larger weight decay raise inferential accuracy"). The smallest rise
# counted as one: 5 accuracy points between the axis's smallest and largest setting (fixed with
# this rule; the paper gives figures only, no numbers).
RAISE_BAR = 0.05


@register_claim(
    "complexity-lr-wd-raise",
    "complexity-control",
    "with (3,4) and (4,3) held out, 3 layers, gamma 0.5: inferential accuracy on (4,3) rises as "
    "the learning rate grows, and as the weight decay grows",
    "Zhang et al. App. E (anchor-init.md E4): larger lr (warmup multiplier 5 -> 60) and larger "
    "weight decay (0.003 -> 0.3) raise inferential accuracy (9-run means, figures only)",
)
def check_lr_wd_raise(table):
    # Per axis, over valid runs pooled over the other axis (as the old rule), with diff = mean at
    # the largest setting - mean at the smallest and se its standard error: PASS when
    # diff > 2 se and Spearman > 0 (a rise beyond noise); FAIL when diff + 2 se < RAISE_BAR (any
    # rise is surely smaller than the bar, a fall included); INCONCLUSIVE otherwise (also when an
    # end has fewer than 2 valid runs or accuracy does not vary). Both axes must PASS.
    numbers, statuses = {}, []
    for axis in ("lr", "weight_decay"):
        t = axis_trend(table, axis)
        if min(t["n_ends"]) < 2 or math.isnan(t["rho"]):
            status = INCONCLUSIVE
        elif t["diff"] > 2 * t["se"] and t["rho"] > 0:
            status = "PASS"
        elif t["diff"] + 2 * t["se"] < RAISE_BAR:
            status = "FAIL"
        else:
            status = INCONCLUSIVE
        statuses.append(status)
        numbers[axis] = {"spearman": rounded3(t["rho"]), "last_minus_first": rounded3(t["diff"]),
                         "se": rounded3(t["se"]), "bar": RAISE_BAR,
                         "mean_inferential_by_value": t["means"],
                         "valid_runs": f"{t['valid']}/{t['runs']}", "status": status}
    summary = "; ".join(f"{a}: {n['status']}, Spearman {n['spearman']}, last-first "
                        f"{n['last_minus_first']} (se {n['se']}, bar {RAISE_BAR})"
                        for a, n in numbers.items())
    return Verdict(combine(statuses), summary, numbers)
