"""The Charton experiments: claim rules on made-up tables, a tiny run end to end, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biaslab.registry import CLAIMS, load_all

load_all()


def claim(name):
    return CLAIMS.get(name).check


def acc_row(task, dim, acc, paper_scale=False, seed=0, enc="p1000"):
    return {"task": task, "task_params.dim": dim, "task_params.encoding": enc,
            "task_params.output_encoding": enc, "seed": seed, "acc_5": acc,
            "paper_scale": paper_scale}


# -- lawt-accuracy ---------------------------------------------------------------------------
def test_easy_tasks_claim_pass_fail_inconclusive():
    check = claim("lawt-easy-tasks-learned")
    good = [acc_row(t, 3, 0.97) for t in ("transpose", "matrix_sum", "matrix_vector")]
    assert check(good).status == "PASS"
    low_small = good[:2] + [acc_row("matrix_vector", 3, 0.4)]
    assert check(low_small).status == "INCONCLUSIVE"  # reduced scale: not a test of the paper
    low_paper = good[:2] + [acc_row("matrix_vector", 10, 0.4, paper_scale=True)]
    assert check(low_paper).status == "FAIL"
    assert check([acc_row("eigenvalues", 5, 0.99)]).status == "INCONCLUSIVE"  # no easy-task run


def test_eigenvalue_claim_reads_only_5x5():
    check = claim("lawt-eigenvalues-5x5")
    assert check([acc_row("eigenvalues", 5, 0.93)]).status == "PASS"
    assert check([acc_row("eigenvalues", 3, 0.99)]).status == "INCONCLUSIVE"
    assert check([acc_row("eigenvalues", 5, 0.5)]).status == "INCONCLUSIVE"
    v = check([acc_row("eigenvalues", 5, 0.5, paper_scale=True)])
    assert v.status == "FAIL" and "50.0%" in v.summary


# -- failure-anatomy -------------------------------------------------------------------------
def anatomy_row(acc=0.9, ev=0.999, nm=0.995, p98=1.03, p2=1.04, failures=400, successes=3600):
    return {"seed": 0, "task_params.dim": 5, "acc_5": acc, "failures_5": failures,
            "valid_failures_5": failures, "fail5.eigenvalues@2": ev, "fail5.norms@5": nm,
            "sep5.cond_pred_q.success_p98": p98, "sep5.cond_pred_q.failure_p2": p2,
            "sep5.cond_pred_q.auroc": 0.99, "sep5.cond_pred_q.n_success": successes,
            "sep5.cond_pred_q.n_failure": failures}


def test_roughly_right_claim():
    check = claim("wimtd-failures-roughly-right")
    assert check([anatomy_row()]).status == "PASS"
    assert check([anatomy_row(ev=0.95)]).status == "FAIL"
    assert check([anatomy_row(nm=0.9)]).status == "FAIL"
    assert check([anatomy_row(acc=0.3, ev=0.2)]).status == "INCONCLUSIVE"  # not near misses
    assert check([anatomy_row(failures=10)]).status == "INCONCLUSIVE"
    assert check([]).status == "INCONCLUSIVE"


def test_cond_separation_claim():
    check = claim("wimtd-cond-separates")
    assert check([anatomy_row()]).status == "PASS"
    assert check([anatomy_row(p98=1.05, p2=1.04)]).status == "FAIL"
    assert check([anatomy_row(successes=5)]).status == "INCONCLUSIVE"
    assert check([anatomy_row(acc=0.2)]).status == "INCONCLUSIVE"


# -- ood-eigen-distributions -----------------------------------------------------------------
def ood_rows(ls, sl, ll=0.95, ss=0.95, n=1000):
    return [{"task_params.distribution": "laplace", "test_size": n, "laplace.acc_5": ll,
             "semicircle.acc_5": ls},
            {"task_params.distribution": "semicircle", "test_size": n, "laplace.acc_5": sl,
             "semicircle.acc_5": ss}]


def test_ood_claim():
    check = claim("ood-laplace-to-wigner")
    assert check(ood_rows(0.9, 0.3)).status == "PASS"
    assert check(ood_rows(0.4, 0.6)).status == "FAIL"
    assert check(ood_rows(0.5, 0.45)).status == "INCONCLUSIVE"  # gap below the margin
    assert check(ood_rows(0.9, 0.1, ss=0.2)).status == "INCONCLUSIVE"  # not learned
    assert check(ood_rows(0.9, 0.3)[:1]).status == "INCONCLUSIVE"


def test_ood_matrix_and_two_proportion_z():
    from biaslab.experiments.charton.ood_eigen_distributions import ood_matrix, two_proportion_z

    m, trains, tests = ood_matrix(ood_rows(0.9, 0.3))
    assert trains == ["semicircle", "laplace"] and tests == ["semicircle", "laplace"]
    assert np.allclose(m, [[0.95, 0.3], [0.9, 0.95]])
    # z of 0.6 vs 0.5 with 1000 each: pooled 0.55, se = sqrt(.55*.45*2/1000)
    assert two_proportion_z(0.6, 1000, 0.5, 1000) == pytest.approx(0.1 / np.sqrt(0.55 * 0.45 * 0.002))


# -- a tiny run end to end -------------------------------------------------------------------
def test_tiny_lawt_accuracy_run_and_dissection():
    from biaslab.experiments import get_experiment
    from biaslab.experiments.charton.failure_anatomy import dissect
    from biaslab.experiments.charton.common import measure_group

    torch.set_num_threads(1)
    exp = get_experiment("failure-anatomy")
    spec = exp.Spec(**{"entries": [{"task": "eigenvectors", "dim": 2}], "seeds": [0, 1],
                       "model": {"d_model": 16, "n_heads": 2, "n_enc_layers": 1, "n_dec_layers": 1},
                       "test_size": 24, "decode_batch": 12,
                       "train": {"steps": 3, "batch": 8, "loss": "ce_seq", "converge": "none",
                                 "eval_every": 3, "eval_batch": 8}})
    plans = exp.plan(spec)
    assert len(plans) == 2 and plans[0].group == plans[1].group
    outs = exp.run_group(spec, plans, "cpu")
    m = outs[1].metrics
    for key in ("acc_5", "acc_0.5", "exact_rate", "valid_rate", "malformed_rate", "encoder_len",
                "failures_5", "sep5.cond_pred_q.auroc"):
        assert key in m
    assert 0 <= m["acc_0.5"] <= m["acc_5"] <= 1
    arrays = outs[1].arrays
    assert arrays["test_x"].shape[0] == 24 and arrays["tokens"].shape == (24, m["decoder_len"])
    # the test set is fixed: the same for both members and for a second draw
    assert np.array_equal(outs[0].arrays["test_x"], arrays["test_x"])
    # exact answers pass the dissection: every property holds, nothing fails
    stack, task, result, tests = measure_group(spec, plans[:1], "cpu")
    test, evs = tests[""]
    assert np.array_equal(test.x.numpy(), arrays["test_x"])
    ev = evs[0]
    ev.pred, ev.valid = test.answers_rounded.clone(), torch.ones_like(ev.valid)
    ev.error, ev.exact = torch.zeros_like(ev.error), torch.ones_like(ev.exact)
    metrics, _ = dissect(test, ev)
    assert metrics["failures_5"] == 0 and metrics["all.eigenvalues@0.5"] == 1.0


# -- the reference's decoder in every preset --------------------------------------------------
@pytest.mark.parametrize("name", ["lawt-accuracy", "lawt-encodings", "failure-anatomy",
                                  "ood-eigen-distributions"])
def test_presets_use_the_reference_cross_attention(name):
    """LAWT's decoder queries cross-attention with the layer input (issue 24 item 1)."""
    from biaslab.experiments import get_experiment
    from biaslab.spec import presets_of

    exp = get_experiment(name)
    for preset, values in presets_of(name).items():
        for plan in exp.plan(exp.Spec(**values)):
            assert plan.config["model"].get("parallel_cross") is True, (preset, plan.config)


# -- bad input ------------------------------------------------------------------------------
@pytest.mark.parametrize("override, field", [
    ("entries=[{task: transpose, dim: 0}]", "entries[0].dim"),
    ("entries=[{task: transpose, dim: 40, input_encoding: p10, output_encoding: p10}]", "entries[0].dim"),
    ("entries=[{task: nosuchtask, dim: 3}]", "entries[0].task"),
    ("entries=[{task: transpose, dim: 3, input_encoding: p7}]", "entries[0].encoding"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, override, field):
    from biaslab.cli import main

    code = main(["run", "lawt-accuracy", "--preset", "cpu", "--store", str(tmp_path / "s.sqlite"),
                 override])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and field in lines[0], err
