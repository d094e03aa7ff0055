"""Plotting helpers shared by every experiment's figures (figures are pure functions of the stored
table, a list of flat row dicts, and of the runs' artifacts). Imports matplotlib (Agg)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

PALETTE = ["#3b6ea8", "#d0743c", "#5a9e6f", "#a5507a", "#8c8c3c", "#6a5aa8", "#3ca0a0", "#b04040"]


def _jitter(k: int, width: float = 0.12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-width, width, k)


def strip_with_means(ax, groups: dict[str, list[float]], color_of=None, offset: float = 0.0,
                     label: str | None = None, color: str | None = None):
    """One column per group: every run as a dot, the mean as a bar with +-1 sd."""
    for i, (name, vals) in enumerate(groups.items()):
        vals = np.asarray([v for v in vals if v is not None and np.isfinite(v)])
        if not len(vals):
            continue
        c = color or (color_of(name) if color_of else PALETTE[i % len(PALETTE)])
        x = i + offset
        ax.scatter(x + _jitter(len(vals), seed=i), vals, s=14, alpha=0.55, color=c,
                   label=label if i == 0 else None)
        ax.errorbar(x, vals.mean(), yerr=vals.std(ddof=1) if len(vals) > 1 else 0, fmt="_",
                    color="black", markersize=18, capsize=4, lw=1.2)
        ax.annotate(f"{vals.mean():.2f}", (x, vals.mean()), xytext=(9, -3),
                    textcoords="offset points", fontsize=7, color="black")
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels(list(groups))
    ax.set_xlim(-0.6, len(groups) - 0.4)
