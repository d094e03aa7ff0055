"""failure-anatomy: when a math transformer fails, how does it fail? (Charton, WIMTD)

Sheet ``math-transformer.md`` E2 and the reference notebook
``notebooks/what_is_my_transformer_doing.ipynb``: a 5x5 eigendecomposition model (the eigenvectors
sweep: FP15 in, P1000 out, 6/1 layers) is evaluated on a fixed test set; for every prediction we
measure which properties still hold (eigenvalues, unit norms, orthogonality, trace, sign
pattern: ``measure/anatomy.py``) and how well candidate predictors (cond of the predicted Q, cond
of the input, the smallest eigenvalue gap) separate successes from failures. Metrics are fractions
and separation statistics; the per-example arrays are stored for the histograms.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from ...measure.anatomy import eigen_predictors, eigen_property_errors, property_table, separation
from .. import rules
from ..base import Experiment, register_experiment
from ..claims import Bar, not_testable, register_claim
from .protocol import LinalgEntry, LinalgSpec, accuracy_outcomes, correct_at, plan_entries, tol_name

#: the notebook's table rows (sheet section 5)
ANATOMY_TOLERANCES = [0.005, 0.01, 0.02, 0.05, 0.25]
PROPERTIES = ("decomposition", "eigenvalues", "norms", "orthogonality", "trace")
PREDICTORS = ("cond_pred_q", "cond_input", "min_gap")


class FailureAnatomySpec(LinalgSpec):
    entries: list[LinalgEntry] = Field(
        default_factory=lambda: [LinalgEntry(task="eigenvectors", dim=5, input_encoding="fp15",
                                             output_encoding="p1000")],
        min_length=1, description="eigenvectors cells (one stack each)")


@register_experiment
class FailureAnatomy(Experiment):
    name = "failure-anatomy"
    description = "which properties of failed eigendecompositions still hold, and what predicts failure (WIMTD)"
    Spec = FailureAnatomySpec

    def plan(self, spec):
        from ...errors import InputError

        for i, e in enumerate(spec.entries):
            if e.task != "eigenvectors":
                raise InputError(f"entries[{i}].task", f"{e.task!r} has no eigendecomposition to "
                                 "dissect", "eigenvectors")
        return plan_entries(self, spec)

    def run_group(self, spec, plans, device, progress=False):
        return accuracy_outcomes(spec, plans, device, progress, extra=dissect)

    def figures(self, table, artifacts=None):
        from .figures import success_failure_histograms

        figs = {}
        for r in table:
            arr = load_arrays(self, artifacts, r["run_id"], ("correct_5",) + tuple(
                f"predictor.{p}" for p in PREDICTORS))
            if arr is None:
                continue
            ok = arr["correct_5"].astype(bool)
            panels = {p: (arr[f"predictor.{p}"][ok], arr[f"predictor.{p}"][~ok]) for p in PREDICTORS}
            figs[f"failure_histograms_seed{r['seed']}"] = success_failure_histograms(panels)
        return figs


def dissect(test, ev) -> tuple[dict, dict]:
    """Property fractions (all examples, and failures at 5%) and predictor separations at 5%
    and 1%, for one member's evaluation; plus the per-example arrays."""
    valid = ev.valid
    m, answers = test.inputs_rounded, test.answers_rounded
    pred = torch.where(valid[:, None, None], ev.pred, answers)  # placeholders, masked below
    errors = {k: torch.where(valid, v, torch.full_like(v, float("inf")))
              for k, v in eigen_property_errors(m, pred, answers).items()}
    predictors = eigen_predictors(m, pred, answers)
    predictors["cond_pred_q"] = torch.where(valid, predictors["cond_pred_q"],
                                            torch.full_like(predictors["cond_pred_q"], float("nan")))
    metrics: dict[str, float] = {}
    for name, by_tol in property_table(errors, ANATOMY_TOLERANCES, among=valid).items():
        for tol, frac in by_tol.items():
            metrics[f"all.{name}@{tol_name(tol)}"] = frac
    failed5 = ~correct_at(ev, 0.05)
    valid_failed = failed5 & valid
    metrics["failures_5"] = float(failed5.sum())
    metrics["valid_failures_5"] = float(valid_failed.sum())
    if valid_failed.any():
        for name, by_tol in property_table(errors, ANATOMY_TOLERANCES, among=valid_failed).items():
            for tol, frac in by_tol.items():
                metrics[f"fail5.{name}@{tol_name(tol)}"] = frac
        lam, true_lam = pred[:, 0, :], answers[:, 0, :]
        metrics["fail5.sign_pattern_ok"] = float(
            (torch.sign(lam) == torch.sign(true_lam)).all(-1)[valid_failed].double().mean())
    for tau in (0.05, 0.01):
        failed = ~correct_at(ev, tau)
        for p in PREDICTORS:
            score = predictors[p] if p != "min_gap" else -predictors[p]  # small gaps predict failure
            for k, v in separation(score, failed).items():
                metrics[f"sep{tol_name(tau)}.{p}.{k}"] = v
    arrays = {f"property.{k}": v.numpy() for k, v in errors.items()}
    arrays.update({f"predictor.{k}": v.numpy() for k, v in predictors.items()})
    arrays["correct_5"] = (~failed5).numpy()
    return metrics, arrays


def load_arrays(experiment, artifacts, run_id: str, names) -> dict | None:
    """Named .npy artifacts of a run, from the report's ``artifacts`` (or the store)."""
    try:
        if artifacts is not None:
            return {n: artifacts.array(run_id, n) for n in names}
        paths = experiment.store.artifacts(run_id)
        return {n: np.load(paths[n], allow_pickle=False) for n in names}
    except (KeyError, AttributeError, OSError, ValueError):
        return None


#: Decision rules. The bars are the reference model's own numbers (WIMTD notebook, 50,000 5x5
#: tests, 4,020 failures at 5%): 3 tests have eigenvalues off by more than 2% (99.994% within)
#: and 60 have a norm off by more than 5% (99.88% within), so even if every one of them is a
#: failure, >= 1 - 3/4020 = 99.93% of failures keep their eigenvalues and >= 1 - 60/4020 =
#: 98.51% their norms. The bars are those lower bounds, rounded down (issue 24 item 4: the
#: earlier 99% norm bar was stricter than the reference model is shown to be). The notebook's
#: weakest model is ~70% accurate: a run below 50% at 5%, or with fewer than 30 parsed failures
#: (30 successes for the separation), has not reached the near misses the claims are about.
EIGENVALUE_FRACTION, NORM_FRACTION, MIN_ACC, MIN_COUNT = 0.999, 0.985, 0.5, 30
NOTEBOOK = "LAWT notebooks/what_is_my_transformer_doing.ipynb (5x5 eigenvectors, 50,000 tests)"
GATE_BAR = Bar("run gate", "acc@5% >= 0.5 and >= 30 parsed failures",
               f"reason: the notebook dissects models of ~70% and 92%; below, failures are not near misses")


def _gate(r: dict) -> str | None:
    if float(r["acc_5"]) < MIN_ACC:
        return f"accuracy at 5% {float(r['acc_5']):.1%} < {MIN_ACC:.0%}"
    if float(r.get("valid_failures_5", 0)) < MIN_COUNT:
        return f"{int(r.get('valid_failures_5', 0))} parsed failures < {MIN_COUNT}"
    return None


def _key(r: dict) -> str:
    return f"seed {r['seed']} {r['task_params.dim']}x{r['task_params.dim']}"


def _gated(table: list[dict], extra=None):
    """(runs that pass the gate, numbers of the gated ones)."""
    kept, gated = [], {}
    for r in table:
        why = _gate(r) or (extra(r) if extra else None)
        if why:
            gated[_key(r)] = why
        else:
            kept.append(r)
    return kept, gated


@register_claim(
    "wimtd-failures-roughly-right",
    "failure-anatomy",
    "failed 5x5 eigendecompositions (at 5%) are roughly right: nearly all of them have eigenvalues "
    "within 2% and eigenvector norms within 5%",
    "WIMTD notebook: 91.96% correct at 5%; of the 4,020 failures nearly all have eigenvalues "
    "within 2% (99.994% of all tests) and unit norms (99.88% within 5%)",
    statistic="per run: share of parsed failures at 5% with eigenvalues within 2%, and with every "
              "eigenvector norm within 5%; mean over model seeds",
    comparison="mean share >= bar for both properties (seeds as samples)",
    bars=[Bar("failures with eigenvalues within 2%", f"{EIGENVALUE_FRACTION}",
              f"{NOTEBOOK}: 3 of 50,000 off -> >= 1 - 3/4020 of the 4,020 failures"),
          Bar("failures with norms within 5%", f"{NORM_FRACTION}",
              f"{NOTEBOOK}: 60 of 50,000 off -> >= 1 - 60/4020 = 0.9851 of the failures"),
          GATE_BAR, *rules.HOUSE_BARS],
)
def check_roughly_right(table):
    numbers = {_key(r): {"acc_5": r["acc_5"], "parsed_failures": r.get("valid_failures_5"),
                         "eigenvalues_within_2%": r.get("fail5.eigenvalues@2"),
                         "norms_within_5%": r.get("fail5.norms@5")} for r in table}
    kept, gated = _gated(table)
    if not kept:
        return not_testable("no run reaches the near-miss regime: " + "; ".join(
            f"{k}: {v}" for k, v in gated.items()) if gated else "no finished run", numbers)
    parts = [rules.compare_to_bar([r["fail5.eigenvalues@2"] for r in kept], EIGENVALUE_FRACTION,
                                  label="failures with eigenvalues within 2%", direction="greater"),
             rules.compare_to_bar([r["fail5.norms@5"] for r in kept], NORM_FRACTION,
                                  label="failures with norms within 5%", direction="greater")]
    return rules.verdict(parts, {**numbers, "gated": gated})


@register_claim(
    "wimtd-cond-separates",
    "failure-anatomy",
    "cond(predicted Q) separates successes from failures at 5%: its 98th percentile on successes "
    "is below its 2nd percentile on failures",
    "WIMTD notebook: correct p98 1.031 vs incorrect p2 1.042 (max correct 1.110, min incorrect 1.020)",
    statistic="per run: p2 of cond(predicted Q) over failures minus its p98 over successes, at 5%",
    comparison="mean over seeds > 0",
    bars=[Bar("p2(failures) - p98(successes)", "> 0",
              f"{NOTEBOOK}: 1.042 - 1.031 > 0 at 5% (at 1% the reference itself fails it)"),
          GATE_BAR, *rules.HOUSE_BARS],
)
def check_cond_separates(table):
    numbers = {}
    for r in table:
        numbers[_key(r)] = {"acc_5": r["acc_5"], "success_p98": r.get("sep5.cond_pred_q.success_p98"),
                            "failure_p2": r.get("sep5.cond_pred_q.failure_p2"),
                            "auroc": r.get("sep5.cond_pred_q.auroc"),
                            "n_success": r.get("sep5.cond_pred_q.n_success", 0),
                            "n_failure": r.get("sep5.cond_pred_q.n_failure")}

    def few_successes(r):
        n_ok = r.get("sep5.cond_pred_q.n_success", 0)
        return f"{int(n_ok)} successes < {MIN_COUNT}" if n_ok < MIN_COUNT else None
    kept, gated = _gated(table, few_successes)
    if not kept:
        return not_testable("no run reaches the near-miss regime: " + "; ".join(
            f"{k}: {v}" for k, v in gated.items()) if gated else "no finished run", numbers)
    gaps = [r["sep5.cond_pred_q.failure_p2"] - r["sep5.cond_pred_q.success_p98"] for r in kept]
    part = rules.compare_to_bar(gaps, 0.0, label="cond(Q) p2(failures) - p98(successes)",
                                direction="greater")
    return rules.verdict([part], {**numbers, "gated": gated})
