"""The superseded Hahn & Rofin rules (tests/superseded/hahn_rofin.py): out of the registry, their
numbers pinned on fixed tables, and their old verdicts still named in docs/results.md's history."""

from pathlib import Path

import pytest

import biaslab.experiments  # noqa: F401  (registers experiments and claims)
from biaslab.registry import CLAIMS
from superseded.hahn_rofin import (OLD_RULE_VERDICTS, abrupt_change_old_rule,
                                   norm_or_blowup_old_rule)

RESULTS = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def test_old_rules_left_the_registry_and_their_history_stays():
    names = set(CLAIMS.names())
    text = RESULTS.read_text()
    for name, verdict in OLD_RULE_VERDICTS.items():
        assert name not in names
        assert any(name in line and f"**{verdict}**" in line for line in text.splitlines()), name


def test_abrupt_change_old_rule_numbers():
    rows = [{"windows_ok": 1.0, "sharpness_x4_ctrl": 1.0, "sharpness_x4_before": 1.1 + 0.1 * s,
             "sharpness_x4_after": 3.0, "blowup_ctrl": 2.0, "blowup_before": 2.0,
             "blowup_after": 2.5} for s in range(3)]
    status, st = abrupt_change_old_rule(rows)
    assert st["sharpness_x4"]["ratio"] == pytest.approx(3.0 / 1.2)
    assert st["blowup"]["ratio"] == pytest.approx(1.25)
    assert status == "FAIL"  # blow-up changes only 1.25-fold
    for r in rows:
        r["blowup_after"] = 5.0
    assert abrupt_change_old_rule(rows)[0] == "PASS"
    assert abrupt_change_old_rule(rows[:2])[0] == "INCONCLUSIVE"


def test_norm_or_blowup_old_rule_numbers():
    rows = [{"target": "parity", "n": n, "weight_decay": 0.1 * i, "converged": 1.0,
             "param_norm": 20.0 - i, "blowup": (1.0 + i) * n} for n in (4, 6, 8) for i in range(4)]
    status, numbers = norm_or_blowup_old_rule(rows)
    assert numbers["mean_rho_norm_blowup_parity"] == -1.0
    assert numbers["rho_n_product_parity"] == pytest.approx(0.57, abs=0.01)
    assert status == "PASS"
    for r in rows:
        r["blowup"] = 1.0 + (r["weight_decay"] * 10)
    assert norm_or_blowup_old_rule(rows)[0] == "FAIL"  # the product no longer grows with n
