"""Failure anatomy of a math transformer (Charton, "What is my math transformer doing?").

When a predicted eigendecomposition fails the check, which of its properties still hold, and can
the failure be predicted? Pure functions over batches (float64), following the reference
notebook (LAWT ``notebooks/what_is_my_transformer_doing.ipynb``):

  property errors (each compared with a tolerance tau, "holds" when error < tau)
    decomposition  the task's own check: ||Q^T M Q - diag(lam)||_1 / ||lam||_1
    eigenvalues    ||lam_pred - lam_true||_1 / ||lam_true||_1
    norms          max over rows and columns of Q of | ||.||_2 - 1 |
    orthogonality  max |cos| between adjacent rows of Q, the first and last row included (the
                   notebook uses rows; ``axis="columns"`` takes the eigenvectors themselves --
                   the same for an orthogonal Q. The notebook also mixes in one unnormalized dot
                   product of the first and last row, a slip not copied here.)
    trace          |sum(lam_pred) - tr(M)| / ||lam_true||_1
  sign pattern     every predicted eigenvalue has the sign of the true one
  predictors       cond(Q_pred) (2-norm, the notebook's np.linalg.cond), cond(M) (the input, for
                   inversion), the smallest gap between the true eigenvalues
  separation       how well a predictor splits successes from failures: mean / p98 / max of the
                   successes, min / p2 / mean of the failures (the notebook's table) and AUROC
                   (the probability that a failure scores above a success, ties counted half).
"""

from __future__ import annotations

import torch

from .linalg_checks import eigenvector_error


def eigen_parts(pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(lam [B, n], Q [B, n, n]) from the eigenvector task's (n+1) x n layout."""
    return pred[..., 0, :], pred[..., 1:, :]


def eigenvalue_error(pred_lam: torch.Tensor, true_lam: torch.Tensor) -> torch.Tensor:
    return (pred_lam - true_lam).abs().sum(-1) / true_lam.abs().sum(-1)


def norm_deviation(q: torch.Tensor) -> torch.Tensor:
    """max | ||row||_2 - 1 | and | ||column||_2 - 1 | of each Q [B]."""
    rows = (torch.linalg.vector_norm(q, dim=-1) - 1).abs().amax(-1)
    cols = (torch.linalg.vector_norm(q, dim=-2) - 1).abs().amax(-1)
    return torch.maximum(rows, cols)


def adjacent_cosines(q: torch.Tensor, axis: str = "rows") -> torch.Tensor:
    """|cos| between vector i and i+1 (cyclically: the last with the first) of Q [B, n]."""
    v = q if axis == "rows" else q.transpose(-1, -2)
    w = torch.roll(v, -1, dims=-2)
    dot = (v * w).sum(-1)
    norms = torch.linalg.vector_norm(v, dim=-1) * torch.linalg.vector_norm(w, dim=-1)
    return dot.abs() / norms


def orthogonality_error(q: torch.Tensor, axis: str = "rows") -> torch.Tensor:
    """max |cos| of adjacent pairs [B]: 0 for an orthogonal Q."""
    return adjacent_cosines(q, axis).amax(-1)


def trace_error(m: torch.Tensor, pred_lam: torch.Tensor, true_lam: torch.Tensor) -> torch.Tensor:
    tr = torch.diagonal(m, dim1=-2, dim2=-1).sum(-1)
    return (pred_lam.sum(-1) - tr).abs() / true_lam.abs().sum(-1)


def sign_pattern_ok(pred_lam: torch.Tensor, true_lam: torch.Tensor) -> torch.Tensor:
    return (torch.sign(pred_lam) == torch.sign(true_lam)).all(-1)


def condition_number(a: torch.Tensor) -> torch.Tensor:
    """2-norm condition number sigma_max / sigma_min [B] (inf for a singular matrix)."""
    s = torch.linalg.svdvals(a)
    smax, smin = s[..., 0], s[..., -1]
    return torch.where(smin > 0, smax / torch.where(smin > 0, smin, torch.ones_like(smin)),
                       torch.full_like(smax, float("inf")))


def smallest_gap(lam: torch.Tensor) -> torch.Tensor:
    """Smallest distance between two eigenvalues [B] (any order in, sorted inside)."""
    s = torch.sort(lam, -1).values
    return (s[..., 1:] - s[..., :-1]).amin(-1)


def eigen_property_errors(m: torch.Tensor, pred: torch.Tensor, answers: torch.Tensor,
                          axis: str = "rows") -> dict[str, torch.Tensor]:
    """Every property error of predicted eigendecompositions [B] (see the module docstring).

    m: the input [B, n, n]; pred, answers: (n+1) x n (eigenvalues ascending in row 0, Q below).
    """
    lam, q = eigen_parts(pred)
    true_lam, _ = eigen_parts(answers)
    return {
        "decomposition": eigenvector_error(m, pred),
        "eigenvalues": eigenvalue_error(lam, true_lam),
        "norms": norm_deviation(q),
        "orthogonality": orthogonality_error(q, axis),
        "trace": trace_error(m, lam, true_lam),
    }


def eigen_predictors(m: torch.Tensor, pred: torch.Tensor, answers: torch.Tensor) -> dict:
    """Candidate predictors of failure [B]: cond of the predicted Q, cond of the input, and the
    smallest gap of the true spectrum."""
    return {"cond_pred_q": condition_number(eigen_parts(pred)[1]),
            "cond_input": condition_number(m),
            "min_gap": smallest_gap(eigen_parts(answers)[0])}


def property_table(errors: dict[str, torch.Tensor], tolerances, among: torch.Tensor | None = None):
    """{property: {tau: fraction of the examples in ``among`` whose error < tau}}."""
    out = {}
    for name, err in errors.items():
        sel = err if among is None else err[among]
        n = max(int(sel.numel()), 1)
        out[name] = {tol: float((sel < tol).sum()) / n for tol in tolerances}
    return out


def auroc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """P(score of a positive > score of a negative), ties counted half (Mann-Whitney U / n+ n-).
    NaN when either group is empty."""
    score = score.to(torch.float64).flatten()
    positive = positive.flatten().to(torch.bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = torch.argsort(score)
    s = score[order]
    _, inverse, counts = torch.unique_consecutive(s, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).to(torch.float64)
    avg_rank = ends - (counts.to(torch.float64) - 1) / 2  # 1-based mean rank of each tie group
    ranks = torch.empty_like(score)
    ranks[order] = avg_rank[inverse]
    u = ranks[positive].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def separation(score: torch.Tensor, failed: torch.Tensor) -> dict[str, float]:
    """How ``score`` separates successes from failures: the notebook's table and AUROC (high
    scores predicting failure). Non-finite scores are dropped."""
    keep = torch.isfinite(score)
    score, failed = score[keep].to(torch.float64), failed[keep].to(torch.bool)
    ok, bad = score[~failed], score[failed]
    nan = float("nan")

    def q(x, p):
        return float(torch.quantile(x, p)) if x.numel() else nan

    return {
        "n_success": float(ok.numel()), "n_failure": float(bad.numel()),
        "success_mean": float(ok.mean()) if ok.numel() else nan,
        "success_p98": q(ok, 0.98), "success_max": float(ok.max()) if ok.numel() else nan,
        "failure_min": float(bad.min()) if bad.numel() else nan,
        "failure_p2": q(bad, 0.02), "failure_mean": float(bad.mean()) if bad.numel() else nan,
        "auroc": auroc(score, failed),
    }


def accuracy_by_bins(score: torch.Tensor, correct: torch.Tensor, n_bins: int = 10):
    """Accuracy within quantile bins of ``score`` (e.g. cond(M) deciles): (edges [n_bins+1],
    accuracy [n_bins], counts [n_bins])."""
    score = score.to(torch.float64)
    finite = torch.isfinite(score)
    edges = torch.quantile(score[finite], torch.linspace(0, 1, n_bins + 1, dtype=torch.float64))
    idx = (torch.bucketize(score, edges[1:-1], right=True)).clamp(0, n_bins - 1)
    idx = torch.where(finite, idx, torch.full_like(idx, n_bins - 1))  # inf: the top bin
    counts = torch.bincount(idx, minlength=n_bins)
    hits = torch.bincount(idx, weights=correct.to(torch.float64), minlength=n_bins)
    return edges, hits / counts.clamp(min=1), counts
