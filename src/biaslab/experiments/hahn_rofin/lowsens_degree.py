"""The low-degree bias and the train-subset sharpness of lowsens-generalization (issue 10, item 7).

Hahn & Rofin (sheet: sensitivity-hardness.md §4, "Abstract claims (paper)") say the landscape
constraints give transformers "a low-sensitivity (and low-degree) bias"; E5 stores learned
completions of partial random tables next to random completions of the same labels. Here each
completion's Walsh degree profile W_k = sum_{|S| = k} ĝ(S)^2 (``measure.fourier.degree_profile``,
exact for Boolean tables) is stored per run, and the claim compares the weight on low degrees.

Why the low-degree *share*, not the mean degree: for a ±1 function the weights sum to 1 and
sum_k k W_k is exactly the average sensitivity (sheet §1, Fourier form), so a mean-degree rule
would repeat ``lowsens-learned-below-random``. "Low" is fixed by the baseline, not by data:
degrees k < n/2, below the mean degree n/2 of a uniformly random function (sheet §1, standard
values: as = n/2 for a random function), whose expected profile is Binomial(n, 1/2).

E5 step 4 measures each fitted model's sharpness on its own training subset (R = 100); the sheet
states no claim about it (it plots sharpness against train-set sharpness), so it is stored and
drawn, not judged.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...measure.fourier import degree_profile
from ...report.figures import PALETTE, plt
from ..base import Verdict
from .. import rules
from ..claims import combine
from ..stats import mean_sd, rounded, stderr


def low_degrees(n: int) -> int:
    """How many degrees count as low: k = 0 .. ceil(n/2) - 1, i.e. k < n/2."""
    return (n + 1) // 2


def profile_columns(learned: torch.Tensor, randoms: torch.Tensor) -> dict:
    """One run's degree-profile columns: ``deg_learned_k`` of the learned table [2^n],
    ``deg_random_k`` averaged over its random completions [R, 2^n], and the low-degree shares
    ``lowdeg_learned`` / ``lowdeg_random`` (weight on degrees k < n/2)."""
    wl = degree_profile(learned)
    wr = degree_profile(randoms).mean(0)
    low = low_degrees(wl.shape[-1] - 1)
    out = {f"deg_learned_{k}": float(v) for k, v in enumerate(wl)}
    out.update({f"deg_random_{k}": float(v) for k, v in enumerate(wr)})
    out["lowdeg_learned"] = float(wl[:low].sum())
    out["lowdeg_random"] = float(wr[:low].sum())
    return out


def _by_m(table) -> dict[int, list[dict]]:
    by_m: dict[int, list[dict]] = {}
    for row in table:
        by_m.setdefault(int(row["train_size"]), []).append(row)
    return by_m


def low_degree_status(diffs: list[float]) -> str:
    """The rule at one m, on the paired differences lowdeg_learned - lowdeg_random."""
    return rules.compare_paired(diffs, label="low-degree weight", direction="greater").status


def check_low_degree(table):
    """The claim ``lowsens-learned-low-degree`` (registered in lowsens_generalization.py)."""
    # Decision rule, fixed before any run. Per m, over fitted runs only, the paired difference
    # d_i = lowdeg_learned_i - lowdeg_random_i (random = mean profile of that run's random
    # completions). With at least 3 runs (house rule; was MIN_FITTED = 2): PASS when mean(d) > 2 se(d); FAIL when
    # mean(d) < -2 se(d) (random completions significantly lower-degree); INCONCLUSIVE in
    # between. The claim: FAIL if any m fails, PASS if every m passes, else INCONCLUSIVE.
    by_m = _by_m(table)
    if not by_m:
        return Verdict("INCONCLUSIVE", "no finished runs", {})
    numbers, statuses = {}, []
    for m in sorted(by_m):
        fitted = [r for r in by_m[m] if r.get("fitted") == 1.0 and "lowdeg_learned" in r]
        diffs = [r["lowdeg_learned"] - r["lowdeg_random"] for r in fitted]
        status = low_degree_status(diffs)
        statuses.append(status)
        d, sd, k = mean_sd(diffs)
        numbers[f"m={m}"] = {
            "fitted": f"{k}/{len(by_m[m])}", "status": status,
            "lowdeg_learned": rounded(mean_sd([r["lowdeg_learned"] for r in fitted])[0], 4),
            "lowdeg_random": rounded(mean_sd([r["lowdeg_random"] for r in fitted])[0], 4),
            "diff": rounded(d, 4), "two_se": rounded(2 * stderr(diffs), 4)}
    summary = "; ".join(f"{m}: low-degree weight learned {v['lowdeg_learned']} vs random "
                        f"{v['lowdeg_random']} (diff {v['diff']}, 2 se {v['two_se']}, "
                        f"{v['fitted']} fitted) {v['status']}" for m, v in numbers.items())
    return Verdict(combine(statuses), summary, numbers)


def _profile(rows, kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error per degree of the stored profiles of ``rows``."""
    w = np.array([[r[f"deg_{kind}_{k}"] for k in range(n + 1)] for r in rows], dtype=float)
    se = w.std(0, ddof=1) / math.sqrt(len(w)) if len(w) > 1 else np.zeros(n + 1)
    return w.mean(0), se


def degree_profile_figure(table: list[dict]):
    """Walsh degree profiles of learned vs random completions, one panel per m (fitted runs)."""
    rows = [r for r in table if r.get("fitted") == 1.0 and "deg_learned_0" in r]
    ms = sorted({int(r["train_size"]) for r in rows}) or [0]
    fig, axes = plt.subplots(1, len(ms), figsize=(4.2 * len(ms), 3.6), squeeze=False, sharey=True)
    for ax, m in zip(axes[0], ms):
        rm = [r for r in rows if int(r["train_size"]) == m]
        if not rm:
            ax.text(0.5, 0.5, "no fitted runs", ha="center", va="center", transform=ax.transAxes)
            continue
        n = int(rm[0]["n"])
        ks = np.arange(n + 1)
        for j, kind in enumerate(("learned", "random")):
            mu, se = _profile(rm, kind, n)
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
        lo = min(min(p) for p in learned + random)
        hi = max(max(p) for p in learned + random)
        ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=0.8)
        ax.legend(frameon=False, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no converged refits with train-subset sharpness", ha="center",
                va="center", transform=ax.transAxes)
    ax.set_xlabel("refit's sharpness x4 on its source's m training inputs")
    ax.set_ylabel("refit's sharpness x4 (full cube)")
    ax.set_title("Full-cube vs train-subset sharpness of the refits (E5 step 4)", fontsize=10)
    fig.tight_layout()
    return fig
