"""The Charton experiments: claim rules on made-up tables, a tiny run end to end, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from biaslab.registry import CLAIMS, load_all

load_all()


def claim(name):
    return CLAIMS.get(name).check


def acc_row(task, dim, acc, seed=0, **kw):
    return {"task": task, "task_params.dim": dim, "task_params.encoding": "p10",
            "task_params.output_encoding": "p10", "seed": seed, "acc_5": acc, **kw}


# -- rules beyond the made-up tables of tests/claim_tables/charton.py -------------------------
def test_a_miss_that_cannot_decide_is_not_testable():
    """Below 90% in a cell that neither is at paper scale nor was sized by the pilot: 'not
    testable at this scale', never FAIL; the same miss in a pilot-sized cell FAILs."""
    check = claim("lawt-easy-tasks-learned")
    rows = [acc_row("matrix_sum", 2, a, s) for s, a in enumerate([0.3, 0.2, 0.25])]
    v = check(rows)
    assert v.status == "INCONCLUSIVE" and v.not_testable
    assert check([{**r, "decides": True} for r in rows]).status == "FAIL"
    assert check([{**r, "paper_scale": True} for r in rows]).status == "FAIL"
    assert claim("lawt-eigenvalues-5x5")([acc_row("eigenvalues", 3, 0.99, s, decides=True)
                                          for s in range(3)]).not_testable  # reads 5x5 only


def test_ood_matrix():
    from biaslab.experiments.charton.ood_eigen_distributions import ood_matrix

    rows = [{"task_params.distribution": "laplace", "laplace.acc_5": 0.95, "semicircle.acc_5": 0.9},
            {"task_params.distribution": "semicircle", "laplace.acc_5": 0.3, "semicircle.acc_5": 0.95}]
    m, trains, tests = ood_matrix(rows)
    assert trains == ["semicircle", "laplace"] and tests == ["semicircle", "laplace"]
    assert np.allclose(m, [[0.95, 0.3], [0.9, 0.95]])


# -- a tiny run end to end -------------------------------------------------------------------
def test_tiny_lawt_accuracy_run_and_dissection():
    from biaslab.experiments import get_experiment
    from biaslab.experiments.charton.failure_anatomy import dissect
    from biaslab.experiments.charton.protocol import measure_group

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


def test_best_checkpoint_and_patience_as_lawt():
    """With a validation set every member ends at its best validation checkpoint (its accuracy
    there is the recorded best); a patience of 1 stops members after 2 evaluations without gain."""
    from biaslab.experiments import get_experiment
    from biaslab.experiments.charton.protocol import evaluate_stack, train_group

    torch.set_num_threads(1)
    exp = get_experiment("lawt-accuracy")
    spec = exp.Spec(**{"entries": [{"task": "transpose", "dim": 2, "input_encoding": "p10",
                                    "output_encoding": "p10"}], "seeds": [0, 1],
                       "model": {"d_model": 16, "n_heads": 2, "n_enc_layers": 1, "n_dec_layers": 1},
                       "lr": 3e-3, "valid_size": 16, "patience": 1, "decode_batch": 16,
                       "train": {"steps": 40, "batch": 16, "loss": "ce_seq", "converge": "none",
                                 "eval_every": 4, "eval_batch": 8}})
    stack, task, result = train_group(exp.plan(spec), "cpu")
    best = result.best
    again = evaluate_stack(stack, task, best.valid, [0.05], 1, 16)
    for i in range(2):
        assert float(again[i].correct[0].float().mean()) == pytest.approx(float(best.best[i]))
        assert 0 < best.best_step[i] <= result.steps_run
    # frozen (patience spent) exactly when two evaluations in a row brought no gain
    assert [bool(w > 1) for w in best.waited] == [bool(c) for c in result.converged]


def test_conditioning_metrics_on_failures_placed_by_hand():
    """Failures exactly the worst-conditioned tenth: every one in the top decile, accuracy 1 in
    the nine lower deciles and 0 in the top one, a negative Spearman."""
    from types import SimpleNamespace

    from biaslab.experiments.charton.inversion_conditioning import conditioning_metrics
    from biaslab.measure.anatomy import condition_number
    from biaslab.registry import TASKS

    test = TASKS.get("invert_matrix").from_dict({"dim": 3}).test_set(0, 200)
    cond = condition_number(test.inputs_rounded)
    bad = cond > torch.quantile(cond, 0.9)
    ev = SimpleNamespace(exact=torch.zeros(200, dtype=torch.bool), valid=torch.ones(200, dtype=torch.bool),
                         error=torch.where(bad, 1.0, 0.0).double())
    m, arrays = conditioning_metrics(test, ev)
    assert m["fail5.top_decile_share"] == 1.0 and m["failures_5"] == float(bad.sum())
    assert [m[f"cond_decile{k}.acc_5"] for k in range(10)] == [1.0] * 9 + [0.0]
    assert m["cond_acc_spearman"] < -0.5 and arrays["cond_input"].shape == (200,)


# -- the reference's decoder in every preset --------------------------------------------------
@pytest.mark.parametrize("name", ["lawt-accuracy", "lawt-cotraining", "lawt-encodings",
                                  "failure-anatomy", "ood-eigen-distributions",
                                  "inversion-conditioning"])
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
