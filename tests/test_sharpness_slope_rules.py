"""Issue 22 item 4: sharpness over n compared by least-squares slopes with standard errors (ties
INCONCLUSIVE), for sharpness-grows-for-parity and scratchpad-sharpness-flat, on made-up tables."""

import math

import pytest

import biaslab.experiments  # noqa: F401  (registers experiments and claims)
from biaslab.experiments.rules import slope_fit
from biaslab.registry import CLAIMS
from claim_tables.hahn_rofin import pad_rows, scaling_rows


def test_slope_standard_error_against_the_textbook_formula():
    xs, ys = [4, 4, 6, 6, 8, 8], [1.0, 1.2, 1.9, 2.3, 3.1, 2.9]
    f = slope_fit(xs, ys)
    b, se = f["slope"], f["se"]
    assert b == pytest.approx(0.475)  # sum (x - 6)(y - ybar) / sum (x - 6)^2 = 7.6 / 16
    resid = [y - (sum(ys) / 6 + b * (x - 6)) for x, y in zip(xs, ys)]
    assert se == pytest.approx(math.sqrt(sum(r * r for r in resid) / 4 / 16))


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


def test_scratchpad_sharpness_flat():
    check = CLAIMS.get("scratchpad-sharpness-flat").check
    assert check(pad_rows(0.05, -0.002)).status == "PASS"
    assert check(pad_rows(0.01, 0.05)).status == "FAIL"
    assert check(pad_rows(0.01, 0.009, noise=0.2)).status == "INCONCLUSIVE"
    assert check(pad_rows(0.05, 0.0, seeds=1)).status == "INCONCLUSIVE"
