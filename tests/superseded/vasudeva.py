"""Superseded rules of the Vasudeva wing, out of the registry (issue 20): the rule as it was, a
test that pins its numbers on a fixed table, and a check that docs/results.md's history still
names the claim with its old verdict."""

from __future__ import annotations

import math
from pathlib import Path

from biaslab.experiments.claims import combine

RESULTS = Path(__file__).resolve().parents[2] / "docs" / "results.md"


def _stderr(values: list[float]) -> float:
    n = len(values)
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def boolean_completion_old_rule(table: list[dict]) -> str:
    """`boolean-completion-transformer-lowest-old-rule` (was `architecture-transformer-lowest`):
    per target, FAIL unless the transformer ranks first; PASS when its mean is below the
    runner-up's by more than 2 se of its own runs; fewer than 2 fitted runs in a cell:
    INCONCLUSIVE; targets combined (any FAIL fails)."""
    cells: dict = {}
    for r in table:
        if r.get("fitted") == 1.0:
            cells.setdefault(r["target"], {}).setdefault(r["arch"], []).append(r["as_learned"])
    archs = {r["arch"] for r in table}
    if not cells or any(len(c) < len(archs) or min(map(len, c.values())) < 2 for c in cells.values()):
        return "INCONCLUSIVE"
    statuses = []
    for target, by_arch in cells.items():
        ranks = sorted(by_arch, key=lambda a: sum(by_arch[a]) / len(by_arch[a]))
        if ranks[0] != "transformer":
            statuses.append("FAIL")
            continue
        mean = {a: sum(v) / len(v) for a, v in by_arch.items()}
        t = by_arch["transformer"]
        statuses.append("PASS" if mean["transformer"] + 2 * _stderr(t) < mean[ranks[1]]
                        else "INCONCLUSIVE")
    return combine(statuses)


def _table(values: dict) -> list[dict]:
    return [{"target": t, "arch": a, "as_learned": v, "fitted": 1.0}
            for (t, a), vs in values.items() for v in vs]


def test_boolean_completion_old_rule_numbers_and_history():
    # the sparse-parity tie of the recorded rerun: the old rule FAILs it, the new one calls it a tie
    tie = _table({("parity", "transformer"): [3.000, 3.010, 3.014],
                  ("parity", "mlp"): [2.995, 3.000, 3.005]})
    assert boolean_completion_old_rule(tie) == "FAIL"
    first = _table({("parity", "transformer"): [2.0, 2.1, 2.2], ("parity", "mlp"): [3.0, 3.1, 3.2]})
    assert boolean_completion_old_rule(first) == "PASS"
    close = _table({("parity", "transformer"): [2.0, 2.6, 3.2], ("parity", "mlp"): [3.0, 3.1, 3.2]})
    assert boolean_completion_old_rule(close) == "INCONCLUSIVE"
    history = RESULTS.read_text()
    assert "`boolean-completion-transformer-lowest-old-rule`" in history
    assert "FAIL (old rule)" in history


def test_boolean_completion_old_rule_left_the_registry():
    from biaslab.experiments.claims import claims_of

    assert "boolean-completion-transformer-lowest-old-rule" not in {c.name for c in claims_of()}
