"""norm-falls-blowup-rises-after-convergence (issue 10 item 7): the rule on made-up aligned curves
whose answer is known, and the window arithmetic it reads them with."""

import math

import pytest

from biaslab.experiments.hahn_rofin.figures import trajectory_figure
from biaslab.experiments.hahn_rofin.protocol import post_changes, post_windows
from biaslab.registry import CLAIMS

EVERY, W, A, B = 25, 100, 200, 1000


def run(norm_end, blow_end, wd=0.1, reach=B, norm0=20.0, blow0=2.0):
    """A run whose norm and blow-up move linearly from (norm0, blow0) at c + A to the given ends
    at c + B, flat before; aligned offsets -500 .. +reach every 25 steps, as stored."""
    row = {"weight_decay": wd, "post_start": A, "post_end": B, "window": W}
    for off in range(-500, reach + 1, EVERY):
        t = min(max((off - A) / (B - A), 0.0), 1.0)
        row[f"aligned.norm_sq.{off:+d}"] = (norm0 + (norm_end - norm0) * t) ** 2
        row[f"aligned.blowup.{off:+d}"] = blow0 + (blow_end - blow0) * t
    return row


def check(rows):
    return CLAIMS.get("norm-falls-blowup-rises-after-convergence").check(rows)


def test_windows_and_changes_are_read_from_the_aligned_curves():
    r = run(10.0, 4.0)
    first, last = post_windows(r, "blowup")
    # first window [200, 300): t = 0 .. 75/800; last window [900, 1000): t = 700/800 .. 775/800
    assert first == pytest.approx(2.0 + 2.0 * (37.5 / 800))
    assert last == pytest.approx(2.0 + 2.0 * (737.5 / 800))
    dn, db = post_changes(r)
    assert dn < 0 < db
    flat = run(20.0, 2.0)
    assert post_changes(flat) == pytest.approx((0.0, 0.0))
    # a run that converged too late: its stored curve stops before c + post_end
    assert post_windows(run(10.0, 4.0, reach=800), "blowup") is None
    assert post_windows({"window": W}, "blowup") is None


def test_pass_fail_inconclusive():
    # norm falls and blow-up rises in every decayed run (slightly different amounts): PASS
    trade = [run(14.0 + 0.2 * s, 3.5 + 0.1 * s) for s in range(5)]
    v = check(trade)
    assert v.status == "PASS", v
    assert v.numbers["decay"]["runs"] == 5
    # the norm grows after convergence (no trade) in every run: FAIL, whatever the blow-up does
    grow = [run(24.0 + 0.2 * s, 3.5 + 0.1 * s) for s in range(5)]
    assert check(grow).status == "FAIL"
    # blow-up falls beyond noise while the norm falls: FAIL (the opposite direction on one axis)
    both_fall = [run(14.0 + 0.2 * s, 1.2 + 0.05 * s) for s in range(5)]
    assert check(both_fall).status == "FAIL"
    # runs disagree: half trade, half move the other way by the same amount -> means within 2 se
    mixed = [run(14.0, 3.0), run(14.5, 3.1), run(28.0, 1.3), run(27.5, 1.35)]
    v = check(mixed)
    assert v.status == "INCONCLUSIVE", v
    assert abs(v.numbers["decay"]["dlog_norm"]) < 2 * v.numbers["decay"]["dlog_norm_se"]


def test_too_few_runs_and_controls_do_not_decide():
    # only two decayed runs cover the windows (a third converged too late): INCONCLUSIVE
    rows = [run(14.0, 3.5), run(14.2, 3.6), run(14.0, 3.5, reach=700)]
    v = check(rows)
    assert v.status == "INCONCLUSIVE" and v.numbers["decay"]["runs"] == 2
    # runs without weight decay are reported but do not decide: a growing wd-0 control leaves a
    # clear trade among the decayed runs a PASS
    rows = [run(14.0 + 0.2 * s, 3.5 + 0.1 * s) for s in range(4)]
    rows += [run(30.0 + s, 1.0, wd=0.0) for s in range(4)]
    v = check(rows)
    assert v.status == "PASS"
    assert v.numbers["by_weight_decay"]["0.0"]["dlog_norm"] > 0


def test_figure_draws_with_and_without_covering_runs():
    import matplotlib.pyplot as plt

    for rows in ([run(14.0, 3.5), run(15.0, 3.0), run(20.0, 2.0, wd=0.0)],
                 [run(14.0, 3.5, reach=600)]):
        fig = trajectory_figure(rows)
        assert len(fig.axes) == 2
        plt.close(fig)
    assert math.isfinite(post_changes(run(14.0, 3.5))[0])
