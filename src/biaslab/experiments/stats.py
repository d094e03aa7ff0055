"""Small statistics for claims (no scipy in the lab's dependencies): correlations, fits, means,
rounding of a verdict's numbers. Non-finite pairs are dropped."""

from __future__ import annotations

import math

import numpy as np


def _pairs(xs, ys):
    out = [(float(x), float(y)) for x, y in zip(xs, ys)
           if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
    return [p[0] for p in out], [p[1] for p in out]


def pearson(xs, ys) -> float:
    xs, ys = _pairs(xs, ys)
    if len(xs) < 2:
        return float("nan")
    x, y = np.asarray(xs), np.asarray(ys)
    sx, sy = x.std(), y.std()
    if sx == 0 or sy == 0:
        return float("nan")
    return float(((x - x.mean()) * (y - y.mean())).mean() / (sx * sy))


def linfit(xs, ys) -> dict:
    """Least-squares line y = a + b x: {"slope", "intercept", "r", "k"} (nan when undefined)."""
    xs, ys = _pairs(xs, ys)
    k = len(xs)
    if k < 2 or len(set(xs)) < 2:
        return {"slope": float("nan"), "intercept": float("nan"), "r": float("nan"), "k": k}
    x, y = np.asarray(xs), np.asarray(ys)
    b = float(((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum())
    return {"slope": b, "intercept": float(y.mean() - b * x.mean()), "r": pearson(xs, ys), "k": k}


def ranks(values) -> list[float]:
    """Ranks 1..k with ties given their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            out[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs, ys) -> float:
    xs, ys = _pairs(xs, ys)
    if len(xs) < 2:
        return float("nan")
    return pearson(ranks(xs), ranks(ys))


def mean_sd(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation and count of the finite values (None and nan dropped)."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return float("nan"), float("nan"), 0
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return m, sd, len(vals)


def stderr(values: list[float]) -> float:
    """Standard error of the mean; inf with fewer than two values."""
    _, sd, k = mean_sd(values)
    return sd / math.sqrt(k) if k > 1 else float("inf")


def rounded(v, nd: int = 4):
    """``v`` rounded for a verdict's numbers; None when it is missing or not finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(v, nd)


def jsonable(d):
    """A verdict's numbers made JSON-safe: non-finite floats as strings, floats to 5 places."""
    if isinstance(d, dict):
        return {k: jsonable(v) for k, v in d.items()}
    if isinstance(d, float) and not math.isfinite(d):
        return str(d)
    if isinstance(d, float):
        return round(d, 5)
    return d
