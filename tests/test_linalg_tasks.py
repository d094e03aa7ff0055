"""The LAWT task family (tasks/linalg*.py): layout, the math of every problem against numpy,
seeding, fixed test sets, rejection, the eigenvalue distributions, bad input and the CLI."""

import math

import numpy as np
import pytest
import torch

from biaslab import rng
from biaslab.cli import main
from biaslab.errors import InputError
from biaslab.tasks import make_task
from biaslab.tasks.linalg import select_rows
from biaslab.tasks.linalg_generators import (DISTRIBUTIONS, coefficients, eigen_sigma,
                                             rebuild_as_lawt, symmetric_with_spectrum, wigner)

SINGLE = ["transpose", "matrix_sum", "matrix_vector", "matrix_product", "eigenvalues",
          "eigenvectors", "invert_matrix", "syminverse", "singularvalues", "singularvectors"]


def expected_answer(name, m):
    """The answer computed independently with numpy (float64), for one input matrix."""
    m = m.numpy()
    r, c2 = m.shape
    if name == "transpose":
        return m.T
    if name == "matrix_sum":
        return m[:, : c2 // 2] + m[:, c2 // 2:]
    if name == "matrix_vector":
        return m[:, :-1].T @ m[:, -1:]
    if name == "matrix_product":
        return m[:, : c2 // 2].T @ m[:, c2 // 2:]
    if name == "eigenvalues":
        return np.sort(np.linalg.eigvalsh(m))[::-1].reshape(-1, 1)
    if name in ("invert_matrix", "syminverse"):
        return np.linalg.inv(m)
    if name == "singularvalues":
        return np.linalg.svd(m, compute_uv=False).reshape(-1, 1)
    raise KeyError(name)


@pytest.mark.parametrize("name", SINGLE)
def test_problems_layout_and_math(name):
    params = {"dim": 3, "encoding": "fp15", "output_encoding": "p1000"}
    if name in ("transpose", "matrix_sum", "matrix_vector", "matrix_product", "singularvalues",
                "singularvectors"):
        params["cols"] = 4  # rectangular
    task = make_task(name, params)
    pr = task.problems({}, rng.key_of(3), 12)
    B = 12
    assert pr.x.shape == (B, task.seq_len) and pr.y.shape == (B, task.decoder_len)
    assert task.n_outputs == task.vocab_size and task.target_kind == "sequence"
    enc, dec = pr.x[:, : task.encoder_len], pr.x[:, task.encoder_len:]
    assert (dec[:, 0] == task.eos_id).all()                       # BOS = <eos>
    assert ((pr.y == task.eos_id).sum(1) == 1).all()              # one <eos> closes the target
    body = pr.y != task.eos_id
    assert torch.equal(torch.where(body[:, :-1], pr.y[:, :-1], dec[:, 1:]), dec[:, 1:])
    # sample() draws the same tokens as problems()
    x, y = task.sample({}, rng.key_of(3), 12)
    assert torch.equal(x, pr.x) and torch.equal(y, pr.y)
    # the answer: against numpy on the raw input; the tokens decode to it within rounding
    (ri, ci), (ro, co) = task.shapes()
    assert pr.inputs.shape == (B, ri, ci) and pr.answers.shape == (B, ro, co)
    for i in range(B):
        if name == "eigenvectors":
            lam, q = pr.answers[i, 0].numpy(), pr.answers[i, 1:].numpy()
            m = pr.inputs[i].numpy()
            assert np.all(np.diff(lam) >= 0)                       # ascending inside eigenvectors
            np.testing.assert_allclose(q.T @ m @ q, np.diag(lam), atol=1e-9)
        elif name == "singularvectors":
            k = min(ri, ci)
            s, u, v = (pr.answers[i, 0].numpy(), pr.answers[i, 1:1 + ri].numpy(),
                       pr.answers[i, 1 + ri:].numpy())
            np.testing.assert_allclose(u @ np.diag(s) @ v.T, pr.inputs[i].numpy(), atol=1e-9)
            assert u.shape == (ri, k) and v.shape == (ci, k)
        else:
            np.testing.assert_allclose(pr.answers[i].numpy(), expected_answer(name, pr.inputs[i]),
                                       rtol=1e-9, atol=1e-9)
    dec_ans, ok = task.decode_answers(pr.y)
    assert ok.all() and torch.equal(dec_ans, pr.answers_rounded)
    err = (pr.answers_rounded - pr.answers).abs() / pr.answers.abs().clamp(min=1e-300)
    assert err.max() <= 0.005 + 1e-12
    assert (pr.inputs_rounded - pr.inputs).abs().max() <= 0.005 * pr.inputs.abs().max()


@pytest.mark.parametrize("name", ["eigenvectors", "invert_matrix", "cotraining"])
def test_sampling_vmaps_over_members_bit_for_bit(name):
    """The trainer samples inside vmap over a stack's member keys: each member must get exactly
    the batch it gets alone; decoding vmaps too."""
    task = make_task(name, {"dim": 3, "encoding": "p10", "output_encoding": "fp15",
                            "distribution": "laplace"})
    keys = torch.stack([rng.key_of(s) for s in range(3)])
    x, y = torch.func.vmap(lambda k: task.sample({}, k, 6), randomness="different")(keys)
    for i in range(3):
        xi, yi = task.sample({}, keys[i], 6)
        assert torch.equal(x[i], xi) and torch.equal(y[i], yi)
    if name != "cotraining":
        mats, ok = torch.func.vmap(task.decode_answers)(y)
        assert ok.all() and torch.equal(mats[1], task.decode_answers(y[1])[0])


def test_symmetry_trace_and_eigenvalue_order():
    task = make_task("eigenvalues", {"dim": 5})
    pr = task.problems({}, rng.key_of(0), 64)
    m = pr.inputs
    assert torch.equal(m, m.transpose(-1, -2))
    lam = pr.answers[..., 0]
    assert (lam[:, :-1] >= lam[:, 1:]).all()                      # descending
    torch.testing.assert_close(lam.sum(1), torch.diagonal(m, dim1=-2, dim2=-1).sum(-1))


def test_seeded_and_fixed_test_set():
    task = make_task("eigenvalues", {"dim": 4, "encoding": "b1999"})
    a = task.sample({}, rng.key_of(5), 8)
    b = task.sample({}, rng.key_of(5), 8)
    c = task.sample({}, rng.key_of(6), 8)
    t = task.sample({}, rng.key_of(5), 8, "test")
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0]) and not torch.equal(a[0], t[0])
    s1, s2, s3 = task.test_set(7, 32), task.test_set(7, 32), task.test_set(8, 32)
    assert torch.equal(s1.x, s2.x) and torch.equal(s1.inputs, s2.inputs)
    assert not torch.equal(s1.inputs, s3.inputs)
    assert set(s1.tensors()) >= {"x", "y", "inputs", "answers", "inputs_rounded", "answers_rounded"}


def test_rejection_keeps_only_good_rows():
    keep = torch.tensor([False, True, False, True, True, False])
    assert select_rows(keep, 3).tolist() == [1, 3, 4]
    assert select_rows(keep, 5).tolist() == [1, 3, 4, 1, 3]      # cycles when too few are good
    # inversion residual rule
    task = make_task("invert_matrix", {"dim": 5, "encoding": "fp15", "output_encoding": "p1000"})
    pr = task.problems({}, rng.key_of(1), 256)
    eye = torch.eye(5, dtype=torch.float64)
    assert (pr.inputs @ pr.answers - eye).abs().amax((-1, -2)).max() <= 1e-10
    # encoder overflow: with A = 2e4 some 3x3 products exceed FP15's 1e9 and are dropped
    big = make_task("matrix_product", {"dim": 3, "encoding": "fp15", "coeff_bound": 3e4})
    raw = coefficients(rng.key_of(0), (512, 3, 6), 3e4, False)
    prod = raw[..., :3].transpose(-1, -2) @ raw[..., 3:]
    assert (prod.abs().amax((-1, -2)) > 1e9).any()                 # the rule has work to do
    pr = big.problems({}, rng.key_of(0), 256)
    assert pr.answers.abs().max() < 9.995e8 and (pr.y != big.vocab.index["NaN"]).all()


def test_ood_rebuild_is_lawts_vec_T_diag_vec():
    """LAWT's generators.py: ``val, vec = np.linalg.eigh(matrix)``, new eigenvalues, then
    ``vec.T @ np.diag(val) @ vec``. On fixed eigenvectors, and end to end from the same W."""
    vec = np.linalg.eigh(np.array([[2.0, 1.0, 0.5], [1.0, -1.0, 0.3], [0.5, 0.3, 4.0]]))[1]
    val = np.array([-3.0, 1.0, 7.0])
    ref = vec.T @ np.diag(val) @ vec
    ours = rebuild_as_lawt(torch.tensor(vec), torch.tensor(val)).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert not np.allclose(vec @ np.diag(val) @ vec.T, ref, atol=1e-3)  # the old form differs
    key, n, A = rng.key_of(5), 5, 10.0
    w = wigner(rng.derive(key, 21), 64, n, A, False).numpy()
    lam, vec = np.linalg.eigh(w)
    big = np.take_along_axis(vec, np.abs(vec).argmax(1)[:, None, :], 1)  # our sign convention
    vec = vec * np.sign(big)
    ref = vec.transpose(0, 2, 1) @ (np.abs(lam)[..., None] * vec)
    np.testing.assert_allclose(symmetric_with_spectrum(key, 64, n, A, False, "positive").numpy(),
                               ref, atol=1e-9)
    # the review's numpy measurement (200,000 matrices): positive spectrum, diagonal variance
    # 11.60 as LAWT builds it vs 8.00 with V diag V^T
    m = symmetric_with_spectrum(rng.key_of(6), 20000, n, A, False, "positive")
    diag_var = torch.diagonal(m, dim1=-2, dim2=-1).var(0).mean().item()
    assert abs(diag_var - 11.60) < 0.6, diag_var


@pytest.mark.parametrize("dist", DISTRIBUTIONS)
def test_eigenvalue_distributions(dist):
    n, A, B = 5, 10.0, 20000
    m = symmetric_with_spectrum(rng.key_of(11), B, n, A, False, dist)
    assert torch.allclose(m, m.transpose(-1, -2), atol=0, rtol=0)
    lam = torch.linalg.eigvalsh(m)
    torch.testing.assert_close(lam.sum(-1), torch.diagonal(m, dim1=-2, dim2=-1).sum(-1))
    rms = lam.pow(2).mean().sqrt().item()
    sigma = eigen_sigma(n, A)
    assert abs(sigma - 12.91) < 0.01
    if dist == "marcenko":
        assert lam.min() > -1e-9                                   # M1^T M1 is PSD
    else:
        assert abs(rms / sigma - 1) < 0.02, (dist, rms)
    if dist in ("positive", "positive2"):
        assert lam.min() > -1e-9
    if dist == "uniform":
        assert lam.abs().max() <= math.sqrt(3) * sigma + 1e-9


def test_gaussian_coefficients_have_the_uniform_variance():
    u = coefficients(rng.key_of(2), (200000,), 10.0, False)
    g = coefficients(rng.key_of(2), (200000,), 10.0, True)
    assert u.abs().max() <= 10 and g.abs().max() > 10               # the flag really switches
    assert abs(u.var().item() / (100 / 3) - 1) < 0.02 and abs(g.var().item() / (100 / 3) - 1) < 0.02
    task = make_task("eigenvalues", {"coefficients": "gaussian", "distribution": "laplace"})
    assert task.problems({}, rng.key_of(0), 4).inputs.shape == (4, 5, 5)


def test_test_distribution_differs_from_train():
    task = make_task("eigenvalues", {"dim": 5, "distribution": "positive",
                                     "test_distribution": "gaussian"})
    tr = task.problems({}, rng.key_of(0), 256, "train").answers
    te = task.test_set(0, 256).answers
    assert tr.min() > -1e-9 and te.min() < 0


def test_cotraining():
    task = make_task("cotraining", {"dim": 3, "encoding": "fp15", "output_encoding": "p1000",
                                    "tasks": "TEI"})
    pr = task.problems({}, rng.key_of(4), 60)
    assert pr.x.shape == (60, task.seq_len) and pr.y.shape == (60, task.decoder_len)
    codes = [task.vocab.words[i] for i in pr.x[:, 0].tolist()]
    assert set(codes) == {"T", "E", "I"}
    assert all(task.vocab.words[i] == c for i, c in zip(pr.y[:, 0].tolist(), codes))
    decoded = task.decode_answers(pr.y, pr.codes)
    for code, (rows, mats, valid) in decoded.items():
        part = pr.parts[code]
        assert torch.equal(rows, part.rows) and valid.all()
        assert torch.equal(mats, part.answers_rounded)
    wrong = pr.y.clone()
    wrong[:, 0] = task.vocab.index["A"]
    assert not any(v.any() for _, _, v in task.decode_answers(wrong, pr.codes).values())
    assert "task" in task.describe_example(pr.x[0], pr.y[0])


def test_cotraining_sequences_longer_than_max_len_are_refused():
    """Every task alone fits in 20 tokens at 3x3 FP15 (the longest input is 20), but cotraining
    puts the task code in front: 21 tokens, refused at construction, not at the first batch."""
    assert max(make_task(name, {"dim": 3, "encoding": "fp15"}).encoder_len
               for name in ("transpose", "matrix_sum", "matrix_product")) <= 20
    with pytest.raises(InputError, match="max_len = 20"):
        make_task("cotraining", {"dim": 3, "encoding": "fp15", "max_len": 20})
    assert make_task("cotraining", {"dim": 3, "encoding": "fp15", "max_len": 21}).encoder_len == 21


def test_correct_is_exact_match_ignoring_pad():
    task = make_task("transpose", {"dim": 2, "encoding": "p10"})
    _, y = task.sample({}, rng.key_of(0), 4)
    logits = torch.nn.functional.one_hot(y, task.vocab_size).float()
    logits[y == task.pad_id] = 0.0  # whatever the model says at pad positions
    assert task.correct(logits, y).all()
    logits[0, 2] = torch.roll(logits[0, 2], 1)
    assert task.correct(logits, y).tolist() == [False, True, True, True]


@pytest.mark.parametrize("params,field", [
    ({"encoding": "p7"}, "encoding"), ({"dim": 0}, "dim"), ({"dim": 3, "cols": 4}, "cols"),
    ({"dim": 30, "encoding": "p10"}, "dim"), ({"distribution": "cauchy"}, "distribution"),
    ({"dim": 101, "encoding": "fp15", "max_len": 20000}, "dim")])
def test_bad_input(params, field):
    with pytest.raises(InputError, match=field):
        make_task("eigenvalues", params)
    with pytest.raises(InputError, match="tasks"):
        make_task("cotraining", {"tasks": "TX"})


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_sample_shows_tokens_and_matrices(capsys):
    code, out, err = run_cli(capsys, "sample", "eigenvalues", "dim=5", "encoding=fp15", "--count", "3")
    assert code == 0, err
    assert out.count("input:  V5 V5 N") == 3 and out.count("target: V5 V1 N") == 3
    assert len(out.strip().splitlines()) == 3 * 12 + 2      # 1+5 input, 1+5 target lines, blanks


@pytest.mark.parametrize("args", [
    ["sample", "eigenvalue"], ["sample", "eigenvalues", "encoding=p7"],
    ["sample", "eigenvalues", "dim=0"], ["sample", "transpose", "dim=30", "encoding=p10"]])
def test_cli_bad_input_is_one_line_exit_2(capsys, args):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and out == ""


def test_input_noise_perturbs_inputs_not_answers():
    clean = make_task("transpose", {"dim": 4})
    noisy = make_task("transpose", {"dim": 4, "input_noise": 0.1})
    a = clean.problems({}, rng.key_of(0), 2000)
    b = noisy.problems({}, rng.key_of(0), 2000)
    torch.testing.assert_close(b.answers, a.answers)                 # from the clean matrix
    d = b.inputs - a.inputs
    std = 10 * 0.1 / math.sqrt(3)                                    # s times the coefficient std
    assert abs(d.std().item() / std - 1) < 0.03 and abs(d.mean().item()) < 0.01
