"""Issue 22 item 4: sharpness over n compared by least-squares slopes with standard errors (ties
INCONCLUSIVE), for sharpness-grows-for-parity and scratchpad-sharpness-flat, on made-up tables."""

import math

import pytest

import biaslab.experiments  # noqa: F401  (registers experiments and claims)
from biaslab.experiments.hahn_rofin.sharpness_scaling import slope_with_se
from biaslab.registry import CLAIMS


def test_slope_standard_error_against_the_textbook_formula():
    xs, ys = [4, 4, 6, 6, 8, 8], [1.0, 1.2, 1.9, 2.3, 3.1, 2.9]
    b, se = slope_with_se(xs, ys)
    assert b == pytest.approx(0.475)  # sum (x - 6)(y - ybar) / sum (x - 6)^2 = 7.6 / 16
    resid = [y - (sum(ys) / 6 + b * (x - 6)) for x, y in zip(xs, ys)]
    assert se == pytest.approx(math.sqrt(sum(r * r for r in resid) / 4 / 16))


def scaling_rows(slopes: dict, noise=0.01, ns=(4, 6, 8), seeds=3):
    return [{"sweep": "A", "target": t, "n": n, "converged": 1.0,
             "sharpness_x4": 0.1 + b * n + noise * (s - 1) * (1 if n % 4 else -1)}
            for t, b in slopes.items() for n in ns for s in range(seeds)]


def test_sharpness_grows_for_parity():
    check = CLAIMS.get("sharpness-grows-for-parity").check
    assert check(scaling_rows({"parity": 0.05, "majority": 0.005, "first": 0.004})).status == "PASS"
    # MAJORITY grows faster than PARITY beyond 2 se
    assert check(scaling_rows({"parity": 0.02, "majority": 0.06, "first": 0.0})).status == "FAIL"
    # within noise: a tie
    v = check(scaling_rows({"parity": 0.01, "majority": 0.008, "first": 0.0}, noise=0.2))
    assert v.status == "INCONCLUSIVE", v
    # too few runs
    assert check(scaling_rows({"parity": 0.05, "majority": 0.0, "first": 0.0},
                              seeds=1)).status == "INCONCLUSIVE"


def pad_rows(parity_slope, pad_slope, noise=0.005, seeds=3):
    rows = []
    for kind, b, ns in (("parity", parity_slope, (4, 6, 8)), ("scratchpad", pad_slope, (4, 8, 12))):
        rows += [{"kind": kind, "n": n, "converged": 1.0,
                  "sharpness_x4": 0.1 + b * n + noise * (s - 1)} for n in ns for s in range(seeds)]
    return rows


def test_scratchpad_sharpness_flat():
    check = CLAIMS.get("scratchpad-sharpness-flat").check
    assert check(pad_rows(0.05, -0.002)).status == "PASS"
    assert check(pad_rows(0.01, 0.05)).status == "FAIL"
    assert check(pad_rows(0.01, 0.009, noise=0.2)).status == "INCONCLUSIVE"
    assert check(pad_rows(0.05, 0.0, seeds=1)).status == "INCONCLUSIVE"
