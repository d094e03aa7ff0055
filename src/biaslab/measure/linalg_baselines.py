"""Reference points for the LAWT accuracies, computed from the generators alone (no model).

  eigenvalue_rms         RMS of the eigenvalues under one distribution (sigma = sqrt(n) A/sqrt 3
                         for the six matched ones)
  rounding_floor         how a perfect model scores: the target tokens themselves (3 significant
                         digits) judged by the task's check. For the elementwise tasks the floor is
                         zero error; for inversion the residual ||M P - I|| of a rounded inverse
                         against a rounded M grows with cond(M), so even the exact answer fails
                         the 5% rule on some inputs.
  mean_spectrum_baseline predict the mean sorted training spectrum for every test matrix
  condition_stats        quantiles of cond(M) for the inversion inputs

``python -m biaslab.measure.linalg_baselines`` prints all of them for the sheet's 5x5 settings.
"""

from __future__ import annotations

import torch

from .. import rng
from .linalg_checks import TOLERANCES, evaluate, evaluate_matrices, relative_l1


def eigenvalue_rms(distribution: str, n: int = 5, bound: float = 10.0, size: int = 100_000,
                   seed: int = 0) -> float:
    from ..tasks.linalg_generators import symmetric_with_spectrum

    m = symmetric_with_spectrum(rng.key_of(seed), size, n, bound, False, distribution)
    return float(torch.linalg.eigvalsh(m).pow(2).mean().sqrt())


def rounding_floor(task, size: int = 10_000, seed: int = 0) -> dict[str, float]:
    """Accuracy of the exact answers as the model would have to write them, and the relative L1
    that rounding alone costs (mean, max)."""
    pr = task.test_set(seed, size)
    ev = evaluate(task, pr, pr.y)
    if isinstance(ev, dict):  # cotraining: one floor per code
        return {f"{c}.{k}": v for c, e in ev.items() for k, v in e.summary().items()}
    cost = relative_l1(pr.answers_rounded, pr.answers)
    return {**ev.summary(), "rounding_l1_mean": float(cost.mean()),
            "rounding_l1_max": float(cost.max())}


def mean_spectrum_baseline(task, train_size: int = 100_000, size: int = 10_000,
                           seed: int = 0) -> dict[str, float]:
    """Eigenvalues task: answer every test matrix with the mean (sorted) training spectrum."""
    train = task.problems({}, rng.key_of(seed + 1), train_size, "train", rounded=False)
    guess = train.answers.mean(0)
    pr = task.test_set(seed, size)
    pred = guess.expand_as(pr.answers_rounded)
    ones = torch.ones(size, dtype=torch.bool)
    return evaluate_matrices(task.problem, pr.inputs_rounded, pr.answers_rounded, pred, ones,
                             tolerances=TOLERANCES + (0.25,)).summary()


def condition_stats(n: int = 5, bound: float = 10.0, size: int = 100_000, seed: int = 0):
    from ..tasks.linalg_generators import coefficients
    from .anatomy import condition_number

    c = condition_number(coefficients(rng.key_of(seed), (size, n, n), bound, False))
    q = torch.quantile(c[torch.isfinite(c)], torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64))
    return {"median": float(q[0]), "p90": float(q[1]), "p99": float(q[2]),
            "frac_over_100": float((c > 100).double().mean())}


def main() -> None:  # pragma: no cover - prints the numbers recorded in docs/results.md
    from ..tasks import make_task
    from ..tasks.linalg_generators import DISTRIBUTIONS, eigen_sigma

    print(f"sigma(5, 10) = {eigen_sigma(5, 10.0):.3f}")
    for d in DISTRIBUTIONS:
        print(f"rms[{d}] = {eigenvalue_rms(d):.3f}")
    print("cond(M) 5x5:", condition_stats())
    for name, params in [("transpose", {"dim": 10, "encoding": "p1000"}),
                         ("matrix_sum", {"dim": 10, "encoding": "b1999"}),
                         ("matrix_product", {"dim": 5, "encoding": "p1000"}),
                         ("eigenvalues", {"dim": 5, "encoding": "fp15"}),
                         ("eigenvectors", {"dim": 5, "encoding": "fp15", "output_encoding": "p1000"}),
                         ("invert_matrix", {"dim": 5, "encoding": "fp15", "output_encoding": "p1000"}),
                         ("syminverse", {"dim": 5, "encoding": "fp15", "output_encoding": "p1000"}),
                         ("singularvectors", {"dim": 4, "encoding": "fp15", "output_encoding": "p1000"})]:
        floor = rounding_floor(make_task(name, params))
        print(f"floor[{name}]", {k: round(v, 5) for k, v in floor.items()})
    base = mean_spectrum_baseline(make_task("eigenvalues", {"dim": 5, "encoding": "fp15"}))
    print("mean spectrum baseline", {k: round(v, 5) for k, v in base.items()})


if __name__ == "__main__":  # pragma: no cover
    main()
