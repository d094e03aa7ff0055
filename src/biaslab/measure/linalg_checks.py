"""How the LAWT papers score a predicted matrix (Charton; reference: LAWT ``generators.evaluate``).

A prediction is correct at tolerance tau when its task's error is below tau (strictly), with the
main tau = 5% and also 2, 1, 0.5%. Errors, each batched over [B] in float64:

  relative L1   ||P - T||_1 / ||T||_1 (entrywise sums) -- transpose, matrix_sum, matrix_vector,
                matrix_product, eigenvalues, singularvalues
  eigenvectors  ||Q^T M Q - diag(lambda)||_1 / ||diag(lambda)||_1 with the PREDICTED Q (rows 1..n)
                and lambda (row 0): the eigenvector task is judged by the decomposition it states,
                not by closeness to one particular Q
  inversion     ||M P - I||_1 / n (the reference's rule, invert_matrix and syminverse); the distance
                to the true inverse ||P - M^-1||_1 / ||M^-1||_1 is reported beside it
  singular vec. ||U^T M V - diag(sigma)||_1 / ||sigma||_1 with predicted sigma (row 0), U (rows
                1..r), V (rows r+1..r+c)
  singular val. relative L1 (the reference's line ``hyp@ - tgt`` multiplies instead of subtracting;
                the intended difference is used)

M and T are the matrices the model saw and was taught, i.e. decoded from the tokens (the
reference decodes source and target the same way). A target of all zeros is matched only exactly.

Quirks kept on purpose and documented: (1) an example whose teacher-forced argmax equals the
target exactly counts as correct at every tolerance (``exact``), whatever its error; (2) eigenvalues
are DESCENDING in the eigenvalues task and ASCENDING in row 0 of the eigenvector task, so a
prediction in the other order is wrong. Malformed predictions (tokens that do not parse into the
answer's shape) are their own category: never correct, counted separately from wrong ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

TOLERANCES = (0.05, 0.02, 0.01, 0.005)

RELATIVE_L1_TASKS = {"transpose", "matrix_sum", "matrix_vector", "matrix_product", "eigenvalues",
                     "singularvalues"}


def _l1(x: torch.Tensor) -> torch.Tensor:
    return x.abs().sum((-1, -2))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den, with 0/0 = 0 and x/0 = inf (an all-zero target is matched only exactly)."""
    inf = torch.full_like(num, float("inf"))
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)),
                       torch.where(num == 0, torch.zeros_like(num), inf))


def relative_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||pred - target||_1 / ||target||_1 per matrix [B]."""
    return _ratio(_l1(pred - target), _l1(target))


def eigenvector_error(m: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """||Q^T M Q - diag(lam)||_1 / ||lam||_1 with lam = pred[:, 0], Q = pred[:, 1:] (columns)."""
    lam, q = pred[..., 0, :], pred[..., 1:, :]
    d = torch.diag_embed(lam)
    return _ratio(_l1(q.transpose(-1, -2) @ m @ q - d), _l1(d))


def inversion_residual(m: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """||M P - I||_1 / n."""
    n = m.shape[-1]
    eye = torch.eye(n, dtype=m.dtype, device=m.device)
    return _l1(m @ pred - eye) / n


def singularvector_error(m: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """||U^T M V - diag(sigma)||_1 / ||sigma||_1; pred stacks sigma (row 0), U (r rows) and
    V (c rows)."""
    r = m.shape[-2]
    s, u, v = pred[..., 0, :], pred[..., 1:1 + r, :], pred[..., 1 + r:, :]
    d = torch.diag_embed(s)
    return _ratio(_l1(u.transpose(-1, -2) @ m @ v - d), _l1(d))


def task_error(problem: str, inputs: torch.Tensor, answers: torch.Tensor,
               pred: torch.Tensor) -> torch.Tensor:
    """The error the task is judged by, per example [B] (see the module docstring)."""
    if problem in RELATIVE_L1_TASKS:
        return relative_l1(pred, answers)
    if problem == "eigenvectors":
        return eigenvector_error(inputs, pred)
    if problem in ("invert_matrix", "syminverse"):
        return inversion_residual(inputs, pred)
    if problem == "singularvectors":
        return singularvector_error(inputs, pred)
    raise KeyError(f"no check for problem {problem!r}")


def coefficients_within(pred: torch.Tensor, target: torch.Tensor, tol: float) -> torch.Tensor:
    """Fraction of coefficients with |p - t| / (|t| + 1e-12) < tol, per matrix (a logged extra)."""
    return ((pred - target).abs() / (target.abs() + 1e-12) < tol).double().mean((-1, -2))


@dataclass
class LinalgEvaluation:
    """Per-example results of one evaluation; ``summary()`` turns them into rates."""

    problem: str
    error: torch.Tensor      # [B] task error (inf where malformed)
    valid: torch.Tensor      # [B] prediction parsed into the answer's shape
    exact: torch.Tensor      # [B] teacher-forced exact match (correct at every tolerance)
    correct: torch.Tensor    # [len(tolerances), B]
    tolerances: tuple
    inverse_error: torch.Tensor | None = None  # inversion: ||P - M^-1||_1 / ||M^-1||_1

    def summary(self) -> dict[str, float]:
        n = max(int(self.error.numel()), 1)
        out = {"n": float(self.error.numel()),
               "malformed": float((~self.valid).sum()) / n,
               "exact": float(self.exact.sum()) / n}
        for k, tol in enumerate(self.tolerances):
            out[f"acc@{tol:g}"] = float(self.correct[k].sum()) / n
            out[f"wrong@{tol:g}"] = float((self.valid & ~self.correct[k]).sum()) / n
        if self.inverse_error is not None:
            ok = self.valid & torch.isfinite(self.inverse_error)
            for tol in self.tolerances:
                out[f"inverse_close@{tol:g}"] = float((ok & (self.inverse_error < tol)).sum()) / n
        return out


def evaluate_matrices(problem: str, inputs: torch.Tensor, answers: torch.Tensor,
                      pred: torch.Tensor, valid: torch.Tensor, exact: torch.Tensor | None = None,
                      tolerances=TOLERANCES) -> LinalgEvaluation:
    """Score decoded predictions ``pred`` [B, ro, co] (``valid`` from the decoder)."""
    inputs, answers, pred = (t.to(torch.float64) for t in (inputs, answers, pred))
    err = task_error(problem, inputs, answers, pred)
    err = torch.where(valid & ~torch.isnan(err), err, torch.full_like(err, float("inf")))
    exact = torch.zeros_like(valid) if exact is None else exact.to(torch.bool)
    correct = torch.stack([exact | (valid & (err < tol)) for tol in tolerances])
    inv = relative_l1(pred, answers) if problem in ("invert_matrix", "syminverse") else None
    if inv is not None:
        inv = torch.where(valid, inv, torch.full_like(inv, float("inf")))
    return LinalgEvaluation(problem, err, valid, exact, correct, tuple(tolerances), inv)


def evaluate(task, problems, tokens: torch.Tensor, exact: torch.Tensor | None = None,
             tolerances=TOLERANCES):
    """Score predicted token rows [B, L] (the decoder's output after BOS: answer tokens, <eos>)
    of a ``LinalgTask`` on its ``LinalgProblems``. ``exact``: teacher-forced exact matches [B]
    (``task.correct(logits, y)``), correct at every tolerance. Cotraining returns one
    LinalgEvaluation per task code."""
    if problems.parts:
        out = {}
        for code, (rows, pred, valid) in task.decode_answers(tokens, problems.codes).items():
            part = problems.parts[code]
            ex = None if exact is None else exact[rows]
            out[code] = evaluate_matrices(part.task, part.inputs_rounded, part.answers_rounded,
                                          pred, valid, ex, tolerances)
        return out
    pred, valid = task.decode_answers(tokens)
    return evaluate_matrices(problems.task, problems.inputs_rounded, problems.answers_rounded,
                             pred, valid, exact, tolerances)
