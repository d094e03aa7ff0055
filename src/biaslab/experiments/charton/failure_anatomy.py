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
from ..base import Experiment, Verdict, register_claim, register_experiment
from ..outcomes import member_outcomes
from .common import (LinalgEntry, LinalgSpec, accuracy_metrics, correct_at, measure_group,
                     plan_entries, test_arrays, tol_name, train_metrics)

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
        stack, task, result, tests = measure_group(spec, plans, device, progress)
        test, evs = tests[""]
        dissected = [dissect(test, ev) for ev in evs]  # (anatomy metrics, arrays) per member
        return member_outcomes(
            plans, lambda i: {**accuracy_metrics(evs[i]), **train_metrics(task, result, plans, i),
                              **dissected[i][0]},
            result.seconds, result=result, series=("train_loss",),
            tensors=lambda i: {"model": stack.member_state(i)},
            arrays=lambda i: {**test_arrays(test, evs[i]), **dissected[i][1]})

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


#: Decision rules, fixed before any run. Sheet target 4: among failures at 5%, >= 99% have
#: eigenvalues within 2% and >= 99% eigenvector norms within 5%; the notebook's model is 92%
#: accurate and it also dissects a ~70% one, so a model below 50% at 5% (or with fewer than 30
#: parsed failures, or 30 successes for the separation) is INCONCLUSIVE: its failures are not the
#: near misses the claim is about.
FRACTION, MIN_ACC, MIN_COUNT = 0.99, 0.5, 30


def _gate(r: dict) -> str | None:
    if float(r["acc_5"]) < MIN_ACC:
        return f"accuracy at 5% {float(r['acc_5']):.1%} < {MIN_ACC:.0%}"
    if float(r.get("valid_failures_5", 0)) < MIN_COUNT:
        return f"{int(r.get('valid_failures_5', 0))} parsed failures < {MIN_COUNT}"
    return None


def _combine(statuses: list[str]) -> str:
    return "FAIL" if "FAIL" in statuses else "INCONCLUSIVE" if "INCONCLUSIVE" in statuses or \
        not statuses else "PASS"


@register_claim(
    "wimtd-failures-roughly-right",
    "failure-anatomy",
    "failed 5x5 eigendecompositions (at 5%) are roughly right: >= 99% of them have eigenvalues "
    "within 2% and >= 99% eigenvector norms within 5%",
    "WIMTD notebook: 91.96% correct at 5%; of the 4,020 failures nearly all have eigenvalues "
    "within 2% (99.994% of all tests) and unit norms (99.88% within 5%)",
)
def check_roughly_right(table):
    statuses, parts = [], []
    numbers = {}
    for r in table:
        key = f"seed {r['seed']} {r['task_params.dim']}x{r['task_params.dim']}"
        gate = _gate(r)
        ev, nm = r.get("fail5.eigenvalues@2"), r.get("fail5.norms@5")
        numbers[key] = {"acc_5": r["acc_5"], "failures": r.get("failures_5"),
                        "parsed_failures": r.get("valid_failures_5"),
                        "eigenvalues_within_2%": ev, "norms_within_5%": nm}
        if gate:
            statuses.append("INCONCLUSIVE")
            parts.append(f"{key}: INCONCLUSIVE ({gate})")
            continue
        ok = ev >= FRACTION and nm >= FRACTION
        statuses.append("PASS" if ok else "FAIL")
        parts.append(f"{key}: among failures eigenvalues within 2% {ev:.2%}, norms within 5% {nm:.2%}")
    if not table:
        return Verdict("INCONCLUSIVE", "no finished run", {})
    return Verdict(_combine(statuses), "; ".join(parts), numbers)


@register_claim(
    "wimtd-cond-separates",
    "failure-anatomy",
    "cond(predicted Q) separates successes from failures at 5%: its 98th percentile on successes "
    "is below its 2nd percentile on failures",
    "WIMTD notebook: correct p98 1.031 vs incorrect p2 1.042 (max correct 1.110, min incorrect 1.020)",
)
def check_cond_separates(table):
    statuses, parts, numbers = [], [], {}
    for r in table:
        key = f"seed {r['seed']} {r['task_params.dim']}x{r['task_params.dim']}"
        p98, p2 = r.get("sep5.cond_pred_q.success_p98"), r.get("sep5.cond_pred_q.failure_p2")
        auc = r.get("sep5.cond_pred_q.auroc")
        n_ok = r.get("sep5.cond_pred_q.n_success", 0)
        numbers[key] = {"acc_5": r["acc_5"], "success_p98": p98, "failure_p2": p2, "auroc": auc,
                        "n_success": n_ok, "n_failure": r.get("sep5.cond_pred_q.n_failure")}
        gate = _gate(r) or (f"{int(n_ok)} successes < {MIN_COUNT}" if n_ok < MIN_COUNT else None)
        if gate:
            statuses.append("INCONCLUSIVE")
            parts.append(f"{key}: INCONCLUSIVE ({gate}); p98 ok {p98}, p2 failed {p2}, AUROC {auc}")
            continue
        statuses.append("PASS" if p98 < p2 else "FAIL")
        parts.append(f"{key}: cond(Q) successes p98 {p98:.4f} vs failures p2 {p2:.4f} (AUROC {auc:.3f})")
    if not table:
        return Verdict("INCONCLUSIVE", "no finished run", {})
    return Verdict(_combine(statuses), "; ".join(parts), numbers)
