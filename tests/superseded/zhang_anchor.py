"""Superseded Zhang et al. rules (issue 20: they leave the registry; their rule and old verdict
stay in docs/results.md's history, and these tests pin their numbers on fixed tables).

- ``complexity-lr-wd-no-drop`` (session 3): "does not fall" -- PASSed on a Spearman of exactly 0.
- ``complexity-lr-wd-raise`` as issue 10 wrote it: the two ends of each axis pooled over the other
  axis, FAIL below an unsourced 0.05 bar. Replaced by the paired rule of the same name.
- ``anchor-small-init-low-complexity``: full-table W_em stable rank and |cos| condensation.
  Replaced by ``anchor-small-init-low-complexity-used-rows``.
- ``anchor-small-init-fused-parallel``: runs grouped by gamma, raw cosines. Replaced by
  ``anchor-inferential-fused-parallel`` (by solution, centred).
"""

import math
from pathlib import Path

from biaslab.experiments.stats import mean_sd, spearman, stderr

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results.md"
VALID_ACC = 0.9


def _valid(r) -> bool:
    return r["seen_test_acc"] >= VALID_ACC and not r.get("diverged")


def _ends(table, axis):
    rows = [r for r in table if _valid(r)]
    xs, ys = [float(r[axis]) for r in rows], [r["inferential_acc"] for r in rows]
    values = sorted(set(xs))
    ends = [[y for x, y in zip(xs, ys) if x == v] for v in (values[0], values[-1])]
    diff = mean_sd(ends[1])[0] - mean_sd(ends[0])[0]
    se = math.sqrt(stderr(ends[0]) ** 2 + stderr(ends[1]) ** 2)
    return spearman(xs, ys), diff, se, [len(e) for e in ends]


def no_drop_old_rule(table) -> dict:
    """complexity-lr-wd-no-drop: per axis PASS when not below by 2 se and Spearman >= 0."""
    out = {}
    for axis in ("lr", "weight_decay"):
        rho, diff, se, n = _ends(table, axis)
        if min(n) < 2 or math.isnan(rho):
            status = "INCONCLUSIVE"
        elif diff < -2 * se and rho < 0:
            status = "FAIL"
        elif diff >= -2 * se and rho >= 0:
            status = "PASS"
        else:
            status = "INCONCLUSIVE"
        out[axis] = (status, round(rho, 3), round(diff, 3), round(se, 3))
    return out


def raise_issue10_rule(table, bar: float = 0.05) -> dict:
    """complexity-lr-wd-raise (issue 10): PASS diff > 2 se and rho > 0; FAIL diff + 2 se < bar."""
    out = {}
    for axis in ("lr", "weight_decay"):
        rho, diff, se, n = _ends(table, axis)
        if min(n) < 2 or math.isnan(rho):
            status = "INCONCLUSIVE"
        elif diff > 2 * se and rho > 0:
            status = "PASS"
        elif diff + 2 * se < bar:
            status = "FAIL"
        else:
            status = "INCONCLUSIVE"
        out[axis] = (status, round(rho, 3), round(diff, 3), round(se, 3))
    return out


def _crow(lr, wd, inf):
    return {"lr": lr, "weight_decay": wd, "seed": 1, "inferential_acc": inf, "seen_test_acc": 1.0}


# the reviewer's rerun of the cpu preset at afb9b2c (hr-zhang-fidelity.md §3.1), one seed per cell
RERUN = {(4e-3, 0.01): 0.7871, (4e-3, 0.3): 0.7671, (8e-3, 0.01): 0.6514, (8e-3, 0.3): 0.9009}


def test_no_drop_old_rule_passes_on_a_spearman_of_zero():
    got = no_drop_old_rule([_crow(lr, wd, v) for (lr, wd), v in RERUN.items()])
    assert got["lr"] == ("PASS", 0.0, -0.001, 0.125)
    assert got["weight_decay"] == ("PASS", 0.447, 0.115, 0.095)


def test_issue10_raise_rule_on_the_rerun():
    got = raise_issue10_rule([_crow(lr, wd, v) for (lr, wd), v in RERUN.items()])
    assert got["lr"] == ("INCONCLUSIVE", 0.0, -0.001, 0.125)
    assert got["weight_decay"] == ("INCONCLUSIVE", 0.447, 0.115, 0.095)


def test_results_history_names_the_superseded_rules():
    text = RESULTS.read_text()
    assert "`complexity-lr-wd-no-drop`" in text and "| **PASS** |" in text
    for name in ("anchor-small-init-low-complexity", "anchor-small-init-fused-parallel"):
        assert f"`{name}`" in text, name
    assert "Superseded Zhang rules" in text
