"""Anchor experiments (Zhang et al.): plans, a tiny end-to-end run of each, claims on hand-made tables."""

import math

import pytest

from biaslab.experiments.stats import spearman
from biaslab.experiments.zhang_anchor.anchor_mechanisms import AnchorMechanisms
from biaslab.experiments.zhang_anchor.complexity_control import ComplexityControl
from biaslab.experiments.zhang_anchor.init_phase_diagram import InitPhaseDiagram, phase_cells
from biaslab.execute import run_experiment
from biaslab.experiments import get_experiment
from biaslab.registry import CLAIMS, load_all
from biaslab.spec import resolve
from biaslab.store import Artifacts, Store

load_all()

TINY = {"model": {"d_model": 16, "d_ff": 32, "d_head": 8}, "measure_batch": 128,
        "train": {"steps": 30, "batch": 32, "eval_every": 15, "warmup_steps": 5, "loss": "ce",
                  "schedule": "warmup_cosine", "converge": "none", "eval_batch": 64}}


def spec_of(exp, preset=None, **over):
    return resolve(exp.Spec, exp.name, preset, None, {**TINY, **over})


# -- plans -------------------------------------------------------------------------------------------
def test_phase_plan_sizes_and_groups():
    exp = InitPhaseDiagram()
    plans = exp.plan(spec_of(exp, gammas=[0.3, 0.5, 0.8], depths=[2, 4], seeds=[1, 2], lrs=[1e-3, 2e-3]))
    assert len(plans) == 3 * 2 * 2 * 2
    assert {p.group for p in plans} == {("depth=2",), ("depth=4",)}
    assert all(p.config["model"]["n_layers"] == p.config["depth"] for p in plans)
    assert len({p.id for p in plans}) == len(plans)


@pytest.mark.parametrize("name", ["init-phase-diagram", "anchor-mechanisms", "complexity-control"])
def test_presets_resolve(name):
    exp = get_experiment(name)
    sizes = {p: len(exp.plan(resolve(exp.Spec, name, p))) for p in ("cpu", "gpu", "paper")}
    assert 0 < sizes["cpu"] <= min(sizes["gpu"], sizes["paper"])


def test_mechanism_and_complexity_plans():
    mech = AnchorMechanisms()
    plans = mech.plan(spec_of(mech, gammas=[0.5, 0.8], seeds=[1, 2, 3]))
    assert len(plans) == 6 and {p.group for p in plans} == {("depth=2",)}
    cc = ComplexityControl()
    plans = cc.plan(spec_of(cc, lrs=[1e-3, 2e-3], weight_decays=[0.01, 0.1, 0.3], seeds=[1]))
    assert len(plans) == 6 and {p.group for p in plans} == {("depth=3",)}
    assert plans[0].config["task"]["held_out"] == ["3,4", "4,3"]
    assert {p.config["weight_decay"] for p in plans} == {0.01, 0.1, 0.3}


# -- tiny end-to-end runs ------------------------------------------------------------------------------
def _run(exp, spec, tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        out = run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        table = store.table(exp.name)
        figs = exp.figures(table, Artifacts(store.artifact_paths(exp.name)))
    return out, table, figs


SOLUTION = ["inferential_acc", "symmetric_acc", "other_acc", "seen_test_acc", "train_loss",
            "hist_+0", "hist_+4", "hist_-16", "hist_+16"]


def test_phase_end_to_end(tmp_path):
    exp = InitPhaseDiagram()
    spec = spec_of(exp, gammas=[0.5, 0.8], depths=[1], seeds=[1], lrs=[1e-3, 3e-3])
    out, table, figs = _run(exp, spec, tmp_path)
    assert out["trained"] == 4 and len(table) == 4
    for r in table:
        assert all(k in r for k in SOLUTION)
        shares = sum(r[f"hist_{o:+d}"] for o in range(-16, 17)) + r["hist_outside"]
        assert math.isclose(shares, 1, abs_tol=1e-5)
    assert set(phase_cells(table)) == {(0.5, 1), (0.8, 1)}
    assert set(figs) == {"phase_diagrams", "deviation_histograms"}
    for claim in ("init-phase-small-gamma-symmetric", "init-phase-large-gamma-inferential"):
        assert CLAIMS.get(claim).check(table).status in ("PASS", "FAIL", "INCONCLUSIVE")


def test_mechanisms_end_to_end(tmp_path):
    exp = AnchorMechanisms()
    spec = spec_of(exp, gammas=[0.5, 0.8], seeds=[1], sharpness_draws=2, probe_batch=64, train_size=500)
    out, table, figs = _run(exp, spec, tmp_path)
    assert len(table) == 2 and all(r["task.train_size"] == 500 for r in table)
    with Store(tmp_path / "s.sqlite") as store:  # complexity measured along training (issue 22 item 7)
        for name in ("sr_wq1", "sr_wem_used", "cond_wq1"):
            curves = store.series([r["run_id"] for r in table], name)
            assert all([s for s, _ in c] == [15, 30] for c in curves.values()) and len(curves) == 2, name
        rid = table[0]["run_id"]
        last = store.series([rid], "sr_wq1")[rid][-1][1]
        assert math.isclose(last, table[0]["sr_wq1"], rel_tol=1e-5)  # the end of the curve is the final value
    for r in table:
        for k in SOLUTION + ["sr_wq1", "sr_wem", "cond_wq1", "fused_same", "fused_diff",
                             "sharpness_rel", "tokenwise_sens", "emb_order", "flow_8"]:
            assert r[k] is not None and math.isfinite(r[k]), k
    assert {"attention_flow", "fused_cosine", "query_cosine", "embedding_pca",
            "complexity_and_fusion"} <= set(figs)


def test_complexity_end_to_end(tmp_path):
    exp = ComplexityControl()
    spec = spec_of(exp, depth=1, lrs=[1e-3, 3e-3], weight_decays=[0.01, 0.1], seeds=[1])
    out, table, figs = _run(exp, spec, tmp_path)
    assert len(table) == 4 and all("inferential_acc" in r for r in table)
    assert set(figs) == {"lr_weight_decay"}
    assert CLAIMS.get("complexity-lr-wd-raise").check(table).status in ("PASS", "FAIL", "INCONCLUSIVE")


# -- the paired lr x wd rule (issue 20/22) -------------------------------------------------------------
def crow(lr, wd, seed, inf, seen=1.0):
    return {"lr": lr, "weight_decay": wd, "seed": seed, "inferential_acc": inf,
            "seen_test_acc": seen, "diverged": 0.0}


def test_lr_wd_raise_pairs_by_other_axis_and_seed():
    """A rise of 0.05 at every (wd, seed) while wd moves accuracy by 0.4: pooled ends would call
    it a tie (the wd spread is noise there); paired by (wd, seed) it is a clear rise. Invalid runs
    drop their pair."""
    check = CLAIMS.get("complexity-lr-wd-raise").check
    t = [crow(lr, wd, s, 0.3 + 0.4 * j + 0.05 * i + 0.01 * s + 0.002 * s * i)
         for i, lr in enumerate((1e-4, 6e-4)) for j, wd in enumerate((0.003, 0.3)) for s in (1, 2, 3)]
    v = check(t)
    assert v.status == "PASS", v
    assert v.numbers["lr"]["pairs"] == 6 and abs(v.numbers["lr"]["mean_diff"] - 0.054) < 1e-9
    t2 = [dict(r, seen_test_acc=0.5) if r["lr"] == 1e-4 and r["seed"] > 1 else r for r in t]
    assert check(t2).numbers["lr"]["too_few_runs"] == {"pairs": 2} and check(t2).status == "INCONCLUSIVE"


def test_spearman():
    assert spearman([1, 2, 3], [1, 2, 3]) == pytest.approx(1)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 1, 2, 2], [0, 0, 1, 1]) == pytest.approx(1)
    assert math.isnan(spearman([1, 2, 3], [5, 5, 5]))
