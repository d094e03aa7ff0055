"""Figures of the anchor-function experiments (Zhang et al.), from stored rows and artifacts."""

from __future__ import annotations

import math

import numpy as np

from ...plots.figures import PALETTE, plt, strip_with_means
from .protocol import solution_of


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


# -- E1 ----------------------------------------------------------------------------------------------
def phase_diagrams(cells: dict):
    """Symmetric and inferential accuracy on (4,3) over gamma x depth; failed cells hatched grey.

    ``cells``: (gamma, depth) -> {"symmetric", "inferential", "failed", ...} (``phase_cells``).
    """
    gammas = sorted({g for g, _ in cells})
    depths = sorted({d for _, d in cells})
    fig, axes = plt.subplots(1, 2, figsize=(4 + 0.7 * len(gammas) * 2, 1.6 + 0.55 * len(depths)),
                             squeeze=False)
    for ax, mapping in zip(axes[0], ("symmetric", "inferential")):
        grid = np.full((len(depths), len(gammas)), np.nan)
        for (g, d), c in cells.items():
            if not c["failed"] and _finite(c[mapping]):
                grid[depths.index(d), gammas.index(g)] = c[mapping]
        im = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (g, d), c in cells.items():
            x, y = gammas.index(g), depths.index(d)
            if c["failed"]:
                ax.add_patch(plt.Rectangle((x - 0.5, y - 0.5), 1, 1, facecolor="#d9d9d9",
                                           edgecolor="#888", hatch="///", lw=0))
            elif _finite(c[mapping]):
                ax.text(x, y, f"{c[mapping]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if c[mapping] < 0.6 else "black")
        ax.set_xticks(range(len(gammas)))
        ax.set_xticklabels([f"{g:g}" for g in gammas])
        ax.set_yticks(range(len(depths)))
        ax.set_yticklabels([str(d) for d in depths])
        ax.set_xlabel("gamma (larger = smaller init)")
        ax.set_ylabel("depth")
        ax.set_title(f"{mapping} accuracy on (4,3)")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle("best of learning rates, mean over seeds; hatched: seen-pair test acc < 90%",
                 fontsize=9)
    fig.tight_layout()
    return fig


def deviation_histograms(table: list[dict], by: tuple[str, ...] = ("gamma",)):
    """Mean share of each deviation prediction - (x-10) on (4,3), one line per ``by`` group."""
    offsets = sorted(int(k[5:]) for k in (table[0] if table else {}) if k.startswith("hist_")
                     and k != "hist_outside")
    groups: dict = {}
    for r in table:
        groups.setdefault(tuple(r[b] for b in by), []).append([r[f"hist_{o:+d}"] or 0.0 for o in offsets])
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (key, hs) in enumerate(sorted(groups.items())):
        ax.plot(offsets, np.mean(hs, 0), marker="o", ms=3, color=PALETTE[i % len(PALETTE)],
                label=", ".join(f"{b} {k:g}" for b, k in zip(by, key)))
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.axvline(4, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("prediction - inferential target on (4,3)  (0 inferential, +4 symmetric)")
    ax.set_ylabel("share of sequences")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# -- E3 ----------------------------------------------------------------------------------------------
MECHANISM_METRICS = [("sr_wq1", "stable rank W_Q(1)"), ("sr_wem", "stable rank W_em"),
                     ("cond_wq1", "condensation W_Q(1)"), ("fused_same", "cos, equal values"),
                     ("fused_diff", "cos, different values"), ("sharpness_rel", "relative sharpness")]
# Issue 10: W_em on the rows inputs use; centred cosines, equal values without mirror pairs.
SOLUTION_METRICS = [("sr_wq1", "stable rank W_Q(1)"), ("sr_wem_used", "stable rank W_em (used rows)"),
                    ("cond_wq1", "condensation W_Q(1)"), ("fused_c_same", "centred cos, equal (no mirror)"),
                    ("fused_c_mirror", "centred cos, mirror pairs"),
                    ("fused_c_diff", "centred cos, different"), ("sharpness_rel", "relative sharpness")]


def mechanism_strips(table: list[dict], by_solution: bool = False):
    """Each mechanism measure per gamma (or per solution found on (4,3)): every run a dot,
    mean +- sd."""
    metrics = SOLUTION_METRICS if by_solution else MECHANISM_METRICS
    if by_solution:
        key = lambda r: solution_of(r) or "not valid"  # noqa: E731
        names = [k for k in ("inferential", "symmetric", "other", "not valid")
                 if any(key(r) == k for r in table)]
    else:
        key = lambda r: f"g{float(r['gamma']):g}"  # noqa: E731
        names = [f"g{g:g}" for g in sorted({float(r["gamma"]) for r in table})]
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.3 * len(metrics), 3.4), squeeze=False)
    for ax, (metric, label) in zip(axes[0], metrics):
        strip_with_means(ax, {k: [r.get(metric) for r in table if key(r) == k] for k in names})
        ax.set_title(label, fontsize=9)
    fig.tight_layout()
    return fig


def _examples(table):
    """One run per gamma (the lowest seed), as the paper shows one example model per gamma."""
    best: dict = {}
    for r in sorted(table, key=lambda r: int(r["seed"])):
        best.setdefault(float(r["gamma"]), r)
    return sorted(best.items())


def mechanism_artifact_figures(table: list[dict], artifacts) -> dict:
    """The figures drawn from run artifacts (``store.Artifacts``), for the example runs whose
    artifact files are at hand; none when no artifacts are given."""
    have = [(g, r) for g, r in _examples(table) if artifacts is not None and artifacts.of(r["run_id"])]
    examples = [(g, r, artifacts.arrays(r["run_id"])) for g, r in have]
    if not examples:
        return {}
    return {"attention_flow": attention_flow(examples), "fused_cosine": cosine_heatmaps(examples),
            "query_cosine": query_heatmaps(examples), "embedding_pca": embedding_pca(examples)}


def attention_flow(examples):
    """Per model: positions at each layer as nodes, attention weights as edges (Fig 3)."""
    fig, axes = plt.subplots(1, len(examples), figsize=(5 * len(examples), 3.8), squeeze=False)
    for ax, (g, row, arr) in zip(axes[0], examples):
        att, toks = arr["attention"], arr["probe_tokens"]  # [layers, L, L], [L]
        n_layers, L = att.shape[0], att.shape[-1]
        for layer in range(n_layers):
            for q in range(L):
                for k in range(q + 1):
                    w = att[layer, q, k]
                    if w > 0.05:
                        ax.plot([k, q], [layer, layer + 1], color=PALETTE[layer % len(PALETTE)],
                                alpha=float(min(1, w)), lw=3 * w)
        for layer in range(n_layers + 1):
            ax.scatter(range(L), [layer] * L, s=25, color="black", zorder=3)
        ax.set_xticks(range(L))
        ax.set_xticklabels([str(int(t)) for t in toks])
        ax.set_yticks(range(n_layers + 1))
        ax.set_yticklabels(["input"] + [f"layer {i + 1}" for i in range(n_layers)])
        ax.set_title(f"gamma {g:g}: inferential {row['inferential_acc']:.2f}, "
                     f"symmetric {row['symmetric_acc']:.2f}", fontsize=9)
    fig.suptitle("attention flow for a (key, 4, 3) probe; edge width = weight (> 0.05)", fontsize=9)
    fig.tight_layout()
    return fig


def _sorted_cosine_panels(examples, order_of, title_of, xlabel=None):
    """One cosine heatmap per example model, rows and columns in ``order_of(arrays)`` order."""
    fig, axes = plt.subplots(1, len(examples), figsize=(4.4 * len(examples), 4), squeeze=False)
    for ax, (g, row, arr) in zip(axes[0], examples):
        c, order = order_of(arr)
        im = ax.imshow(c[np.ix_(order, order)], vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_title(title_of(g, row), fontsize=9)
        if xlabel:
            ax.set_xlabel(xlabel)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def cosine_heatmaps(examples):
    """Cosine of last-token vectors of probe sequences sorted by composite value (Fig 4)."""
    return _sorted_cosine_panels(
        examples, lambda a: (a["fused_cos"], np.argsort(a["fused_values"], kind="stable")),
        lambda g, r: f"gamma {g:g}: same {r['fused_same']:.2f}, different {r['fused_diff']:.2f}",
        "sequences sorted by composite value")


def query_heatmaps(examples):
    """Cosine between rows of W_Q(1), rows ordered by their leading direction (Fig 5a,b): rows
    aligned with the leading direction cluster."""
    return _sorted_cosine_panels(
        examples, lambda a: (a["query_cos"], np.argsort(np.linalg.eigh(a["query_cos"])[1][:, -1])),
        lambda g, r: f"gamma {g:g}: condensation {r['cond_wq1']:.2f}")


def embedding_pca(examples):
    """Item-token embeddings on their top two principal components, colored by value (Fig 5c,d)."""
    fig, axes = plt.subplots(1, len(examples), figsize=(4.4 * len(examples), 4), squeeze=False)
    for ax, (g, row, arr) in zip(axes[0], examples):
        p, t = arr["embedding_pca"], arr["embedding_tokens"]
        sc = ax.scatter(p[:, 0], p[:, 1], c=t, cmap="viridis", s=18)
        ax.set_title(f"gamma {g:g}: |Spearman| value vs PC {row['emb_order']:.2f}", fontsize=9)
        fig.colorbar(sc, ax=ax, fraction=0.046, label="token")
    fig.tight_layout()
    return fig


# -- E4 ----------------------------------------------------------------------------------------------
def lr_wd_figure(table: list[dict]):
    """Mean inferential accuracy on (4,3) over learning rate x weight decay (valid runs)."""
    lrs = sorted({float(r["lr"]) for r in table})
    wds = sorted({float(r["weight_decay"]) for r in table})
    grid = np.full((len(wds), len(lrs)), np.nan)
    for i, wd in enumerate(wds):
        for j, lr in enumerate(lrs):
            vals = [r["inferential_acc"] for r in table if float(r["lr"]) == lr
                    and float(r["weight_decay"]) == wd and (r.get("seen_test_acc") or 0) >= 0.9]
            if vals:
                grid[i, j] = np.mean(vals)
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(lrs), 1.5 + 0.6 * len(wds)))
    im = ax.imshow(grid, origin="lower", vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(wds)):
        for j in range(len(lrs)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if grid[i, j] < 0.6 else "black")
    ax.set_xticks(range(len(lrs)))
    ax.set_xticklabels([f"{v:g}" for v in lrs], rotation=30)
    ax.set_yticks(range(len(wds)))
    ax.set_yticklabels([f"{v:g}" for v in wds])
    ax.set_xlabel("peak learning rate")
    ax.set_ylabel("weight decay")
    ax.set_title("inferential acc. on (4,3)\n(3,4), (4,3) held out", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
