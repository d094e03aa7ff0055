"""Superseded rules of the Hahn & Rofin wing, out of the claim registry (issue 20 item 2). Each
keeps its rule and its old verdict in docs/results.md's history; the functions here are the old
rules verbatim (numbers pinned by tests/test_superseded_hahn_rofin.py on fixed tables).

- ``abrupt-change-at-convergence-old-rule`` (training-dynamics): its 'before' window [c - W, c)
  lies inside the transition; replaced by ``abrupt-sharpness-change-at-convergence`` and
  ``abrupt-blowup-change-at-convergence``.
- ``parity-needs-norm-or-blowup-old-rule`` (norm-blowup-tradeoff): its part B holds for MAJORITY
  as strongly as for PARITY, part A is not the paper's between-target comparison; replaced by
  ``parity-further-out-in-norm-blowup-plane``.
"""

from __future__ import annotations

import math

import numpy as np

from biaslab.experiments.claims import combine
from biaslab.experiments.stats import jsonable, rounded, spearman

OLD_RULE_VERDICTS = {"abrupt-change-at-convergence-old-rule": "FAIL",
                     "parity-needs-norm-or-blowup-old-rule": "FAIL"}  # docs/results.md, cpu

DYN_MIN_RUNS = 3
DYN_FACTOR = 2.0  # the old rule: a two-fold change, twice the control's log change


def dynamics_ratios(table) -> dict:
    """Means over runs with full windows of the stored [c-2W, c-W) / [c-W, c) / [c, c+W) values."""
    rows = [r for r in table if r.get("windows_ok") == 1.0]
    out = {"runs": len(rows), "total": len(table)}
    for k in ("sharpness_x4", "blowup"):
        mb, ma, mc = (float(np.mean([r[f"{k}_{w}"] for r in rows])) if rows else float("nan")
                      for w in ("before", "after", "ctrl"))
        out[k] = {"ratio": ma / mb if mb > 0 else float("nan"),
                  "ctrl_ratio": mb / mc if mc > 0 else float("nan")}
    return out


def abrupt_change_old_rule(table) -> tuple[str, dict]:
    """abrupt-change-at-convergence-old-rule: PASS when, for sharpness and blow-up, the mean after
    / before ratio is >= 2 (in |log|) and >= twice the control's |log ratio|; FAIL otherwise."""
    st = dynamics_ratios(table)
    if st["runs"] < DYN_MIN_RUNS:
        return "INCONCLUSIVE", st
    statuses = []
    for k in ("sharpness_x4", "blowup"):
        R, Rc = st[k]["ratio"], st[k]["ctrl_ratio"]
        if not math.isfinite(R):
            statuses.append("INCONCLUSIVE")
            continue
        lr = abs(math.log(R))
        lc = abs(math.log(Rc)) if math.isfinite(Rc) and Rc > 0 else float("inf")
        statuses.append("PASS" if lr >= math.log(DYN_FACTOR) and lr >= 2 * lc else "FAIL")
    return combine(statuses), jsonable(st)


TRADEOFF_MIN_PER_N = 4


def norm_or_blowup_old_rule(table) -> tuple[str, dict]:
    """parity-needs-norm-or-blowup-old-rule over converged PARITY runs: (A) Spearman(n, norm x
    blow-up) > 0.3 (>= 6 runs over >= 2 n); (B) mean over n (>= 4 runs over >= 2 weight decays)
    of Spearman(norm, blow-up) < -0.3. PASS: A and B; FAIL: either fails."""
    rows = [r for r in table if r["target"] == "parity" and r.get("converged") == 1.0]
    rho_a = spearman([r["n"] for r in rows], [r["param_norm"] * r["blowup"] for r in rows])
    within = []
    for n in sorted({r["n"] for r in rows}):
        at = [r for r in rows if r["n"] == n]
        if len(at) >= TRADEOFF_MIN_PER_N and len({r["weight_decay"] for r in at}) >= 2:
            rho = spearman([r["param_norm"] for r in at], [r["blowup"] for r in at])
            if math.isfinite(rho):
                within.append(rho)
    numbers = {"rho_n_product_parity": rounded(rho_a, 3),
               "mean_rho_norm_blowup_parity": rounded(float(np.mean(within)), 3) if within else None}
    if len(rows) < 6 or len({r["n"] for r in rows}) < 2 or not within or not math.isfinite(rho_a):
        return "INCONCLUSIVE", numbers
    ok = rho_a > 0.3 and float(np.mean(within)) < -0.3
    return ("PASS" if ok else "FAIL"), numbers
