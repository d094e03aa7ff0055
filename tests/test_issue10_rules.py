"""Issue 10: the changed and new decision rules on made-up tables whose answer is known."""

import math

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
    assert CLAIMS.get("boolean-completion-transformer-lowest-old-rule").check(tie).status == "FAIL"
    # one target failing fails the claim; too few fitted runs is INCONCLUSIVE
    assert check(lowest + arch_table({"transformer": 3.7, "mlp": 3.4, "lstm": 4.4, "cnn": 3.6},
                                     target="sparse_parity")).status == "FAIL"
    assert check(arch_table({a: 3.0 for a in ARCHS}, k=1)).status == "INCONCLUSIVE"


def crow(lr, wd, seed, inf, seen=1.0):
    return {"lr": lr, "weight_decay": wd, "seed": seed, "inferential_acc": inf,
            "seen_test_acc": seen, "diverged": 0.0}


def test_lr_wd_raise_rule():
    check = CLAIMS.get("complexity-lr-wd-raise").check
    old = CLAIMS.get("complexity-lr-wd-no-drop").check
    lrs, wds = [1e-3, 2e-3, 4e-3], [0.01, 0.1]
    # clear rises along both axes (pooled over the other axis, so each end spreads widely)
    rising = [crow(lr, wd, s, 0.3 * i + 0.5 * j + 0.01 * s) for i, lr in enumerate(lrs)
              for j, wd in enumerate(wds) for s in (1, 2)]
    assert check(rising).status == "PASS", check(rising)
    # flat with a little noise: the old rule passes (it does not fall), the new one fails (no rise)
    flat = [dict(r, inferential_acc=0.5 + 0.001 * r["seed"]) for r in rising]
    assert old(flat).status == "PASS"
    assert check(flat).status == "FAIL"
    falling = [dict(r, inferential_acc=1 - r["inferential_acc"]) for r in rising]
    assert check(falling).status == "FAIL"
    # a rise within noise: INCONCLUSIVE
    noisy = [dict(r, inferential_acc=0.5 + 0.02 * (r["lr"] == 4e-3) + 0.02 * (r["weight_decay"] == 0.1)
                  + (0.3 if r["seed"] == 1 else -0.3)) for r in rising]
    v = check(noisy)
    assert v.status == "INCONCLUSIVE", v
    assert check([dict(r, seen_test_acc=0.5) for r in rising]).status == "INCONCLUSIVE"


def test_lr_wd_raise_on_the_recorded_cpu_cells():
    """The four cpu-preset runs recorded in docs/results.md (one seed per cell)."""
    cells = {(4e-3, 0.01): 0.671, (4e-3, 0.3): 0.865, (8e-3, 0.01): 0.664, (8e-3, 0.3): 0.978}
    table = [crow(lr, wd, 1, inf) for (lr, wd), inf in cells.items()]
    new = CLAIMS.get("complexity-lr-wd-raise").check(table)
    assert new.numbers["weight_decay"]["status"] == "PASS"
    assert new.numbers["lr"]["status"] == "INCONCLUSIVE"
    assert new.status == "INCONCLUSIVE"
    assert CLAIMS.get("complexity-lr-wd-no-drop").check(table).status == "PASS"
    assert math.isclose(new.numbers["lr"]["last_minus_first"], 0.053, abs_tol=1e-3)
