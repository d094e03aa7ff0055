"""training-dynamics after convergence (Hahn & Rofin E3, issue 10 item 7): the parameter-norm /
LayerNorm blow-up trajectory of PARITY runs that keep training past their convergence step.

The reference trains every run its full step budget and its plotting code draws, per run, the
path in the (norm, blow-up) plane from 3k to 10k steps after the convergence step (sheet
``sensitivity-hardness.md`` §4 E3: "norm-vs-blowup paths 3k–10k steps after convergence"; the
expectation it plots: "after it, weight decay trades norm for blowup", Corollary 5: a sensitive
function needs a large norm *or* a large blow-up, so a run that keeps its fit while weight decay
shrinks the norm must raise the blow-up). Read from the aligned curves training-dynamics stores
(``aligned.<measure>.<offset>``, offsets from -span to max(span, post_end)), so the verdict is a
function of the stored table. Figure and claim only; the runs are training-dynamics'.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ...report.figures import PALETTE, plt
from ..base import Verdict, register_claim
from .. import rules
from ..claims import FAIL, INCONCLUSIVE, PASS, Bar
from ..stats import jsonable, rounded, stderr

POST_MIN_RUNS = rules.MIN_RUNS  # house rule: fewer runs -> INCONCLUSIVE


def aligned_curve(row: dict, measure: str) -> dict[int, float]:
    """The run's stored curve of ``measure`` keyed by steps from convergence (finite values)."""
    prefix = f"aligned.{measure}."
    return {int(k[len(prefix):]): float(v) for k, v in row.items()
            if k.startswith(prefix) and v is not None and math.isfinite(v)}


def post_windows(row: dict, measure: str) -> Optional[tuple[float, float]]:
    """(mean over [c + a, c + a + W), mean over [c + b - W, c + b)) of one run, with a, b the
    run's ``post_start``, ``post_end`` and W its ``window``; None when the stored curve does not
    reach c + b - W .. c + b (the run converged too late for the window) or lacks a key."""
    a, b, W = (row.get(k) for k in ("post_start", "post_end", "window"))
    if a is None or b is None or W is None:
        return None
    a, b, W = int(a), int(b), int(W)
    curve = aligned_curve(row, measure)
    if len(curve) < 2:
        return None
    offs = sorted(curve)
    every = min(q - p for p, q in zip(offs, offs[1:]))
    first = [v for o, v in curve.items() if a <= o < a + W]
    last = [v for o, v in curve.items() if b - W <= o < b]
    if offs[0] > a or offs[-1] < b - every or not first or not last:
        return None
    return float(np.mean(first)), float(np.mean(last))


def post_changes(row: dict) -> Optional[tuple[float, float]]:
    """(Δ log norm, Δ log blow-up) of one run between its two post-convergence windows, or None.
    The norm is sqrt of the stored squared norm (all parameters but the positional table)."""
    n2 = post_windows(row, "norm_sq")
    bu = post_windows(row, "blowup")
    if n2 is None or bu is None or min(n2 + bu) <= 0:
        return None
    return 0.5 * math.log(n2[1] / n2[0]), math.log(bu[1] / bu[0])


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


def trajectory_figure(table: list[dict]):
    """Left: each run's path in the (norm, blow-up) plane from c + post_start to c + post_end
    (circle = start, square = end), coloured by weight decay. Right: per run Δ log norm vs Δ log
    blow-up between the two windows, with each weight decay's mean +- 2 se; the claim predicts
    the upper-left quadrant for weight decay > 0."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    wds = sorted({r.get("weight_decay", 0.0) for r in table})
    drew = False
    for i, wd in enumerate(wds):
        color = PALETTE[i % len(PALETTE)]
        rows = [r for r in table if r.get("weight_decay", 0.0) == wd]
        pts = []
        for r in rows:
            if post_changes(r) is None:
                continue
            a, b = int(r["post_start"]), int(r["post_end"])
            n2, bu = aligned_curve(r, "norm_sq"), aligned_curve(r, "blowup")
            offs = [o for o in sorted(n2) if a <= o < b and o in bu]
            xs, ys = [math.sqrt(n2[o]) for o in offs], [bu[o] for o in offs]
            ax.plot(xs, ys, color=color, alpha=0.5, lw=0.8)
            ax.plot(xs[:1], ys[:1], "o", color=color, ms=3)
            ax.plot(xs[-1:], ys[-1:], "s", color=color, ms=3)
            pts.append(post_changes(r))
        if not pts:
            continue
        drew = True
        dn, db = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        bx.scatter(dn, db, s=14, alpha=0.6, color=color, label=f"wd {wd} ({len(pts)} runs)")
        if len(pts) > 1:
            bx.errorbar(dn.mean(), db.mean(), xerr=2 * stderr(dn), yerr=2 * stderr(db),
                        color=color, capsize=3, lw=1.5)
    if drew:
        ax.set_yscale("log")
        bx.axhline(0, color="grey", lw=0.8)
        bx.axvline(0, color="grey", lw=0.8)
        bx.legend(frameon=False, fontsize=8)
    else:
        for a_ in (ax, bx):
            a_.text(0.5, 0.5, "no run covers the post-convergence windows", ha="center",
                    va="center", transform=a_.transAxes, fontsize=9, color="grey")
    w = {k: table[0].get(k) for k in ("post_start", "post_end")} if table else {}
    ax.set_xlabel("parameter norm (without positions)")
    ax.set_ylabel("LayerNorm blow-up")
    ax.set_title(f"paths from c+{w.get('post_start')} to c+{w.get('post_end')} "
                 "(o start, s end)", fontsize=10)
    bx.set_xlabel("Δ log norm (last window - first)")
    bx.set_ylabel("Δ log blow-up")
    bx.set_title("per run; bars: mean ± 2 se", fontsize=10)
    fig.tight_layout()
    return fig
