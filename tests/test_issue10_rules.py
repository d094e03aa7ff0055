"""Issue 10: the changed and new decision rules on made-up tables whose answer is known."""

import biaslab.experiments  # noqa: F401  (registers experiments and claims)
from biaslab.registry import CLAIMS

ARCHS = ("transformer", "mlp", "lstm", "cnn")


def arch_table(means: dict[str, float], spread=0.01, k=3, target="random"):
    return [{"target": target, "arch": a, "fitted": 1.0, "as_learned": m + spread * (s - 1),
             "as_target": 5.0} for a, m in means.items() for s in range(k)]


def test_boolean_completion_symmetric_rule():
    check = CLAIMS.get("boolean-completion-transformer-lowest").check
    lowest = arch_table({"transformer": 2.0, "mlp": 3.0, "lstm": 3.5, "cnn": 3.2})
    assert check(lowest).status == "PASS"
    beaten = arch_table({"transformer": 3.7, "mlp": 3.4, "lstm": 4.4, "cnn": 3.6})
    assert check(beaten).status == "FAIL"
    # the MLP lower by less than two standard errors: a tie, not a FAIL (the old rule said FAIL)
    tie = arch_table({"transformer": 3.01, "mlp": 3.00, "lstm": 3.2, "cnn": 3.3}, spread=0.05)
    assert check(tie).status == "INCONCLUSIVE"
    # (the superseded old rule, which FAILed it, is pinned in tests/superseded/vasudeva.py)
    # one target failing fails the claim; too few fitted runs is INCONCLUSIVE
    assert check(lowest + arch_table({"transformer": 3.7, "mlp": 3.4, "lstm": 4.4, "cnn": 3.6},
                                     target="sparse_parity")).status == "FAIL"
    assert check(arch_table({a: 3.0 for a in ARCHS}, k=1)).status == "INCONCLUSIVE"
