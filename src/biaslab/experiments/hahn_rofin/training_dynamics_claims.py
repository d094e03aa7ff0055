"""The claims of training-dynamics (Hahn & Rofin E3), read from its stored aligned curves
(``aligned.<measure>.<offset>``, offsets from -span to max(span, post_end)), so every verdict is a
function of the stored table: the abrupt changes of sharpness and blow-up across the transition
(issue 22 item 1) and the norm / blow-up trade after convergence (issue 10 item 7: the reference
draws norm-vs-blow-up paths 3k-10k steps after convergence; sheet §4 E3)."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .. import rules
from ..base import Verdict, register_claim
from ..claims import FAIL, INCONCLUSIVE, PASS, Bar
from ..stats import jsonable, rounded, stderr
from .protocol import aligned_curve, post_changes

POST_MIN_RUNS = rules.MIN_RUNS  # house rule: fewer runs -> INCONCLUSIVE


# --- The transition windows as the reference places them (issue 22 item 1) ----------------------
# Reference: lacoco-lab/sensitivity-hardness ``src/plotting/dynamic.py: plot_dynamic_main_experiment``
# aligns each run at its first logged step with batch loss < 0.01 (c), keeps runs whose final eval
# loss is < 1e-3, and marks the left border of the transition per weight decay at -800 / -900 /
# -1100 / -1200 steps for wd 0 / 0.1 / 0.2 / 0.3 (and a second mark at 0). Those borders are the
# start of the loss drop at n = 25, lr 3e-4, read off the aligned curves. Ours train other sizes,
# so the border is taken from our own loss curves, per weight decay: the drop of one run starts at
# the last probe before c whose loss is still within DROP_FRACTION of the run's plateau (its highest
# loss before c); its transition length is c minus that probe; the border of a weight decay is the
# median transition length over its kept runs (rounded up to the probe grid). A run whose own drop
# started before its weight decay's border has its "before" window inside the drop: it does not
# count, and the count is reported.
REFERENCE_BORDERS = {0.0: 800, 0.1: 900, 0.2: 1100, 0.3: 1200}  # dynamic.py: left_borders (steps)
KEEP_FINAL_LOSS = 1e-3  # dynamic.py: runs with final eval loss >= 1e-3 are dropped
# Why 10 %: the plateau's probe-to-probe noise is about 2 % of its level (0.250-0.259 on the
# 0.25 plateau of PARITY at n = 6); a loss 10 % below the plateau has left it.
DROP_FRACTION = 0.1


def transition_length(row: dict) -> Optional[int]:
    """Steps from the start of the loss drop to convergence (c) on the run's stored aligned loss
    curve; None without a curve before c. When the loss is below the plateau band at every stored
    probe but the highest, the drop started at or before the curve's first probe."""
    loss = {o: v for o, v in aligned_curve(row, "loss").items() if o < 0}
    if len(loss) < 2:
        return None
    level = (1 - DROP_FRACTION) * max(loss.values())
    on_plateau = [o for o, v in sorted(loss.items()) if v >= level]
    return -on_plateau[-1]


def transition_borders(table) -> dict:
    """weight decay -> border (steps before c, positive) = median transition length over its kept
    runs, rounded up to the probe grid; absent when no kept run has a curve before c."""
    lengths: dict[float, list[int]] = {}
    for r in table:
        if _kept(r):
            L = transition_length(r)
            if L is not None:
                lengths.setdefault(float(r.get("weight_decay", 0.0)), []).append(L)
    out = {}
    every = next((_probe_every(r) for r in table if _kept(r)), 1)
    for wd, ls in lengths.items():
        out[wd] = int(math.ceil(float(np.median(ls)) / every) * every)
    return out


def _kept(row: dict) -> bool:
    fl = row.get("final_loss")
    return row.get("align_step", -1) > 0 and fl is not None and math.isfinite(fl) \
        and fl < KEEP_FINAL_LOSS


def _probe_every(row: dict) -> int:
    offs = sorted(aligned_curve(row, "loss"))
    return min(b - a for a, b in zip(offs, offs[1:])) if len(offs) > 1 else 1


def _window_mean(curve: dict, lo: int, hi: int) -> Optional[float]:
    vals = [v for o, v in curve.items() if lo <= o < hi]
    return float(np.mean(vals)) if vals else None


def transition_changes(row: dict, measure: str, border: int) -> Optional[tuple[float, float]]:
    """(|log change across the transition|, |log change between the control windows|) of one run.

    Across: before = [c - border - W, c - border), after = [c, c + W). Control (abruptness): two
    windows of the same width W and the same start-to-start distance D = border + W, right after
    the after window: [c + W, c + 2W) and [c + W + D, c + 2W + D). None when the stored curve does
    not cover all four windows or a window mean is not positive."""
    W = int(row.get("window") or 0)
    curve = aligned_curve(row, measure)
    if W <= 0 or not curve:
        return None
    every = _probe_every(row)
    D = border + W
    spans = [(-border - W, -border), (0, W), (W, 2 * W), (W + D, 2 * W + D)]
    offs = sorted(curve)
    if offs[0] > spans[0][0] or offs[-1] < spans[-1][1] - every:
        return None
    means = [_window_mean(curve, a, b) for a, b in spans]
    if any(m is None or m <= 0 for m in means):
        return None
    return abs(math.log(means[1] / means[0])), abs(math.log(means[3] / means[2]))


def abrupt_change(table, measure: str) -> Verdict:
    """Per kept run whose before-window precedes its own loss drop: d = |log(after / before)| -
    |log(control after / control before)| (the change across the transition minus the change
    between windows of the same width and distance after convergence). Paired over runs: PASS
    when mean d > 2 se (the change at the transition is larger), FAIL when mean d < -2 se, a tie
    INCONCLUSIVE; fewer than DYN_MIN_RUNS runs INCONCLUSIVE."""
    borders = transition_borders(table)
    counts = {"runs": len(table), "dropped_final_loss": 0, "window_in_drop": 0, "not_covered": 0}
    across, control, diffs = [], [], []
    for r in table:
        if not _kept(r):
            counts["dropped_final_loss"] += 1
            continue
        b = borders.get(float(r.get("weight_decay", 0.0)))
        L = transition_length(r)
        if b is None or L is None or L > b:
            counts["window_in_drop"] += 1
            continue
        ch = transition_changes(r, measure, b)
        if ch is None:
            counts["not_covered"] += 1
            continue
        across.append(ch[0])
        control.append(ch[1])
        diffs.append(ch[0] - ch[1])
    numbers = {**counts, "counted": len(diffs),
               "borders": {str(wd): b for wd, b in sorted(borders.items())},
               "reference_borders": {str(wd): b for wd, b in REFERENCE_BORDERS.items()}}
    if len(diffs) < rules.MIN_RUNS:
        return Verdict(INCONCLUSIVE, f"too few runs: {len(diffs)} counted of {len(table)} "
                       f"({counts['dropped_final_loss']} final loss >= {KEEP_FINAL_LOSS:g}, "
                       f"{counts['window_in_drop']} window inside the drop, "
                       f"{counts['not_covered']} not covered; need {rules.MIN_RUNS})",
                       jsonable(numbers))
    part = rules.compare_paired(diffs, label="|log change| across the transition minus control",
                                direction="greater")
    numbers.update({"mean_abs_log_across": rounded(float(np.mean(across)), 4),
                    "mean_abs_log_control": rounded(float(np.mean(control)), 4)})
    return rules.verdict([part], jsonable(numbers), summary=(
        f"{len(diffs)} runs counted ({counts['window_in_drop']} with the window inside the drop, "
        f"{counts['dropped_final_loss']} dropped by final loss); border {numbers['borders']} "
        f"steps; |log change| across the transition {np.mean(across):.3f} vs control "
        f"{np.mean(control):.3f}; {part.text}"))


_ABRUPT_STATEMENT = (
    "along PARITY training, {what} changes more across the transition (from a window ending where "
    "the loss drop begins, placed per weight decay, to the window after convergence) than between "
    "two windows of the same width and distance after convergence, paired by run, beyond 2 "
    "standard errors; runs with final loss >= 1e-3 and runs whose window lies inside their own "
    "loss drop do not count")


_ABRUPT_BARS = [
    rules.TIE_BAR, rules.MIN_RUNS_BAR,
    Bar("transition border", "median transition length of the weight decay's kept runs",
        "reference src/plotting/dynamic.py: left_borders -800/-900/-1100/-1200 for wd 0-0.3, "
        "scaled to our runs by the loss curve (issue 22 item 1)"),
    Bar("keep filter", f"final loss < {KEEP_FINAL_LOSS:g}", "reference src/plotting/dynamic.py"),
    Bar("start of the loss drop", f"loss {DROP_FRACTION:g} below the run's plateau",
        "reason: the plateau's probe-to-probe noise is ~2 % of its level"),
    Bar("abruptness", "change across > change between control windows",
        "reason: 'abrupt' = larger than the change over the same span elsewhere (issue 22 item 1)"),
]
_ABRUPT_STATISTIC = ("per run |log(mean {what} after convergence / mean before the transition)| "
                     "minus the same between two windows of equal width and distance after it")
_ABRUPT_COMPARISON = "paired over kept runs whose window precedes their loss drop: mean > 0"


@register_claim(
    "abrupt-sharpness-change-at-convergence",
    "training-dynamics",
    _ABRUPT_STATEMENT.format(what="sharpness"),
    "Hahn & Rofin Figs 3, 12-14 (E3): abrupt change in sharpness at convergence; reference "
    "src/plotting/dynamic.py marks the transition at -800/-900/-1100/-1200 steps for wd "
    "0/0.1/0.2/0.3 and keeps runs with final eval loss < 1e-3; values not published",
    statistic=_ABRUPT_STATISTIC.format(what="sharpness"), comparison=_ABRUPT_COMPARISON,
    bars=_ABRUPT_BARS,
)
def check_sharpness_change(table):
    return abrupt_change(table, "sharpness_x4")


@register_claim(
    "abrupt-blowup-change-at-convergence",
    "training-dynamics",
    _ABRUPT_STATEMENT.format(what="LayerNorm blow-up"),
    "Hahn & Rofin Figs 3, 12-14 (E3): abrupt change in blow-up at convergence; reference "
    "src/plotting/dynamic.py as for sharpness; values not published",
    statistic=_ABRUPT_STATISTIC.format(what="blow-up"), comparison=_ABRUPT_COMPARISON,
    bars=_ABRUPT_BARS,
)
def check_blowup_change(table):
    return abrupt_change(table, "blowup")


def _direction(m: float, se: float, sign: int) -> str:
    """'yes' when the mean moves in the predicted direction beyond 2 se, 'opposite' when it moves
    the other way beyond 2 se, 'unclear' inside the band."""
    if sign * m - 2 * se > 0:
        return "yes"
    if sign * m + 2 * se < 0:
        return "opposite"
    return "unclear"


def trade_stats(table) -> dict:
    """Per weight decay and pooled over weight decay > 0: runs covering the window, mean and
    standard error of Δ log norm and Δ log blow-up over runs (unrounded: the rule reads these)."""
    def summary(rows):
        ch = [c for c in (post_changes(r) for r in rows) if c is not None]
        dn, db = [c[0] for c in ch], [c[1] for c in ch]
        nan = float("nan")
        return {"runs": len(ch), "of": len(rows),
                "dlog_norm": float(np.mean(dn)) if ch else nan, "dlog_norm_se": stderr(dn),
                "dlog_blowup": float(np.mean(db)) if ch else nan, "dlog_blowup_se": stderr(db)}

    wds = sorted({float(r.get("weight_decay", 0.0)) for r in table})
    out = {"by_weight_decay": {str(wd): summary([r for r in table if r.get("weight_decay") == wd])
                               for wd in wds},
           "decay": summary([r for r in table if (r.get("weight_decay") or 0.0) > 0])}
    if table:
        out["window"] = {k: table[0].get(k) for k in ("post_start", "post_end", "window")}
    return out


# Decision rule, fixed before any run (issue 10 item 7, third part). Source: the reference's
# plotting code draws norm-vs-blow-up paths 3k-10k steps after convergence (sheet §4 E3); the
# expected direction (sheet: "after it, weight decay trades norm for blowup") is that along the
# path the norm falls and the blow-up rises. The paper gives no size, so the rule asks only for the
# direction, symmetrically: over the runs with weight decay > 0 whose curves cover both windows,
# m and se of Δ log norm and of Δ log blow-up between [c+a, c+a+W) and [c+b-W, c+b).
#   PASS when the norm falls beyond 2 se (m + 2 se < 0) AND the blow-up rises beyond 2 se;
#   FAIL when the norm rises beyond 2 se OR the blow-up falls beyond 2 se;
#   INCONCLUSIVE otherwise (a change within 2 se of zero), or with fewer than POST_MIN_RUNS runs.
# Runs without weight decay are reported (the control: no force shrinking the norm) and do not
# decide.
def _rounded_stats(st: dict) -> dict:
    def r(d):
        return {k: rounded(v, 5) if isinstance(v, float) else v for k, v in d.items()}

    return jsonable({**st, "decay": r(st["decay"]),
                     "by_weight_decay": {k: r(v) for k, v in st["by_weight_decay"].items()}})


def check_trade(table) -> Verdict:
    st = trade_stats(table)
    d = st["decay"]
    if d["runs"] < POST_MIN_RUNS:
        return Verdict(INCONCLUSIVE, f"{d['runs']}/{d['of']} runs with weight decay > 0 cover the "
                       f"post-convergence windows (need {POST_MIN_RUNS})", _rounded_stats(st))
    norm = _direction(d["dlog_norm"], d["dlog_norm_se"], -1)
    blow = _direction(d["dlog_blowup"], d["dlog_blowup_se"], +1)
    status = (FAIL if "opposite" in (norm, blow) else PASS if norm == blow == "yes"
              else INCONCLUSIVE)
    w = st.get("window", {})
    return Verdict(status, f"{d['runs']} runs, [c+{w.get('post_start')}, c+{w.get('post_end')}]: "
                   f"d log norm {d['dlog_norm']:+.4f} +- {2 * d['dlog_norm_se']:.4f} ({norm}), "
                   f"d log blow-up {d['dlog_blowup']:+.4f} +- {2 * d['dlog_blowup_se']:.4f} "
                   f"({blow}) (2 se)", _rounded_stats(st))


register_claim(
    "norm-falls-blowup-rises-after-convergence",
    "training-dynamics",
    "with weight decay, PARITY models trained on past convergence trade norm for LayerNorm "
    "blow-up: from a window post_start steps after convergence to one ending post_end steps after "
    "it, the parameter norm falls and the blow-up rises, each beyond 2 standard errors over runs",
    "Hahn & Rofin E3 (Figs 12-14; reference plotting code: norm-vs-blow-up paths 3k-10k steps "
    "after convergence, n = 25, wd 0-0.3): weight decay trades norm for blow-up after "
    "convergence; direction only, values not published",
    statistic="over runs with weight decay > 0: mean change of log norm and of log blow-up from "
    "[c+post_start, +window) to [c+post_end-window, c+post_end)",
    comparison="log norm change < 0 and log blow-up change > 0, each beyond 2 se over runs",
    bars=[rules.TIE_BAR, rules.MIN_RUNS_BAR,
          Bar("path windows", "c+3000 .. c+10000 (scaled at cpu)",
              "reference plotting code: norm-vs-blow-up paths 3k-10k steps after convergence "
              "(sheet §4 E3)")],
)(check_trade)
