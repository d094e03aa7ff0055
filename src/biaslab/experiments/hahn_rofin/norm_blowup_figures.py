"""Figures of norm-blowup-tradeoff's issue-10 claims (pure: stored table -> matplotlib Figure):
the outward coordinate log(norm x blow-up) against n per target, with the same on the norm
relative to its value at initialization, and norm / init norm against blow-up."""

from __future__ import annotations

import math

import numpy as np

from ...plots.figures import plt
from .figures import target_color, empty_panel, finite
from .norm_blowup_tradeoff import outward_cells


def _panel(ax, table, norm_key, title):
    cells = outward_cells(table, norm_key)
    targets = sorted({t for t, _ in cells})
    for i, t in enumerate(targets):
        ns = sorted(n for tt, n in cells if tt == t)
        for n in ns:
            v = cells[(t, n)]
            ax.scatter([n] * len(v), v, s=10, alpha=0.45, color=target_color(t, i))
        m = [float(np.mean(cells[(t, n)])) for n in ns]
        se = [float(np.std(cells[(t, n)], ddof=1) / math.sqrt(len(cells[(t, n)])))
              if len(cells[(t, n)]) > 1 else 0.0 for n in ns]
        ax.errorbar(ns, m, yerr=2 * np.asarray(se), color=target_color(t, i), lw=1.5, capsize=3, label=t)
    if targets:
        ax.legend(frameon=False, fontsize=8)
    else:
        empty_panel(ax)
    ax.set_xlabel("n")
    ax.set_title(title, fontsize=10)


def outward_figure(table: list[dict]):
    """Three panels: log(norm x blow-up) vs n; log(norm/init norm x blow-up) vs n (mean +- 2 se,
    converged runs, the quantities of ``parity-further-out-in-norm-blowup-plane``); norm / init
    norm against blow-up (log x), coloured by target."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 4), squeeze=False)
    _panel(axes[0][0], table, "param_norm", "log(norm x blow-up)")
    _panel(axes[0][1], table, "norm_ratio", "log(norm / init norm x blow-up)")
    ax = axes[0][2]
    conv = [r for r in table if r.get("converged") == 1.0]
    targets = sorted({r["target"] for r in conv})
    for i, t in enumerate(targets):
        pts = [(r["blowup"], r["norm_ratio"]) for r in conv if r["target"] == t
               and finite(r.get("norm_ratio")) and finite(r.get("blowup")) and r["blowup"] > 0]
        if pts:
            ax.scatter(*zip(*pts), s=12, alpha=0.6, color=target_color(t, i), label=t)
    if ax.get_legend_handles_labels()[0]:
        ax.set_xscale("log")
        ax.legend(frameon=False, fontsize=8)
    else:
        empty_panel(ax)
    ax.set_xlabel("LayerNorm blow-up (log)")
    ax.set_ylabel("norm / norm at init")
    ax.set_title("norm relative to init vs blow-up", fontsize=10)
    fig.suptitle("Converged runs (eval MSE < keep_mse); mean +- 2 se per n", fontsize=10)
    fig.tight_layout()
    return fig
