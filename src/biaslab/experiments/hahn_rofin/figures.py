"""Figures of the Hahn & Rofin experiments (pure functions: stored table -> matplotlib Figure).

The landscape figures show converged (kept) runs only, as the reference's plots do, and say so.
"""

from __future__ import annotations

import math

import numpy as np

from ...plots.figures import PALETTE, plt, strip_with_means
from .protocol import aligned_curve, low_degrees, outward_cells, post_changes
from ..stats import stderr

TARGET_COLORS = {"parity": PALETTE[1], "majority": PALETTE[0], "first": PALETTE[2],
                 "mean": PALETTE[3], "scratchpad": PALETTE[5], "learned": PALETTE[0],
                 "random": PALETTE[1]}


def target_color(name, i=0):
    """The colour of a Boolean target in every figure (a palette colour for others)."""
    return TARGET_COLORS.get(name, PALETTE[i % len(PALETTE)])


def finite(v):
    """A real, finite number (not None, NaN or a string)."""
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _mean_band(ax, rows, xkey, ykey, label, color, log=False):
    """Scatter of every run, mean line and a +-2 sd band per x value."""
    pts = [(r[xkey], r[ykey]) for r in rows if finite(r.get(ykey)) and (not log or r[ykey] > 0)]
    if not pts:
        return
    xs = np.array([p[0] for p in pts], float)
    ys = np.array([p[1] for p in pts], float)
    ax.scatter(xs, ys, s=10, alpha=0.45, color=color)
    ux = np.unique(xs)
    m = np.array([ys[xs == u].mean() for u in ux])
    sd = np.array([ys[xs == u].std(ddof=1) if (xs == u).sum() > 1 else 0.0 for u in ux])
    ax.plot(ux, m, "-", color=color, lw=1.6, label=label)
    lo = np.maximum(m - 2 * sd, m * 0.05) if log else m - 2 * sd
    ax.fill_between(ux, lo, m + 2 * sd, color=color, alpha=0.12, lw=0)


def empty_panel(ax, text="no converged runs"):
    """Say in a panel that it has nothing to draw."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="grey")


def sharpness_scaling_figure(table: list[dict]):
    """Per sweep (rows): sharpness x4, LayerNorm blow-up (log) and parameter norm against n."""
    sweeps = sorted({r["sweep"] for r in table}) or ["-"]
    fig, axes = plt.subplots(len(sweeps), 3, figsize=(13, 3.6 * len(sweeps)), squeeze=False)
    for row, sw in zip(axes, sweeps):
        rows = [r for r in table if r.get("sweep") == sw and r.get("converged") == 1.0]
        targets = sorted({r["target"] for r in table if r.get("sweep") == sw})
        for ax, (key, title, log) in zip(row, [("sharpness_x4", "sharpness x4 (±1-label MSE scale)", False),
                                               ("blowup", "LayerNorm blow-up", True),
                                               ("param_norm", "parameter norm", False)]):
            for i, t in enumerate(targets):
                _mean_band(ax, [r for r in rows if r["target"] == t], "n", key, t, target_color(t, i), log)
            if log and rows:
                ax.set_yscale("log")
            if not rows:
                empty_panel(ax)
            ax.set_xlabel("n")
            ax.set_title(f"sweep {sw}: {title}", fontsize=10)
        if row[0].get_legend_handles_labels()[0]:
            row[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Converged runs (eval MSE < keep_mse); mean ± 2 sd", fontsize=10)
    fig.tight_layout()
    return fig


def tradeoff_figure(table: list[dict]):
    """One panel per n: parameter norm against blow-up (log x), coloured by target."""
    ns = sorted({r["n"] for r in table}) or [0]
    cols = min(len(ns), 2) if len(ns) <= 4 else 3
    rws = math.ceil(len(ns) / cols)
    fig, axes = plt.subplots(rws, cols, figsize=(5.2 * cols, 4 * rws), squeeze=False)
    conv = [r for r in table if r.get("converged") == 1.0]
    targets = sorted({r["target"] for r in table})
    for ax, n in zip(axes.flat, ns):
        any_pts = False
        for i, t in enumerate(targets):
            pts = [(r["blowup"], r["param_norm"]) for r in conv if r["n"] == n and r["target"] == t
                   and finite(r.get("blowup")) and r["blowup"] > 0]
            if pts:
                any_pts = True
                ax.scatter(*zip(*pts), s=14, alpha=0.6, color=target_color(t, i), label=t)
        if any_pts:
            ax.set_xscale("log")
            ax.legend(frameon=False, fontsize=8)
        else:
            empty_panel(ax)
        ax.set_title(f"n = {n}", fontsize=10)
        ax.set_xlabel("LayerNorm blow-up (log)")
        ax.set_ylabel("parameter norm")
    for ax in list(axes.flat)[len(ns):]:
        ax.axis("off")
    fig.suptitle("Norm vs blow-up of converged runs (weight decay and lr varied)", fontsize=10)
    fig.tight_layout()
    return fig


def dynamics_figure(table: list[dict]):
    """Loss, sharpness x4, blow-up and squared norm against steps from convergence."""
    names = [("loss", "fixed-batch loss", True), ("sharpness_x4", "sharpness x4", True),
             ("blowup", "LayerNorm blow-up", True), ("norm_sq", "squared parameter norm", False)]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6), squeeze=False)
    wds = sorted({r["weight_decay"] for r in table})
    for ax, (name, title, log) in zip(axes[0], names):
        drew = False
        for i, wd in enumerate(wds):
            curves = [sorted(aligned_curve(r, name).items()) for r in table if r["weight_decay"] == wd]
            curves = [c for c in curves if c]
            if not curves:
                continue
            drew = True
            color = PALETTE[i % len(PALETTE)]
            for c in curves:
                ax.plot([p[0] for p in c], [p[1] for p in c], color=color, alpha=0.2, lw=0.7)
            offs = sorted({p[0] for c in curves for p in c})
            mean = [np.mean([v for c in curves for o, v in c if o == off]) for off in offs]
            ax.plot(offs, mean, color=color, lw=2, label=f"wd {wd} ({len(curves)} runs)")
        if drew:
            if log:
                ax.set_yscale("log")
            ax.axvline(0, color="grey", ls="--", lw=1)
            ax.legend(frameon=False, fontsize=7)
        else:
            empty_panel(ax, "no run reached the alignment loss")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("steps from convergence")
    fig.suptitle("Aligned at the first probe with fixed-batch loss < align_loss", fontsize=10)
    fig.tight_layout()
    return fig


def sensitivity_sharpness_figure(table: list[dict]):
    """Sharpness x4 against the refit function's average sensitivity, learned vs random."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    kept = [r for r in table if r.get("converged") == 1.0 and r.get("source_fitted") == 1.0]
    sizes = sorted({r["source.train_size"] for r in kept})
    markers = ["o", "s", "^", "D", "v"]
    for kind in ("learned", "random"):
        for j, m in enumerate(sizes):
            pts = [(r["as_table"], r["sharpness_x4"]) for r in kept
                   if r["kind"] == kind and r["source.train_size"] == m]
            if pts:
                ax.scatter(*zip(*pts), s=18, alpha=0.65, color=target_color(kind), marker=markers[j % 5],
                           label=f"{kind}, m = {m}")
    if not kept:
        empty_panel(ax)
    else:
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("average sensitivity of the refit table")
    ax.set_ylabel("sharpness x4")
    ax.set_title("Refits on the full cube (converged, from fitted sources)", fontsize=10)
    fig.tight_layout()
    return fig


def lengthgen_figure(table: list[dict]):
    """Mean accuracy against test length, one panel per positional scheme (fitted runs)."""
    schemes = sorted({r["positions"] for r in table}) or ["-"]
    fig, axes = plt.subplots(1, len(schemes), figsize=(5.2 * len(schemes), 3.8), squeeze=False)
    for ax, pos in zip(axes[0], schemes):
        rows = [r for r in table if r.get("positions") == pos and r.get("fitted") == 1.0]
        for i, t in enumerate(sorted({r["target"] for r in table})):
            tr = [r for r in rows if r["target"] == t]
            if not tr:
                continue
            lengths = sorted(tr[0]["test_lengths"])
            accs = [[r.get(f"acc_len_{L}") for r in tr] for L in lengths]
            ax.plot(lengths, [np.mean(a) for a in accs], "o-", color=target_color(t, i),
                    label=f"{t} ({len(tr)} fitted)")
            for L, a in zip(lengths, accs):
                ax.scatter([L] * len(a), a, s=8, alpha=0.35, color=target_color(t, i))
            ax.axvline(tr[0]["n"], color="grey", ls=":", lw=1)
        if not rows:
            empty_panel(ax, "no fitted runs")
        else:
            ax.legend(frameon=False, fontsize=8)
        ax.axhline(0.5, color="grey", ls="--", lw=0.8)
        ax.set_ylim(0.3, 1.02)
        ax.set_xlabel("test length (dotted: training length)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"positions: {pos}", fontsize=10)
    fig.tight_layout()
    return fig


def scratchpad_figure(table: list[dict]):
    """Sharpness x4, blow-up and norm against n: scratchpad model vs plain PARITY (kept runs)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), squeeze=False)
    kept = [r for r in table if r.get("converged") == 1.0]
    for ax, (key, title, log) in zip(axes[0], [("sharpness_x4", "sharpness x4", False),
                                               ("blowup", "LayerNorm blow-up", True),
                                               ("param_norm", "parameter norm", False)]):
        for kind in ("scratchpad", "parity"):
            _mean_band(ax, [r for r in kept if r["kind"] == kind], "n", key, kind, target_color(kind), log)
        if key == "blowup":
            for part, ls in (("blowup_enc", ":"), ("blowup_dec", "--")):
                rows = [r for r in kept if r["kind"] == "scratchpad" and finite(r.get(part))]
                ns = sorted({r["n"] for r in rows})
                if ns:
                    ax.plot(ns, [np.mean([r[part] for r in rows if r["n"] == n]) for n in ns], ls,
                            color=target_color("scratchpad"), lw=1, label=part.replace("blowup_", "scratchpad "))
        if log and kept:
            ax.set_yscale("log")
        if not kept:
            empty_panel(ax)
        else:
            ax.legend(frameon=False, fontsize=8)
        ax.set_xlabel("n")
        ax.set_title(title, fontsize=10)
    fig.suptitle("Kept runs: scratchpad greedy accuracy > keep_acc; PARITY eval MSE < keep_mse",
                 fontsize=10)
    fig.tight_layout()
    return fig


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


def _panel(ax, table, norm_key, title):
    cells = outward_cells(table, norm_key)
    targets = sorted({t for t, _ in cells})
    for i, t in enumerate(targets):
        ns = sorted(n for tt, n in cells if tt == t)
        for n in ns:
            v = cells[(t, n)]
            ax.scatter([n] * len(v), v, s=10, alpha=0.45, color=target_color(t, i))
        m = [float(np.mean(cells[(t, n)])) for n in ns]
        se = [stderr(cells[(t, n)]) if len(cells[(t, n)]) > 1 else 0.0 for n in ns]
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


def trajectory_figure(table: list[dict]):
    """Left: each run's path in the (norm, blow-up) plane from c + post_start to c + post_end
    (circle = start, square = end), coloured by weight decay. Right: per run Δ log norm vs Δ log
    blow-up between the two windows, with each weight decay's mean +- 2 se; the claim predicts
    the upper-left quadrant for weight decay > 0."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    wds = sorted({r.get("weight_decay", 0.0) for r in table})
    drew = False
    for i, wd in enumerate(wds):
        color = PALETTE[i % len(PALETTE)]
        rows = [r for r in table if r.get("weight_decay", 0.0) == wd]
        pts = []
        for r in rows:
            if post_changes(r) is None:
                continue
            a, b = int(r["post_start"]), int(r["post_end"])
            n2, bu = aligned_curve(r, "norm_sq"), aligned_curve(r, "blowup")
            offs = [o for o in sorted(n2) if a <= o < b and o in bu]
            xs, ys = [math.sqrt(n2[o]) for o in offs], [bu[o] for o in offs]
            ax.plot(xs, ys, color=color, alpha=0.5, lw=0.8)
            ax.plot(xs[:1], ys[:1], "o", color=color, ms=3)
            ax.plot(xs[-1:], ys[-1:], "s", color=color, ms=3)
            pts.append(post_changes(r))
        if not pts:
            continue
        drew = True
        dn, db = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        bx.scatter(dn, db, s=14, alpha=0.6, color=color, label=f"wd {wd} ({len(pts)} runs)")
        if len(pts) > 1:
            bx.errorbar(dn.mean(), db.mean(), xerr=2 * stderr(dn), yerr=2 * stderr(db),
                        color=color, capsize=3, lw=1.5)
    if drew:
        ax.set_yscale("log")
        bx.axhline(0, color="grey", lw=0.8)
        bx.axvline(0, color="grey", lw=0.8)
        bx.legend(frameon=False, fontsize=8)
    else:
        for a_ in (ax, bx):
            empty_panel(a_, "no run covers the post-convergence windows")
    w = {k: table[0].get(k) for k in ("post_start", "post_end")} if table else {}
    ax.set_xlabel("parameter norm (without positions)")
    ax.set_ylabel("LayerNorm blow-up")
    ax.set_title(f"paths from c+{w.get('post_start')} to c+{w.get('post_end')} "
                 "(o start, s end)", fontsize=10)
    bx.set_xlabel("Δ log norm (last window - first)")
    bx.set_ylabel("Δ log blow-up")
    bx.set_title("per run; bars: mean ± 2 se", fontsize=10)
    fig.tight_layout()
    return fig


def degree_profile_figure(table: list[dict]):
    """Walsh degree profiles of learned vs random completions, one panel per m (fitted runs)."""
    rows = [r for r in table if r.get("fitted") == 1.0 and "deg_learned_0" in r]
    ms = sorted({int(r["train_size"]) for r in rows}) or [0]
    fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 3.6), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], ms):
        rm = [r for r in rows if int(r["train_size"]) == m]
        if not rm:
            empty_panel(ax, "no fitted runs")
            continue
        n = int(rm[0]["n"])
        ks = np.arange(n + 1)
        for j, kind in enumerate(("learned", "random")):
            w = np.array([[r[f"deg_{kind}_{k}"] for k in ks] for r in rm], dtype=float)
            mu, se = w.mean(0), np.array([stderr(col) if len(w) > 1 else 0.0 for col in w.T])
            ax.errorbar(ks + (j - 0.5) * 0.15, mu, yerr=2 * se, marker="o", ms=3.5, capsize=2,
                        color=PALETTE[j], label=f"{kind} completion (mean ± 2 se)")
        binom = [math.comb(n, k) / 2 ** n for k in ks]
        ax.plot(ks, binom, ls="--", color="grey", lw=1, label="uniform random function")
        ax.axvspan(-0.5, low_degrees(n) - 0.5, color="grey", alpha=0.08, lw=0)
        ax.set_title(f"m = {m} ({len(rm)} fitted)", fontsize=10)
        ax.set_xlabel("Walsh degree k")
    axes[0][0].set_ylabel("weight W_k = sum of ĝ(S)² over |S| = k")
    if rows:
        axes[0][0].legend(frameon=False, fontsize=7, loc="upper left")
    fig.suptitle("Degree profiles of completions (shaded: the low degrees k < n/2)", fontsize=10)
    fig.tight_layout()
    return fig


def refit_vs_train_sharpness_figure(table: list[dict]):
    """E5 step 4, the reference's plot (``src/plotting/generalization.py``): each converged refit's
    full-cube sharpness against its own sharpness on the m inputs its source was trained on.
    The reference measures the latter for refits of learned completions only and plots random
    completions with train sharpness = sharpness (on the diagonal); so does this figure."""
    kept = [r for r in table if r.get("converged") == 1.0 and r.get("source_fitted") == 1.0]
    learned = [(r["train_sharpness_x4"], r["sharpness_x4"]) for r in kept
               if r["kind"] == "learned" and r.get("train_sharpness_x4") is not None]
    random = [(r["sharpness_x4"], r["sharpness_x4"]) for r in kept if r["kind"] == "random"]
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for j, (kind, pts) in enumerate((("learned", learned), ("random (train := full cube)", random))):
        if pts:
            ax.scatter(*zip(*pts), s=18, alpha=0.65, color=PALETTE[j], label=f"refit of {kind}")
    if learned or random:
        lo, hi = min(min(p) for p in learned + random), max(max(p) for p in learned + random)
        ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=0.8)
        ax.legend(frameon=False, fontsize=8)
    else:
        empty_panel(ax, "no converged refits with train-subset sharpness")
    ax.set_xlabel("refit's sharpness x4 on its source's m training inputs")
    ax.set_ylabel("refit's sharpness x4 (full cube)")
    ax.set_title("Full-cube vs train-subset sharpness of the refits (E5 step 4)", fontsize=10)
    fig.tight_layout()
    return fig
