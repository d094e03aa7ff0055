"""Figures of the vision experiments, pure functions of the stored table (flat run rows)."""

from __future__ import annotations

import math

import numpy as np

from ...plots.figures import PALETTE, plt, strip_with_means
from ...plots.tokenwise import sensitivity_by_position


def _sigma_columns(table) -> list[str]:
    cols = {k for r in table for k in r if k.startswith("sens_") and k != "sens_scattered"}
    return sorted(cols, key=lambda c: float(c.split("_")[1]))


def _archs(table) -> list[str]:
    return sorted({r["arch"] for r in table}, key=lambda a: (not a.startswith("vit"), a))


def sensitivity_by_architecture(table):
    """Left: fitted runs at the claim sigma per architecture. Right: mean flip rate vs sigma."""
    fitted = [r for r in table if r.get("fitted") == 1.0]
    from .vision_sensitivity import claim_column

    col = claim_column(table)
    archs = _archs(table)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    strip_with_means(a, {x: [r[col] for r in fitted if r["arch"] == x] for x in archs})
    a.set_ylabel(f"patch-noise sensitivity ({col.replace('sens_', 'sigma ')})")
    a.set_title("fitted to equal training accuracy")
    a.set_ylim(bottom=0)
    cols = _sigma_columns(table)
    sig = [float(c.split("_")[1]) for c in cols]
    for i, x in enumerate(archs):
        ys = [np.mean([r[c] for r in fitted if r["arch"] == x] or [math.nan]) for c in cols]
        b.plot(sig, ys, marker="o", color=PALETTE[i % len(PALETTE)], label=x)
    b.set_xscale("log")
    b.set_xlabel("noise std on one patch")
    b.set_ylabel("label-flip rate (mean over runs)")
    b.legend(frameon=False, fontsize=8)
    fig.suptitle("Token-wise sensitivity on training images (sheet: ViT 0.0014, ResNet-18 0.0829)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def patch_maps(table):
    """Mean flip rate of each patch, in image coordinates, one panel per architecture."""
    fitted = [r for r in table if r.get("fitted") == 1.0]
    n = len([k for k in (fitted[0] if fitted else {}) if k.startswith("patch_")])
    side = int(round(math.sqrt(n)))
    curves = {}
    for x in _archs(table):
        rows = [r for r in fitted if r["arch"] == x]
        if rows and side * side == n:
            curves[x] = [float(np.mean([r[f"patch_{j}"] for r in rows])) for j in range(n)]
    if not curves:
        fig, ax = plt.subplots()
        ax.text(0.5, 0.5, "no fitted runs", ha="center")
        return fig
    return sensitivity_by_position(curves, grid=(side, side),
                                   title="flip rate per noised patch (training images)")


def regularization_figure(table):
    """Sensitivity and corrupted accuracy, plain vs regularised, per architecture."""
    from .vision_sensitivity import claim_column

    col = claim_column(table)
    rows = [r for r in table if r.get("fitted") == 1.0]
    archs = _archs(table)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, metric, label in [(axes[0], col, "patch-noise sensitivity (train)"),
                              (axes[1], "acc_noise", "accuracy, noise corruptions"),
                              (axes[2], "acc_corrupt", "accuracy, all corruptions")]:
        for k, loss in enumerate(("ce", "sensreg")):
            groups = {a: [r[metric] for r in rows if r["arch"] == a and r["loss"] == loss
                          and r.get(metric) is not None] for a in archs}
            strip_with_means(ax, groups, offset=-0.18 + 0.36 * k, color=PALETTE[k],
                             label="plain (CE)" if loss == "ce" else "regularised")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Sensitivity regulariser: (1-p) CE + p MSE(f(noised), f(clean))", fontsize=10)
    fig.tight_layout()
    return fig


def corruption_profile(table):
    """Accuracy by corruption family and severity (means over fitted runs), per arch and loss."""
    rows = [r for r in table if r.get("fitted") == 1.0]
    sev_cols = sorted({k for r in rows for k in r if k.startswith("acc_sev")})
    fig, ax = plt.subplots(figsize=(6.4, 4))
    i = 0
    for a in _archs(table):
        for loss in ("ce", "sensreg"):
            sel = [r for r in rows if r["arch"] == a and r["loss"] == loss]
            if not sel:
                continue
            ys = [np.mean([r["test_acc"] for r in sel])] + \
                 [np.mean([r[c] for r in sel]) for c in sev_cols]
            ax.plot(range(len(ys)), ys, marker="o", color=PALETTE[i % len(PALETTE)],
                    ls="-" if loss == "sensreg" else "--", label=f"{a} {loss}")
            i += 1
    ax.set_xticks(range(len(sev_cols) + 1))
    ax.set_xticklabels(["clean"] + [c.replace("acc_sev", "sev ") for c in sev_cols])
    ax.set_ylabel("held-out accuracy (all corruptions)")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def sharpness_scatter(table):
    """Sensitivity against each sharpness measure, one colour per architecture."""
    from .vision_sensitivity import claim_column

    col = claim_column(table)
    rows = [r for r in table if r.get("fitted") == 1.0]
    measures = [("sharp_l1", "weight-noise L1 logit change"),
                ("sharp_flip", "weight-noise flip rate"),
                ("sharp_loss", "lab perturbation sharpness (loss rise)")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, (m, label) in zip(axes, measures):
        for i, a in enumerate(_archs(table)):
            sel = [r for r in rows if r["arch"] == a and r.get(m) is not None]
            ax.scatter([r[m] for r in sel], [r[col] for r in sel], s=22,
                       color=PALETTE[i % len(PALETTE)], label=a)
        ax.set_xlabel(label)
        ax.set_ylabel(f"sensitivity ({col})")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Lower sensitivity with flatter minima? (one point per fitted run)", fontsize=10)
    fig.tight_layout()
    return fig
