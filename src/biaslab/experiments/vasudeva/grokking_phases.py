"""The phases of a grokking run and the decision rules of the grokking-sensitivity claims.

Written before any run, from the sheet (``papers/low-sensitivity.md`` §5 "Grokking, 3 seeds",
§7 target 2) and the reference notebook (estija/sensitivity ``language/sens_modular_addition.ipynb``):
train accuracy reaches 100 % within a few hundred epochs while test accuracy stays near 0.3
until ~10k epochs; sensitivity spikes early, sits near 3 % at 500 and 9 % at 3000, then falls
steadily through the plateau, is at most 2 % before test accuracy passes 0.5 and below 1 % at the
end; the weight norm falls from ~55 to ~33 through the plateau.

Phases of one run, from its curves measured every k epochs (rules, fixed):

* ``t_fit``  first measured epoch with train accuracy >= FIT_ACC (0.99): train convergence.
* ``t_jump`` first measured epoch with test accuracy >= JUMP_ACC (0.5): the grokking jump
  (the sheet's "before test accuracy passes 0.5").
* the plateau: the measured epochs t_fit <= t <= t_jump. A run qualifies when both marks exist,
  t_jump > t_fit and the plateau holds at least MIN_PLATEAU_POINTS points; otherwise (never
  fits, never groks, no plateau) it is INCONCLUSIVE.
* start / end of the plateau: the median of its first / last WINDOW_SHARE (10 %) of points, at
  least MIN_WINDOW (3) points each.
* ``t_rise`` first measured epoch >= t_fit with test accuracy >= min((test accuracy at the start
  of the plateau) + RISE_ACC (0.1), JUMP_ACC): the moment test accuracy starts to move (never
  after t_jump; during the plateau test accuracy sits near the share of test pairs whose swap
  (b, a) was trained, since the zero-initialised positions make the model symmetric in a, b).

Per-run rules:

1. sensitivity falls through the plateau: end < start and Spearman(epoch, sensitivity) < 0 over
   the plateau.
2. the fall begins before test accuracy rises: on the plateau's sensitivity smoothed by a running
   median of SMOOTH (5) points, the peak epoch t_peak precedes t_rise, and the smoothed value at
   t_rise (its last plateau point at or before t_rise) is at most FALL_SHARE (0.5) of the peak
   (the sheet: ~9 % peak, <= 2 % before the jump, so half is a lenient reading).
3. weight norm falls through the plateau: rule 1 applied to the weight norm.

Over runs (``verdict_over_runs``): INCONCLUSIVE with fewer than MIN_RUNS (3, the house minimum
of issue 20; 2 before) qualifying runs; PASS when every qualifying run passes; FAIL when more
than half of them fail; INCONCLUSIVE otherwise (mixed).
"""

from __future__ import annotations

import math

import numpy as np

from ..stats import spearman

FIT_ACC = 0.99
JUMP_ACC = 0.5
RISE_ACC = 0.1
MIN_PLATEAU_POINTS = 8
WINDOW_SHARE = 0.1
MIN_WINDOW = 3
SMOOTH = 5
FALL_SHARE = 0.5
MIN_RUNS = 3  # the house's runs per compared cell (rules.MIN_RUNS)

NAN = float("nan")


def _first(epochs: np.ndarray, mask: np.ndarray) -> float:
    hit = np.flatnonzero(mask)
    return float(epochs[hit[0]]) if hit.size else NAN


def running_median(values: np.ndarray, width: int = SMOOTH) -> np.ndarray:
    """Centred running median (shorter windows at the ends)."""
    half = width // 2
    return np.array([np.median(values[max(0, i - half): i + half + 1]) for i in range(len(values))])


def _windows(n: int) -> int:
    return max(MIN_WINDOW, math.ceil(WINDOW_SHARE * n))


def falls(epochs: np.ndarray, values: np.ndarray) -> dict:
    """Start / end medians and the rank correlation of a plateau curve; ``pass`` per rule 1."""
    w = _windows(len(values))
    start, end = float(np.median(values[:w])), float(np.median(values[-w:]))
    rho = spearman(epochs.tolist(), values.tolist())
    return {"start": start, "end": end, "rho": rho,
            "pass": bool(end < start and math.isfinite(rho) and rho < 0)}


def analyse_run(epochs, train_acc, test_acc, sensitivity, weight_norm) -> dict:
    """Phase marks and per-rule numbers of one run (see the module docstring). Every value is a
    float (NaN when undefined); ``qualifies`` is 1.0 / 0.0 and ``rule1..3`` are 1.0 (pass),
    0.0 (fail) or NaN (the run does not qualify)."""
    e = np.asarray(epochs, dtype=float)
    tr, te = np.asarray(train_acc, dtype=float), np.asarray(test_acc, dtype=float)
    s, wn = np.asarray(sensitivity, dtype=float), np.asarray(weight_norm, dtype=float)
    out = {"t_fit": _first(e, tr >= FIT_ACC), "t_jump": _first(e, te >= JUMP_ACC)}
    keys = ("plateau_points", "t_rise", "t_peak", "sens_start", "sens_end", "sens_rho",
            "sens_peak", "sens_at_rise", "wnorm_start", "wnorm_end", "wnorm_rho",
            "rule1", "rule2", "rule3")
    out.update({k: NAN for k in keys})
    out["reason"] = ""
    if math.isnan(out["t_fit"]):
        out["reason"] = "never fits the training set"
    elif math.isnan(out["t_jump"]):
        out["reason"] = "never groks"
    elif out["t_jump"] <= out["t_fit"]:
        out["reason"] = "no plateau (test accuracy passes 0.5 before train convergence)"
    on = (e >= out["t_fit"]) & (e <= out["t_jump"]) if not out["reason"] else np.zeros_like(e, bool)
    out["plateau_points"] = float(on.sum())
    if not out["reason"] and on.sum() < MIN_PLATEAU_POINTS:
        out["reason"] = f"plateau of {int(on.sum())} points < {MIN_PLATEAU_POINTS}"
    out["qualifies"] = 0.0 if out["reason"] else 1.0
    if out["reason"]:
        return out
    pe, ps, pw = e[on], s[on], wn[on]
    r1, r3 = falls(pe, ps), falls(pe, pw)
    out.update(sens_start=r1["start"], sens_end=r1["end"], sens_rho=r1["rho"],
               wnorm_start=r3["start"], wnorm_end=r3["end"], wnorm_rho=r3["rho"],
               rule1=float(r1["pass"]), rule3=float(r3["pass"]))
    base = float(np.median(te[on][:_windows(int(on.sum()))]))
    out["t_rise"] = _first(e, (e >= out["t_fit"]) & (te >= min(base + RISE_ACC, JUMP_ACC)))
    smooth = running_median(ps)
    i_peak = int(np.argmax(smooth))
    out["t_peak"], out["sens_peak"] = float(pe[i_peak]), float(smooth[i_peak])
    at = np.flatnonzero(pe <= out["t_rise"])  # t_rise <= t_jump, so it is never empty
    out["sens_at_rise"] = float(smooth[at[-1]])
    out["rule2"] = float(out["t_peak"] < out["t_rise"]
                         and out["sens_at_rise"] <= FALL_SHARE * out["sens_peak"])
    return out


def verdict_over_runs(rows: list[dict], rule: str) -> tuple[str, dict]:
    """The status of ``rule`` ('rule1'..'rule3') over runs' ``analyse_run`` rows, with the
    counts of qualifying, passing and failing runs."""
    qualifying = [r for r in rows if r.get("qualifies") == 1.0]
    passed = sum(1 for r in qualifying if r.get(rule) == 1.0)
    failed = len(qualifying) - passed
    counts = {"runs": len(rows), "qualifying": len(qualifying), "pass": passed, "fail": failed}
    if len(qualifying) < MIN_RUNS:
        return "INCONCLUSIVE", counts
    if failed == 0:
        return "PASS", counts
    if failed > len(qualifying) / 2:
        return "FAIL", counts
    return "INCONCLUSIVE", counts
