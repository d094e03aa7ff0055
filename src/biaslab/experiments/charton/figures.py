"""Figures of the Charton experiments, pure functions of the stored table (and run arrays)."""

from __future__ import annotations

import numpy as np

from .protocol import TOLERANCES, tol_name


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _cell(r: dict) -> str:
    d = r["task_params.dim"]
    return (f"{r['task']} {d}x{d}\n{r['task_params.encoding']}->"
            f"{r['task_params.output_encoding']}")


def accuracy_by_tolerance(table: list[dict]):
    """Mean accuracy over seeds at each tolerance, one line per (task, size, encoding) cell."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    cells: dict[str, list[dict]] = {}
    for r in table:
        cells.setdefault(_cell(r).replace("\n", " "), []).append(r)
    taus = [t for t in TOLERANCES if f"acc_{tol_name(t)}" in table[0]]
    for name, rows in sorted(cells.items()):
        ys = [np.mean([r[f"acc_{tol_name(t)}"] for r in rows]) for t in taus]
        ax.plot([tol_name(t) + "%" for t in taus], ys, marker="o", label=name)
    ax.axhline(0.9, color="grey", ls=":", lw=1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("tolerance (relative L1 error)")
    ax.set_ylabel("accuracy on the fixed test set")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def encodings_side_by_side(table: list[dict]):
    """Accuracy at 5%, sequence length and training cost per encoding of one task."""
    plt = _plt()
    cells: dict[str, list[dict]] = {}
    for r in table:
        cells.setdefault(f"{r['task_params.encoding']}->{r['task_params.output_encoding']}",
                         []).append(r)
    names = sorted(cells)
    acc = [np.mean([r["acc_5"] for r in cells[n]]) for n in names]
    length = [cells[n][0]["encoder_len"] + cells[n][0]["decoder_len"] for n in names]
    cost = [np.mean([r["train_seconds"] / max(r["stack_members"], 1) for r in cells[n]])
            for n in names]
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, vals, label in zip(axes, (acc, length, cost),
                               ("accuracy at 5%", "tokens (encoder + decoder)",
                                "training seconds per model")):
        ax.bar(range(len(names)), vals, color="#4c72b0")
        ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def ood_heatmap(matrix: np.ndarray, train_names: list[str], test_names: list[str]):
    """Accuracy at 5% of models trained on each distribution (rows) tested on each (columns)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 5))
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(test_names)), test_names, rotation=40, fontsize=8)
    ax.set_yticks(range(len(train_names)), train_names, fontsize=8)
    ax.set_xlabel("test eigenvalue distribution")
    ax.set_ylabel("training eigenvalue distribution")
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if np.isfinite(matrix[i, j]):
                ax.text(j, i, f"{matrix[i, j]:.0%}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="accuracy at 5%")
    fig.tight_layout()
    return fig


def success_failure_histograms(panels: dict[str, tuple[np.ndarray, np.ndarray]], log: bool = True):
    """One panel per predictor: its values on successes vs failures (density histograms)."""
    plt = _plt()
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 3.2),
                             squeeze=False)
    for ax, (name, (ok, bad)) in zip(axes[0], panels.items()):
        ok, bad = ok[np.isfinite(ok)], bad[np.isfinite(bad)]
        both = np.concatenate([ok, bad])
        if both.size == 0:
            ax.set_title(f"{name}: no finite values", fontsize=9)
            continue
        lo, hi = both.min(), both.max()
        use_log = log and lo > 0 and hi / lo > 20
        bins = np.geomspace(lo, hi, 40) if use_log else np.linspace(lo, hi + 1e-12, 40)
        for vals, label in ((ok, "successes"), (bad, "failures")):
            if vals.size:  # a density of an empty group is 0/0
                ax.hist(vals, bins=bins, density=True, alpha=0.6, label=f"{label} ({vals.size})")
            else:
                ax.plot([], [], label=f"{label} (0)")
        if use_log:
            ax.set_xscale("log")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
