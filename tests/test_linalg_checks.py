"""LAWT evaluation (measure/linalg_checks.py): every task's check on exact and perturbed answers,
against independent numpy computations, with the reference's quirks and malformed outputs."""

import numpy as np
import pytest
import torch

from biaslab.measure.linalg_checks import (TOLERANCES, eigenvector_error, evaluate,
                                           evaluate_matrices, inversion_residual, relative_l1,
                                           singularvector_error)
from biaslab.tasks import make_task

SINGLE = ["transpose", "matrix_sum", "matrix_vector", "matrix_product", "eigenvalues",
          "eigenvectors", "invert_matrix", "syminverse", "singularvalues", "singularvectors"]


def perturbed(problem, answers, factor):
    """An answer whose task error is known: relative L1 = factor - 1 (elementwise tasks and the
    inverse: M (f M^-1) - I = (f - 1) I), or (f - 1)/f when the stated spectrum is scaled."""
    p = answers.clone()
    if problem in ("eigenvectors", "singularvectors"):
        p[:, 0] *= factor
        return p, (factor - 1) / factor
    return p * factor, factor - 1


@pytest.mark.parametrize("problem", SINGLE)
@pytest.mark.parametrize("factor", [1.03, 1.007])
def test_exact_passes_perturbed_fails_at_the_right_tolerance(problem, factor):
    task = make_task(problem, {"dim": 4, "encoding": "fp15"})
    pr = task.test_set(1, 64)
    ones = torch.ones(64, dtype=torch.bool)
    ev = evaluate_matrices(problem, pr.inputs, pr.answers, pr.answers, ones)
    assert ev.correct.all() and ev.error.max() < 1e-9
    pred, err = perturbed(problem, pr.answers, factor)
    ev = evaluate_matrices(problem, pr.inputs, pr.answers, pred, ones)
    torch.testing.assert_close(ev.error, torch.full_like(ev.error, err), rtol=1e-6, atol=1e-9)
    for k, tol in enumerate(TOLERANCES):
        assert bool(ev.correct[k].all()) == (err < tol), (tol, err)
    assert ev.summary()["malformed"] == 0


@pytest.mark.parametrize("problem", SINGLE)
def test_target_tokens_score_as_the_reference_would(problem):
    """The target tokens themselves: zero error for the elementwise tasks; the decomposition tasks
    stay within 1% (3-digit rounding of M, Q, lambda); the inverse does not always (its residual
    grows with cond(M) -- the 'rounding floor' of inversion)."""
    task = make_task(problem, {"dim": 4, "encoding": "fp15", "output_encoding": "p1000"})
    pr = task.test_set(2, 256)
    ev = evaluate(task, pr, pr.y)
    assert ev.valid.all()
    if problem in ("eigenvectors", "singularvectors"):
        assert ev.correct[TOLERANCES.index(0.01)].all()
    elif problem in ("invert_matrix", "syminverse"):
        assert ev.inverse_error.max() < 0.005
        cond = torch.linalg.cond(pr.inputs_rounded)
        assert (ev.error[cond < 10] < 0.05).all()
    else:
        assert (ev.error == 0).all() and ev.correct.all()


def test_checks_match_numpy_loops():
    g = np.random.default_rng(0)
    m = g.uniform(-10, 10, (6, 4, 4))
    m = np.tril(m) + np.tril(m, -1).transpose(0, 2, 1)
    pred = g.normal(size=(6, 5, 4))
    r = g.uniform(-10, 10, (6, 3, 5))
    sv = g.normal(size=(6, 1 + 3 + 5, 3))
    for i in range(6):
        lam, q = pred[i, 0], pred[i, 1:]
        want = np.abs(q.T @ m[i] @ q - np.diag(lam)).sum() / np.abs(lam).sum()
        assert eigenvector_error(torch.tensor(m[i:i + 1]), torch.tensor(pred[i:i + 1])).item() == pytest.approx(want)
        p = pred[i, 1:]
        want = np.abs(m[i] @ p - np.eye(4)).sum() / 4
        assert inversion_residual(torch.tensor(m[i:i + 1]), torch.tensor(p[None])).item() == pytest.approx(want)
        s, u, v = sv[i, 0], sv[i, 1:4], sv[i, 4:]
        want = np.abs(u.T @ r[i] @ v - np.diag(s)).sum() / np.abs(s).sum()
        assert singularvector_error(torch.tensor(r[i:i + 1]), torch.tensor(sv[i:i + 1])).item() == pytest.approx(want)


def test_zero_target_and_malformed_and_exact():
    z = torch.zeros(2, 2, 1, dtype=torch.float64)
    assert relative_l1(z, z).tolist() == [0.0, 0.0]
    assert relative_l1(z + 1, z).isinf().all()
    task = make_task("eigenvalues", {"dim": 3, "encoding": "p1000"})
    pr = task.test_set(0, 8)
    garbage = torch.full_like(pr.y, task.vocab.index["V7"])
    ev = evaluate(task, pr, garbage)
    s = ev.summary()
    assert s["malformed"] == 1.0 and s["acc@0.05"] == 0.0 and s["wrong@0.05"] == 0.0
    # teacher-forced exact match counts as correct at every tolerance (reference quirk)
    exact = torch.tensor([True] + [False] * 7)
    ev = evaluate(task, pr, garbage, exact=exact)
    assert ev.correct[:, 0].all() and not ev.correct[:, 1:].any()


def test_eigenvalue_order_quirk():
    """Descending in the eigenvalues task: the same numbers ascending are wrong."""
    task = make_task("eigenvalues", {"dim": 5})
    pr = task.test_set(0, 32)
    ones = torch.ones(32, dtype=torch.bool)
    flipped = pr.answers.flip(-2)
    ev = evaluate_matrices("eigenvalues", pr.inputs, pr.answers, flipped, ones)
    assert not ev.correct[0].any()
    # inside the eigenvector task row 0 is ascending and pairs with Q's columns
    vt = make_task("eigenvectors", {"dim": 5}).test_set(0, 32)
    assert (vt.answers[:, 0, 1:] >= vt.answers[:, 0, :-1]).all()


def test_cotraining_evaluation_per_code():
    task = make_task("cotraining", {"dim": 3, "encoding": "fp15", "tasks": "TAI"})
    pr = task.test_set(0, 48)
    out = evaluate(task, pr, pr.y)
    assert set(out) == {"T", "A", "I"}
    assert out["T"].correct.all() and out["A"].correct.all()
    assert sum(int(e.error.numel()) for e in out.values()) == 48


def test_baselines_rounding_floor_and_mean_spectrum():
    from biaslab.measure.linalg_baselines import (condition_stats, mean_spectrum_baseline,
                                                  rounding_floor)

    floor = rounding_floor(make_task("eigenvalues", {"dim": 5, "encoding": "fp15"}), size=500)
    assert floor["acc@0.005"] == 1.0 and 0 < floor["rounding_l1_max"] < 0.005
    inv = rounding_floor(make_task("invert_matrix", {"dim": 5, "encoding": "fp15",
                                                     "output_encoding": "p1000"}), size=500)
    assert 0.8 < inv["acc@0.05"] < 1.0 and inv["inverse_close@0.005"] == 1.0
    base = mean_spectrum_baseline(make_task("eigenvalues", {"dim": 5}), train_size=2000, size=500)
    assert base["acc@0.05"] < 0.01 and base["acc@0.25"] > 0.1
    c = condition_stats(size=2000)
    assert 1 < c["median"] < c["p90"] < c["p99"]
