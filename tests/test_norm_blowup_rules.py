"""norm-blowup-tradeoff after issue 10 item 2: the rules on made-up tables whose answer is known
(PASS, FAIL and INCONCLUSIVE each), the old rule kept under its -old-rule name, and the norm at
initialization stored by a tiny real run against an independently built stack."""

import math

import pytest
import torch

from biaslab.execute import run_experiment
from biaslab.experiments.base import get_experiment
from biaslab.experiments.hahn_rofin import norm_blowup_tradeoff as nb
from biaslab.experiments.common import members_of
from biaslab.measure.norms import parameter_norm
from biaslab.registry import CLAIMS
from biaslab.spec import resolve
from biaslab.store import Store
from biaslab.tasks import make_task
from biaslab.train import Stack
from claim_tables.hahn_rofin import plane

FURTHER = "parity-further-out-in-norm-blowup-plane"
TRADE = "layernorm-trades-norm-for-blowup"


def _check(name, rows):
    return CLAIMS.get(name).check(rows)


def test_outward_is_log_of_the_product():
    assert nb.outward({"param_norm": 2.0, "blowup": 3.0}) == pytest.approx(math.log(6.0))
    assert nb.outward({"norm_ratio": 0.5, "blowup": 4.0}, "norm_ratio") == pytest.approx(math.log(2.0))
    assert math.isnan(nb.outward({"param_norm": 2.0, "blowup": 0.0}))
    assert math.isnan(nb.outward({"param_norm": 2.0}))


def test_further_out_pass():
    v = _check(FURTHER, plane(lambda n: 0.5 * n, lambda n: 1.0))
    assert v.status == "PASS", v.summary
    assert len(v.numbers["comparisons"]) == 6  # 3 n x 2 other targets
    assert v.numbers["relative_to_init"]["status"] == "PASS"


def test_further_out_fail_when_parity_lies_inside():
    # PARITY further out at n = 4 and 6 but clearly inside MAJORITY/FIRST at n = 8
    v = _check(FURTHER, plane(lambda n: 2.0 + 0.1 * n, lambda n: 1.0 if n < 8 else 8.0))
    assert v.status == "FAIL", v.summary


def test_further_out_fail_when_parity_moves_inward():
    v = _check(FURTHER, plane(lambda n: 20.0 / n, lambda n: 1.0))  # out at every n, falls with n
    assert v.numbers["slope_status"] == "FAIL"
    assert v.status == "FAIL"


def test_further_out_tie_is_inconclusive():
    # the same blow-up for every target: differences zero, within any 2-se band
    v = _check(FURTHER, plane(lambda n: 1.0 + 0.2 * n, lambda n: 1.0 + 0.2 * n))
    assert v.status == "INCONCLUSIVE", v.summary
    assert {c["status"] for c in v.numbers["comparisons"]} == {"INCONCLUSIVE"}


def test_further_out_needs_three_n():
    v = _check(FURTHER, plane(lambda n: 0.5 * n, lambda n: 1.0, ns=(4, 6)))
    assert v.status == "INCONCLUSIVE"
    rows = plane(lambda n: 0.5 * n, lambda n: 1.0)
    for r in rows:  # PARITY converges at n = 4 only once: n = 4 cannot be compared
        if r["target"] == "parity" and r["n"] == 4 and r["weight_decay"] > 0:
            r["converged"] = 0.0
    assert _check(FURTHER, rows).status == "INCONCLUSIVE"


def _trade(signs, ns=(4, 6, 8), k=8, noise=None):
    """Runs per (target, n): k, weight decay cycling; norm falls with the run index; blow-up
    rises (sign -1: a trade-off), falls (sign +1), or follows ``noise`` (sign 0)."""
    rows = []
    for t, sign in signs.items():
        for n in ns:
            for i in range(k):
                blow = {-1: 1.0 + i, 1: 10.0 - i, 0: None}[sign]
                if blow is None:
                    blow = noise[i]
                rows.append({"target": t, "n": n, "weight_decay": 0.1 * (i % 4), "converged": 1.0,
                             "param_norm": 20.0 - i, "blowup": blow, "norm_ratio": 2.0 - 0.1 * i})
    return rows


def test_tradeoff_null_standard_error():
    st = nb.within_n_tradeoff(_trade({"parity": -1}))
    assert st["parity"]["mean_rho"] == -1.0
    assert st["parity"]["se0"] == pytest.approx(math.sqrt(3 / 7) / 3, abs=1e-4)


def test_tradeoff_pass_fail_inconclusive():
    v = _check(TRADE, _trade({"parity": -1, "majority": -1}))
    assert v.status == "PASS", v.summary
    assert v.numbers["relative_to_init"]["majority"]["status"] == "PASS"
    assert _check(TRADE, _trade({"parity": -1, "majority": 1})).status == "FAIL"
    # a target with no association (Spearman 0 at each n: ranks 1..8 vs a pattern orthogonal to them)
    flat = [4.0, 6.0, 2.0, 7.0, 1.0, 8.0, 3.0, 5.0]
    assert abs(nb.within_n_tradeoff(_trade({"m": 0}, noise=flat))["m"]["mean_rho"]) < 0.2
    v = _check(TRADE, _trade({"parity": -1, "majority": 0}, noise=flat))
    assert v.status == "INCONCLUSIVE", v.summary
    assert _check(TRADE, _trade({"parity": -1})).status == "INCONCLUSIVE"  # one target only


def test_further_out_pairs_by_weight_decay():
    """Weight decay moves every target's blow-up 3-fold per step; PARITY is 1.2x its partner at
    the same weight decay: paired, the difference is exactly log 1.2 in every pair -> PASS."""
    rows = plane(lambda n: 1.2 * n, lambda n: 1.0 * n)
    for r in rows:
        r["blowup"] *= 3.0 ** (r["weight_decay"] * 10)
    v = _check(FURTHER, rows)
    assert v.status == "PASS", v.summary
    assert all(c["pairs"] == 4 for c in v.numbers["comparisons"])
    assert all(c["mean"] == pytest.approx(math.log(1.2), abs=1e-4) for c in v.numbers["comparisons"])


def test_init_norm_is_the_norm_before_training(tmp_path):
    exp = get_experiment("norm-blowup-tradeoff")
    tiny = {"name": "transformer", "params": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}}
    over = {"targets": ["parity"], "ns": [4], "weight_decays": [0.0, 0.3], "seeds": [0],
            "model": tiny, "train": {"steps": 10, "batch": 32, "eval_every": 5, "eval_batch": 64},
            "measure": {"draws": 2, "batches": 1, "batch": 32}}
    spec = resolve(exp.Spec, exp.name, "cpu", overrides=over)
    plans = exp.plan(spec)
    with Store(tmp_path / "s.sqlite") as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        rows = {r["weight_decay"]: r for r in store.table(exp.name)}
    # the spec's model: the override merges into the preset's params (qkv_init among them)
    fresh = Stack("transformer", dict(spec.model.params), make_task("parity", {"n": 4}), members_of(plans),
                  torch.device("cpu"))
    want = parameter_norm(fresh)
    for p, w in zip(plans, want):
        r = rows[p.config["weight_decay"]]
        assert r["init_norm"] == pytest.approx(float(w), rel=1e-6)
        assert r["norm_ratio"] == pytest.approx(r["param_norm"] / r["init_norm"], rel=1e-6)
        assert r["param_norm"] != pytest.approx(r["init_norm"], rel=1e-6)  # it trained
