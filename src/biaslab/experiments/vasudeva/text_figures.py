"""Figures of the language experiments: sensitivity by right-aligned position, sensitivity
against examples seen, and the synthetic-vocabulary preference. Pure functions of the table
(plus a loader for a run's curve artifact)."""

from __future__ import annotations

from typing import Callable, Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ...plots.figures import PALETTE  # noqa: E402
from ...plots.tokenwise import sensitivity_by_position  # noqa: E402


def _by_arch(table) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in table:
        out.setdefault(r.get("arch", "?"), []).append(r)
    return out


def sensitivity_by_position_figure(table):
    """Mean flip rate (over seeds) at each right-aligned position, one curve per model."""
    curves, spread, xs = {}, {}, None
    for arch, runs in sorted(_by_arch(table).items()):
        ks = sorted({int(k.rsplit("_", 1)[1]) for r in runs for k in r if k.startswith("pos_from_end_")})
        if not ks:
            continue
        vals = np.array([[r.get(f"pos_from_end_{k}", np.nan) for k in ks] for r in runs], float)
        with np.errstate(invalid="ignore"):
            curves[arch] = np.nanmean(vals, 0)[::-1]
            spread[arch] = np.nanstd(vals, 0)[::-1]
        xs = xs if xs is not None and len(xs) >= len(ks) else -np.asarray(ks[::-1], float)
    if not curves:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        ax.text(0.5, 0.5, "no per-position rates stored", ha="center")
        return fig
    n = min(len(c) for c in curves.values())
    curves = {a: c[-n:] for a, c in curves.items()}
    spread = {a: s[-n:] for a, s in spread.items()}
    return sensitivity_by_position(curves, positions=xs[-n:], spread=spread,
                                   xlabel="position from the end (-1 = last token)",
                                   title="embedding-noise flip rate by position (training data)")


def sensitivity_curve_figure(table, load: Callable[[str], Optional[np.ndarray]]):
    """Mean sensitivity (over seeds) against examples seen, one line per model; None if no
    run has more than one measurement."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    drawn = False
    for i, (arch, runs) in enumerate(sorted(_by_arch(table).items())):
        arrays = [a for a in (load(r["run_id"]) for r in runs) if a is not None and len(a) > 1]
        if not arrays:
            continue
        n = min(len(a) for a in arrays)
        steps = arrays[0][:n, 0] * runs[0].get("examples_per_step", 1)
        ys = np.mean([a[:n, 1] for a in arrays], 0)
        ax.plot(steps, ys, marker="o", ms=3, color=PALETTE[i % len(PALETTE)], label=arch)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("training examples seen")
    ax.set_ylabel("label-flip rate")
    ax.set_title("sensitivity on training data during training")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def vocabulary_preference_figure(table):
    """Share of conflict predictions that follow the frequent feature, per number of frequent
    positions (one dot per seed, the mean as a bar)."""
    fig, ax = plt.subplots(figsize=(5.6, 4))
    cells: dict[int, list[float]] = {}
    for r in table:
        cells.setdefault(int(r["task.frequent_count"]), []).append(r["follows_frequent"])
    for i, (k, vals) in enumerate(sorted(cells.items())):
        ax.bar(i, np.mean(vals), color=PALETTE[0], alpha=0.5)
        ax.scatter([i] * len(vals), vals, color=PALETTE[1], s=12, zorder=3)
    ax.set_xticks(range(len(cells)), [str(k) for k in sorted(cells)])
    ax.axhline(0.5, color="gray", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_xlabel("positions holding the frequent feature (the sparse feature: one position)")
    ax.set_ylabel("conflict predictions following the frequent feature")
    ax.set_title("one attention layer: which feature carries the label?")
    fig.tight_layout()
    return fig
