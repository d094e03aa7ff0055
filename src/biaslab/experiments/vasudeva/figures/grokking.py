"""The grokking-sensitivity figure: every measured curve against epoch (log x), one line per seed,
the phase marks of each seed, and the reference's numbers (sheet §5) beside ours."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..protocol import CURVES  # noqa: E402

PALETTE = ["#3b6ea8", "#d0743c", "#5a9e6f", "#a5507a", "#8c8c3c", "#6a5aa8", "#3ca0a0", "#b04040"]

#: The reference's 3-seed curves as the sheet reads them off the notebook plots (§5), p = 113.
REFERENCE_TEXT = ("reference (p=113, 30 %, sheet §5): train acc 1 by ~200; test acc ~0.3 until "
                  "~10k, ~1 by 12.5k;\nsensitivity spike ~15 %, ~3 % at 500, ~9 % at 3000, "
                  "1-5 % by 9800, < 1 % at the end; weight norm 120 -> 55 (3000) -> 33")
REFERENCE_SENS = [(500, 3.0), (3000, 9.0), (9800, 3.0)]  # epoch, % (9800: middle of 1-5 %)


def _curves_path(lookup, run_id: str):
    """The run's ``curves`` artifact from a ``store.Artifacts`` (``of(rid)``), a store
    (``artifacts(rid)``) or a mapping rid -> name -> file."""
    if hasattr(lookup, "of"):
        files = lookup.of(run_id)
    elif hasattr(lookup, "artifacts"):
        files = lookup.artifacts(run_id)
    else:
        files = lookup.get(run_id, {})
    return (files or {}).get("curves")


def load_curves(table, lookup) -> list[tuple[dict, dict]]:
    out = []
    for row in sorted(table, key=lambda r: r.get("seed", 0)):
        path = _curves_path(lookup, row["run_id"])
        if path is None:
            continue
        c = np.load(path)
        # curves stored before sensitivity_one_token was recorded have one column fewer
        out.append((row, {name: c[:, j] for j, name in enumerate(CURVES[:c.shape[1]])}))
    return out


def _mark(ax, row, color):
    for key, ls in (("t_fit", ":"), ("t_jump", "--")):
        t = row.get(key)
        if t is not None and math.isfinite(t):
            ax.axvline(t, color=color, ls=ls, lw=0.8, alpha=0.7)


def grokking_figure(table, lookup):
    runs = load_curves(table, lookup)
    panels = [("accuracy", None), ("sensitivity (%)", "sensitivity"), ("weight norm", "weight_norm"),
              ("sharpness (loss rise)", "sharpness"), ("Fourier share of embedding", "fourier_share")]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)), sharex=True)
    for i, (row, c) in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        e = c["epoch"]
        label = f"seed {row.get('seed')}"
        axes[0].plot(e, c["train_acc"], color=color, ls=":", lw=1.2)
        axes[0].plot(e, c["test_acc"], color=color, lw=1.4, label=label)
        for ax, (_, key) in zip(axes[1:], panels[1:]):
            y = c[key] * (100 if key == "sensitivity" else 1)
            ok = np.isfinite(y)
            ax.plot(e[ok], y[ok], color=color, lw=1.1, marker="." if key == "sharpness" else None,
                    ms=3)
        if "sensitivity_one_token" in c:  # the paper's one-token rate, beside a-and-b-together
            axes[1].plot(e, 100 * c["sensitivity_one_token"], color=color, ls=":", lw=1.0)
        for ax in axes:
            _mark(ax, row, color)
    axes[1].plot([], [], color="grey", ls=":", label="one token at a time (dotted)")
    axes[0].plot([], [], color="grey", ls=":", label="train (dotted)")
    axes[0].plot([], [], color="grey", ls="--", lw=0.8, label="marks: fit (:), jump (--)")
    if runs and runs[0][0].get("p") == 113:
        axes[0].plot([200, 10_000], [0.3, 0.3], color="black", lw=3, alpha=0.25,
                     label="reference test acc ~0.3")
        xs, ys = zip(*REFERENCE_SENS)
        axes[1].scatter(xs, ys, color="black", marker="x", zorder=5, label="reference")
    axes[1].legend(frameon=False, fontsize=7)
    for ax, (name, _) in zip(axes, panels):
        ax.set_ylabel(name, fontsize=8)
        ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend(frameon=False, fontsize=7, ncol=3)
    axes[-1].set_xlabel("epoch")
    if runs:
        r = runs[0][0]
        axes[0].set_title(f"(a {r.get('op', '+')} b) mod {r.get('p')}, train fraction "
                          f"{r.get('train_fraction')}, wd {r.get('weight_decay')}, lr {r.get('lr')}",
                          fontsize=9)
    fig.text(0.01, 0.002, REFERENCE_TEXT, fontsize=6.5, va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
