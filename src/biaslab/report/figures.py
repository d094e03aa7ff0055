"""Figures as pure functions of the stored table (a list of flat row dicts)."""

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


def lowsens_figure(table: list[dict]):
    """Average sensitivity of learned vs random completions, by training size m."""
    fitted = [r for r in table if r.get("fitted") == 1.0]
    ms = sorted({int(r["train_size"]) for r in table})
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    learned = {f"m={m}": [r["as_learned"] for r in fitted if int(r["train_size"]) == m] for m in ms}
    random = {f"m={m}": [r["as_random"] for r in fitted if int(r["train_size"]) == m] for m in ms}
    strip_with_means(ax, learned, offset=-0.18, label="learned completion", color=PALETTE[0])
    strip_with_means(ax, random, offset=0.18, label="random completion", color=PALETTE[1])
    if table:
        n = int(table[0]["n"])
        ax.axhline(n / 2, color="grey", ls="--", lw=1, label=f"random function (n/2 = {n / 2:g})")
    ax.set_ylabel("average sensitivity")
    ax.set_xlabel("distinct training inputs")
    ax.set_title("Completions of partial random tables (fitted runs)")
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    return fig


def architecture_figure(table: list[dict]):
    """Learned-function sensitivity per architecture, one panel per target."""
    fitted = [r for r in table if r.get("fitted") == 1.0]
    targets = sorted({r["target"] for r in table})
    archs = sorted({r["arch"] for r in table}, key=lambda a: (a != "transformer", a))
    fig, axes = plt.subplots(1, max(len(targets), 1), figsize=(4.2 * max(len(targets), 1), 4),
                             squeeze=False)
    for ax, target in zip(axes[0], targets):
        groups = {a: [r["as_learned"] for r in fitted if r["target"] == target and r["arch"] == a]
                  for a in archs}
        strip_with_means(ax, groups)
        truth = [r["as_target"] for r in table if r["target"] == target]
        if truth:
            ax.axhline(float(np.mean(truth)), color="grey", ls="--", lw=1, label="target function")
            ax.legend(frameon=False, fontsize=8)
        ax.set_title(target)
        ax.set_ylabel("average sensitivity of learned function")
        ax.set_ylim(bottom=0)
    fig.suptitle("Fitted to the same training subsets")
    fig.tight_layout()
    return fig
