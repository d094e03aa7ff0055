"""The comparisons a claim is made of, each with the house's two guards built in.

- **Ties are INCONCLUSIVE.** A difference (or a slope, or a Fisher-z correlation) within
  ``Z`` = 2 standard errors of its bar is a tie: neither PASS nor FAIL. No cliffs.
- **Too few runs are INCONCLUSIVE.** A compared cell (each sample a comparison reads) with fewer
  than ``MIN_RUNS`` = 3 finite values says "too few runs".

Each comparison returns a ``Part`` (status, a one-line text, its numbers); ``verdict`` combines
parts with the one vocabulary of ``claims.combine``. ``direction="greater"`` means the claim says
the statistic lies above its bar (or ``a`` above ``b``); ``"less"`` the opposite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from .claims import FAIL, INCONCLUSIVE, PASS, Bar, Verdict, combine
from .stats import rounded, spearman, pearson

Z = 2.0
MIN_RUNS = 3
TIE_BAR = Bar("tie band", f"{Z:g} standard errors",
              "house rule (issue 20): a difference within 2 se of its bar is a tie, INCONCLUSIVE")
MIN_RUNS_BAR = Bar("runs per compared cell", f">= {MIN_RUNS}",
                   "house rule (issue 20): a cell of fewer than 3 runs is INCONCLUSIVE, too few runs")
HOUSE_BARS = (TIE_BAR, MIN_RUNS_BAR)


@dataclass
class Part:
    status: str
    text: str
    numbers: dict = field(default_factory=dict)


def finite(values: Iterable) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def _decide(estimate: float, se: float, bar: float, direction: str) -> str:
    """PASS when the estimate clears the bar by more than Z se in the claimed direction, FAIL
    when it misses it by more than Z se, INCONCLUSIVE (a tie) in between."""
    if direction not in ("greater", "less"):
        raise ValueError(f"direction {direction!r}: greater or less")
    sign = 1.0 if direction == "greater" else -1.0
    d = sign * (estimate - bar)
    if not math.isfinite(d) or not math.isfinite(se):
        return INCONCLUSIVE
    if d > Z * se:
        return PASS
    if d < -Z * se:
        return FAIL
    return INCONCLUSIVE


def _sym(direction: str) -> str:
    return ">" if direction == "greater" else "<"


def too_few(label: str, counts: dict, min_runs: int = MIN_RUNS) -> Part:
    shown = ", ".join(f"{k} {v}" for k, v in counts.items())
    return Part(INCONCLUSIVE, f"{label}: too few runs ({shown}; need {min_runs} per cell)",
                {"too_few_runs": dict(counts), "min_runs": min_runs})


def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error of the mean and count of the finite values."""
    v = np.asarray(finite(values), dtype=float)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("inf")
    return float(v.mean()), se, int(v.size)


def compare_means(a, b, *, label: str, direction: str = "greater", margin: float = 0.0,
                  min_runs: int = MIN_RUNS) -> Part:
    """Is mean(a) - mean(b) beyond ``margin`` in ``direction``? Welch standard error."""
    ma, sa, na = mean_se(a)
    mb, sb, nb = mean_se(b)
    if na < min_runs or nb < min_runs:
        return too_few(label, {"a": na, "b": nb}, min_runs)
    diff, se = ma - mb, math.hypot(sa, sb)
    status = _decide(diff, se, margin, direction)
    nums = {"mean_a": rounded(ma, 5), "mean_b": rounded(mb, 5), "diff": rounded(diff, 5),
            "se": rounded(se, 5), "n_a": na, "n_b": nb}
    return Part(status, f"{label}: {ma:.4g} - {mb:.4g} = {diff:+.4g} (se {se:.2g}; claim "
                        f"{_sym(direction)} {margin:g})", nums)


def compare_paired(diffs, *, label: str, direction: str = "greater", margin: float = 0.0,
                   min_runs: int = MIN_RUNS) -> Part:
    """Is the mean of paired differences beyond ``margin`` in ``direction``?"""
    m, se, n = mean_se(diffs)
    if n < min_runs:
        return too_few(label, {"pairs": n}, min_runs)
    status = _decide(m, se, margin, direction)
    return Part(status, f"{label}: mean paired difference {m:+.4g} (se {se:.2g}, {n} pairs; claim "
                        f"{_sym(direction)} {margin:g})",
                {"mean_diff": rounded(m, 5), "se": rounded(se, 5), "pairs": n})


def compare_to_bar(values, bar_value: float, *, label: str, direction: str = "greater",
                   min_runs: int = MIN_RUNS) -> Part:
    """Is the mean of ``values`` beyond ``bar_value`` in ``direction``?"""
    m, se, n = mean_se(values)
    if n < min_runs:
        return too_few(label, {"runs": n}, min_runs)
    status = _decide(m, se, bar_value, direction)
    return Part(status, f"{label}: mean {m:.4g} (se {se:.2g}, {n} runs; claim {_sym(direction)} "
                        f"{bar_value:g})", {"mean": rounded(m, 5), "se": rounded(se, 5), "runs": n})


def slope_fit(xs, ys) -> dict:
    """Least squares y = a + b x with the slope's standard error (nan where undefined)."""
    pts = [(float(x), float(y)) for x, y in zip(xs, ys)
           if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    k = len(pts)
    x = np.array([p[0] for p in pts])
    y = np.array([p[1] for p in pts])
    if k < 3 or len(set(x.tolist())) < 2:
        return {"slope": float("nan"), "se": float("nan"), "k": k}
    sxx = float(((x - x.mean()) ** 2).sum())
    b = float(((x - x.mean()) * (y - y.mean())).sum() / sxx)
    resid = y - (y.mean() + b * (x - x.mean()))
    se = math.sqrt(float((resid ** 2).sum()) / (k - 2) / sxx)
    return {"slope": b, "se": se, "k": k}


def slope_vs(xs, ys, bar_value: float = 0.0, *, label: str, direction: str = "greater",
             min_runs: int = MIN_RUNS) -> Part:
    """Is the least-squares slope of y on x beyond ``bar_value`` in ``direction``?"""
    f = slope_fit(xs, ys)
    if f["k"] < min_runs or not math.isfinite(f["slope"]):
        return too_few(label, {"points": f["k"]}, min_runs)
    status = _decide(f["slope"], f["se"], bar_value, direction)
    return Part(status, f"{label}: slope {f['slope']:.4g} (se {f['se']:.2g}, {f['k']} runs; claim "
                        f"{_sym(direction)} {bar_value:g})",
                {"slope": rounded(f["slope"], 6), "se": rounded(f["se"], 6), "points": f["k"]})


def compare_slopes(xs_a, ys_a, xs_b, ys_b, *, label: str, direction: str = "greater",
                   margin: float = 0.0, min_runs: int = MIN_RUNS) -> Part:
    """Is slope(a) - slope(b) beyond ``margin`` in ``direction`` (independent fits)?"""
    fa, fb = slope_fit(xs_a, ys_a), slope_fit(xs_b, ys_b)
    if min(fa["k"], fb["k"]) < min_runs or not (math.isfinite(fa["slope"]) and math.isfinite(fb["slope"])):
        return too_few(label, {"a": fa["k"], "b": fb["k"]}, min_runs)
    diff, se = fa["slope"] - fb["slope"], math.hypot(fa["se"], fb["se"])
    status = _decide(diff, se, margin, direction)
    return Part(status, f"{label}: slope {fa['slope']:.4g} vs {fb['slope']:.4g}, difference "
                        f"{diff:+.4g} (se {se:.2g}; claim {_sym(direction)} {margin:g})",
                {"slope_a": rounded(fa["slope"], 6), "se_a": rounded(fa["se"], 6),
                 "slope_b": rounded(fb["slope"], 6), "se_b": rounded(fb["se"], 6),
                 "diff": rounded(diff, 6), "se": rounded(se, 6)})


def correlation_vs(xs, ys, bar_value: float = 0.0, *, label: str, direction: str = "greater",
                   method: str = "spearman", min_runs: int = MIN_RUNS) -> Part:
    """Is the correlation beyond ``bar_value`` in ``direction``? Decided on Fisher's z with its
    standard error 1/sqrt(n-3) (so it needs at least 4 points, whatever ``min_runs``)."""
    fn = {"spearman": spearman, "pearson": pearson}[method]
    pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None
           and math.isfinite(float(x)) and math.isfinite(float(y))]
    n = len(pts)
    if n < max(min_runs, 4):
        return too_few(label, {"points": n}, max(min_runs, 4))
    r = fn([p[0] for p in pts], [p[1] for p in pts])
    if not math.isfinite(r):
        return Part(INCONCLUSIVE, f"{label}: {method} correlation undefined (a constant variable)",
                    {"r": None, "points": n})
    clip = 1 - 1e-9
    z, zbar, se = math.atanh(max(-clip, min(clip, r))), math.atanh(bar_value), 1 / math.sqrt(n - 3)
    status = _decide(z, se, zbar, direction)
    return Part(status, f"{label}: {method} r {r:.3f} ({n} points, z se {se:.2g}; claim "
                        f"{_sym(direction)} {bar_value:g})", {"r": rounded(r, 4), "points": n})


def verdict(parts: list[Part], numbers: Optional[dict] = None, summary: Optional[str] = None) -> Verdict:
    """One verdict from its parts (``claims.combine``), the parts' texts as the summary and their
    numbers under ``parts`` beside ``numbers``."""
    nums = dict(numbers or {})
    nums.setdefault("parts", [dict(p.numbers, text=p.text, status=p.status) for p in parts])
    text = summary if summary is not None else ("; ".join(p.text for p in parts) or "no comparison")
    return Verdict(combine(parts), text, nums)
