"""Figure helper for the token-wise measure: label-flip rate by position, one curve per model."""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .figures import PALETTE  # noqa: E402


def sensitivity_by_position(curves: Mapping[str, Sequence[float]], ax=None,
                            positions: Optional[Sequence[float]] = None,
                            spread: Optional[Mapping[str, Sequence[float]]] = None,
                            xlabel: str = "position", title: str = "",
                            grid: Optional[tuple[int, int]] = None):
    """Flip rate per position for each named model (``per_position`` of
    ``tokenwise_flip_sensitivity``, e.g. averaged over seeds), with an optional +-band.

    ``grid=(rows, cols)`` draws image patches as heat maps instead (one panel per model), so a
    patch measure reads in image coordinates. Returns the Figure.
    """
    names = list(curves)
    if grid is not None:
        fig, axes = plt.subplots(1, max(len(names), 1), figsize=(2.6 * max(len(names), 1), 2.8),
                                 squeeze=False)
        top = max([float(np.nanmax(np.asarray(curves[n], float))) for n in names] + [1e-9])
        for a, name in zip(axes[0], names):
            im = a.imshow(np.asarray(curves[name], float).reshape(grid), vmin=0, vmax=top,
                          cmap="viridis")
            a.set_title(name, fontsize=9)
            a.set_xticks([])
            a.set_yticks([])
        fig.colorbar(im, ax=list(axes[0]), shrink=0.8, label="flip rate")
        if title:
            fig.suptitle(title)
        return fig
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, name in enumerate(names):
        y = np.asarray(curves[name], float)
        x = np.asarray(positions if positions is not None else np.arange(len(y)), float)
        ax.plot(x, y, marker="o", ms=3, lw=1.4, color=PALETTE[i % len(PALETTE)], label=name)
        if spread and name in spread:
            s = np.asarray(spread[name], float)
            ax.fill_between(x, y - s, y + s, color=PALETTE[i % len(PALETTE)], alpha=0.2, lw=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("label-flip rate")
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure
