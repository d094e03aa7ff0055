"""Failure anatomy (measure/anatomy.py) on constructed eigendecompositions with known properties."""

import itertools
import math

import numpy as np
import pytest
import torch

from biaslab.measure.anatomy import (accuracy_by_bins, adjacent_cosines, auroc, condition_number,
                                     eigen_predictors, eigen_property_errors,
                                     orthogonality_error, property_table, separation,
                                     sign_pattern_ok, smallest_gap)
from biaslab.tasks import make_task


def exact_problems(n=5, batch=16):
    pr = make_task("eigenvectors", {"dim": n}).test_set(0, batch)
    return pr.inputs, pr.answers


def test_perfect_prediction_has_every_property():
    m, ans = exact_problems()
    errs = eigen_property_errors(m, ans, ans)
    for name, e in errs.items():
        assert e.max() < 1e-12, name
    pred = eigen_predictors(m, ans, ans)
    torch.testing.assert_close(pred["cond_pred_q"], torch.ones(16, dtype=torch.float64))
    assert sign_pattern_ok(ans[:, 0], ans[:, 0]).all()


def test_scaled_column_known_cond_and_norm():
    m, ans = exact_problems()
    pred = ans.clone()
    pred[:, 1:, 0] *= 1.1                       # first eigenvector 10% too long
    errs = eigen_property_errors(m, pred, ans)
    torch.testing.assert_close(errs["norms"], torch.full((16,), 0.1, dtype=torch.float64))
    # the columns (eigenvectors) stay orthogonal; the notebook's rows do not: on rows, a norm
    # error shows up as an orthogonality error too
    assert orthogonality_error(pred[:, 1:], "columns").max() < 1e-12
    assert errs["orthogonality"].min() > 1e-3
    assert errs["eigenvalues"].max() == 0
    torch.testing.assert_close(condition_number(pred[:, 1:]), torch.full((16,), 1.1, dtype=torch.float64))


def test_sheared_pair_breaks_orthogonality_by_a_known_cosine():
    m, ans = exact_problems()
    eps = 0.05
    q = ans[:, 1:].clone()
    q1 = q[..., 1] + eps * q[..., 0]
    q[..., 1] = q1 / torch.linalg.vector_norm(q1, dim=-1, keepdim=True)
    cos = adjacent_cosines(q, "columns")
    want = eps / math.sqrt(1 + eps ** 2)
    torch.testing.assert_close(cos[:, 0], torch.full((16,), want, dtype=torch.float64))
    torch.testing.assert_close(orthogonality_error(q, "columns"), torch.full((16,), want, dtype=torch.float64))
    # the same shear on the rows shows on the notebook's row-wise measure
    qt = q.transpose(-1, -2)
    torch.testing.assert_close(orthogonality_error(qt, "rows"), torch.full((16,), want, dtype=torch.float64))
    # cond of [q0, (q1 + eps q0)/norm, ...]: singular values of the 2x2 block [[1, c], [0, s]]
    c, s = want, math.sqrt(1 - want ** 2)
    sv = np.linalg.svd(np.array([[1, c], [0, s]]), compute_uv=False)
    torch.testing.assert_close(condition_number(q), torch.full((16,), sv[0] / sv[1], dtype=torch.float64))


def test_rotation_keeps_orthogonality_but_fails_the_check():
    m, ans = exact_problems()
    pred = ans.clone()
    t = 0.3
    rot = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)
    pred[:, 1:, :2] = pred[:, 1:, :2] @ rot
    errs = eigen_property_errors(m, pred, ans)
    assert errs["orthogonality"].max() < 1e-12 and errs["norms"].max() < 1e-12
    torch.testing.assert_close(condition_number(pred[:, 1:]), torch.ones(16, dtype=torch.float64))
    assert (errs["decomposition"] > 0.01).all()        # wrong eigenvectors: the check fails


def test_trace_signs_gap_and_cond_of_input():
    m, ans = exact_problems()
    pred = ans.clone()
    pred[:, 0, 0] += 1.0
    errs = eigen_property_errors(m, pred, ans)
    torch.testing.assert_close(errs["trace"], 1.0 / ans[:, 0].abs().sum(-1))
    flip = ans[:, 0].clone()
    flip[:, 2] *= -1
    assert not sign_pattern_ok(flip, ans[:, 0]).any()
    lam = torch.tensor([[1.0, 3.0, 3.5, 10.0], [0.0, -2.0, 5.0, 4.0]], dtype=torch.float64)
    assert smallest_gap(lam).tolist() == [0.5, 1.0]
    d = torch.diag_embed(torch.tensor([[1.0, 2.0, 8.0]], dtype=torch.float64))
    assert condition_number(d).item() == pytest.approx(8.0)
    assert condition_number(torch.zeros(1, 2, 2, dtype=torch.float64)).isinf().all()


def test_auroc_against_brute_force_pairs():
    g = torch.Generator().manual_seed(0)
    score = torch.randint(0, 6, (40,), generator=g).double()     # many ties
    pos = torch.rand(40, generator=g) < 0.4
    wins = 0.0
    for i, j in itertools.product(range(40), range(40)):
        if pos[i] and not pos[j]:
            wins += 1.0 if score[i] > score[j] else 0.5 if score[i] == score[j] else 0.0
    assert auroc(score, pos) == pytest.approx(wins / (int(pos.sum()) * int((~pos).sum())))
    assert auroc(torch.arange(4.0), torch.tensor([False, False, True, True])) == 1.0
    assert auroc(torch.arange(4.0), torch.tensor([True, True, False, False])) == 0.0
    assert math.isnan(auroc(torch.arange(3.0), torch.zeros(3, dtype=torch.bool)))


def test_separation_table_matches_numpy():
    score = torch.tensor([1.0, 1.01, 1.02, 1.05, 1.2, 1.5, float("inf")], dtype=torch.float64)
    failed = torch.tensor([False, False, False, True, True, True, True])
    s = separation(score, failed)
    ok = np.array([1.0, 1.01, 1.02])
    bad = np.array([1.05, 1.2, 1.5])
    assert s["n_success"] == 3 and s["n_failure"] == 3               # inf dropped
    assert s["success_p98"] == pytest.approx(np.quantile(ok, 0.98))
    assert s["failure_p2"] == pytest.approx(np.quantile(bad, 0.02))
    assert s["success_max"] == 1.02 and s["failure_min"] == 1.05 and s["auroc"] == 1.0


def test_property_table_and_bins():
    errs = {"a": torch.tensor([0.001, 0.01, 0.03, 0.2])}
    t = property_table(errs, (0.05, 0.005), among=torch.tensor([True, True, True, False]))
    assert t["a"] == {0.05: 1.0, 0.005: pytest.approx(1 / 3)}
    score = torch.arange(20, dtype=torch.float64)
    correct = score < 10
    edges, acc, counts = accuracy_by_bins(score, correct, 4)
    assert counts.tolist() == [5, 5, 5, 5] and acc.tolist() == [1.0, 1.0, 0.0, 0.0]
