"""Issue 22 item 1: the training-dynamics transition windows placed from the loss curve, the keep
filter, and the abruptness comparison, on made-up runs whose answer is known."""

import biaslab.experiments  # noqa: F401  (registers experiments and claims)
from biaslab.experiments.hahn_rofin.training_dynamics_claims import (transition_borders,
                                                                transition_length)
from biaslab.registry import CLAIMS
from claim_tables.hahn_rofin import dyn_row


def test_transition_length_and_border_come_from_the_loss_curve():
    assert transition_length(dyn_row(1, 2, drop=100)) == 100
    # a slow start: the first probe of the drop is still within 10 % of the plateau
    assert transition_length(dyn_row(1, 2, drop=300)) == 275
    rows = [dyn_row(1, 2, drop=d) for d in (50, 100, 110, 300)] + [dyn_row(1, 2, drop=400, wd=0.3)]
    # lengths 50, 100, 100, 275: median 100; one border per weight decay
    assert transition_borders(rows) == {0.1: 100, 0.3: 375}


def test_abrupt_change_rules():
    for claim in ("abrupt-sharpness-change-at-convergence", "abrupt-blowup-change-at-convergence"):
        check = CLAIMS.get(claim).check
        # a jump at the transition, flat after it: abrupt
        jump = [dyn_row(0.1 * (1 + 0.01 * s), 0.4) for s in range(5)]
        assert check(jump).status == "PASS", check(jump)
        # no step at the transition, a fast rise after convergence: the change across the
        # transition is smaller than between the control windows -> FAIL
        drift = [dyn_row(1.0, 1.0, post_slope=0.01 + 1e-4 * s) for s in range(5)]
        v = check(drift)
        assert v.status == "FAIL", v
        # runs disagree: a tie
        mixed = [dyn_row(1.0, 4.0) for _ in range(3)] + [dyn_row(1.0, 1.0 + 0.001 * s,
                                                                 post_slope=0.003) for s in range(3)]
        assert check(mixed).status == "INCONCLUSIVE"
        # the keep filter and the windows inside the drop are counted, never used
        bad = jump[:2] + [dyn_row(0.1, 0.4, final_loss=2e-3)] + [dyn_row(0.1, 0.4, drop=600)] * 2
        v = check(bad)
        assert v.status == "INCONCLUSIVE", v
        assert v.numbers["dropped_final_loss"] == 1 and v.numbers["window_in_drop"] == 2
        # converged too early: the curve does not reach back before the transition
        early = [dyn_row(0.1, 0.4, start=-150) for _ in range(5)]
        v = check(early)
        assert v.status == "INCONCLUSIVE" and v.numbers["not_covered"] == 5
