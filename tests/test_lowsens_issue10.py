"""Issue 10 item 7 for lowsens-generalization: the degree profile against a brute-force Walsh
transform, the low-degree rule on made-up tables, and the stored columns of a tiny real run."""

import math

import pytest
import torch

from biaslab.execute import run_experiment
from biaslab.experiments.base import get_experiment
from biaslab.experiments.hahn_rofin import figures
from biaslab.experiments.hahn_rofin.protocol import low_degrees
from biaslab.experiments.hahn_rofin.lowsens_generalization import (check_low_degree,
                                                         profile_columns)
from biaslab.measure.fourier import degree_profile
from biaslab.registry import CLAIMS
from biaslab.spec import resolve
from biaslab.experiments.common import members_of
from biaslab.store import Store
from biaslab.tasks import make_task
from biaslab.train import Stack

TINY = {"name": "transformer", "params": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}}


def brute_profile(table: list[int], n: int) -> list[float]:
    """W_k = sum_{|S|=k} ĝ(S)^2 from the definition ĝ(S) = 2^-n sum_x (1-2f(x)) (-1)^|x & S|,
    summed in exact integers (no transform, no torch)."""
    w = [0] * (n + 1)
    for s in range(1 << n):
        c = sum((1 - 2 * table[x]) * (-1) ** bin(x & s).count("1") for x in range(1 << n))
        w[bin(s).count("1")] += c * c
    return [v / 4 ** n for v in w]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_degree_profile_is_exact_against_brute_force_walsh(n):
    g = torch.Generator().manual_seed(100 + n)
    tables = torch.randint(0, 2, (3, 1 << n), generator=g).float()
    got = degree_profile(tables)
    for i in range(3):
        want = torch.tensor(brute_profile([int(v) for v in tables[i]], n), dtype=torch.float64)
        assert torch.equal(got[i], want)  # dyadic rationals: exact, not close


def test_profile_columns_and_low_degrees():
    assert [low_degrees(n) for n in (1, 2, 6, 9, 10)] == [1, 1, 3, 5, 5]  # k < n/2
    n = 4
    x = torch.arange(1 << n)
    first = (x & 1).float()  # all weight on degree 1 (low)
    parity = torch.tensor([bin(int(v)).count("1") % 2 for v in x]).float()  # degree 4 (high)
    const = torch.zeros(1 << n)  # degree 0
    cols = profile_columns(first, torch.stack([parity, const]))
    assert cols["deg_learned_1"] == 1.0 and cols["lowdeg_learned"] == 1.0
    # random = mean of the two profiles: half at degree 4, half at degree 0
    assert cols["deg_random_4"] == 0.5 and cols["deg_random_0"] == 0.5
    assert cols["lowdeg_random"] == 0.5
    assert sum(cols[f"deg_learned_{k}"] for k in range(n + 1)) == 1.0


def _rows(m, diffs, base=0.3, fitted=1.0):
    return [{"train_size": m, "fitted": fitted, "lowdeg_learned": base + d, "lowdeg_random": base}
            for d in diffs]


def test_rule_pass_fail_inconclusive_on_made_up_tables():
    up = [0.10, 0.12, 0.09, 0.11]  # mean 0.105, well beyond 2 se
    down = [-d for d in up]
    noisy = [0.2, -0.15, 0.05, -0.08]  # mean 0.005, 2 se about 0.16
    assert check_low_degree(_rows(128, up) + _rows(256, up)).status == "PASS"
    v = check_low_degree(_rows(128, up) + _rows(256, down))
    assert v.status == "FAIL" and v.numbers["m=256"]["status"] == "FAIL"
    assert check_low_degree(_rows(128, down)).status == "FAIL"  # symmetric
    v = check_low_degree(_rows(128, up) + _rows(256, noisy))
    assert v.status == "INCONCLUSIVE" and v.numbers["m=128"]["status"] == "PASS"
    assert math.isclose(v.numbers["m=256"]["diff"], 0.005, abs_tol=1e-9)
    # too few fitted runs: unfitted rows do not count
    assert check_low_degree(_rows(128, up[:1]) + _rows(128, up, fitted=0.0)).status == "INCONCLUSIVE"
    assert check_low_degree([]).status == "INCONCLUSIVE"


def test_claim_registered_for_the_experiment():
    claim = CLAIMS.get("lowsens-learned-low-degree")
    assert claim.experiment == "lowsens-generalization"
    assert claim.check is check_low_degree


def test_tiny_run_stores_profiles_and_figures(tmp_path):
    exp = get_experiment("lowsens-generalization")
    over = {"n": 4, "train_sizes": [6], "function_seeds": [0, 1], "random_completions": 2,
            "model": {"name": "transformer", "params": {"d_model": 8, "n_heads": 2, "n_layers": 1,
                                                        "d_ff": 8}},
            "train": {"steps": 20, "batch": 8, "eval_every": 10}}
    spec = resolve(exp.Spec, exp.name, "cpu", overrides=over)
    with Store(tmp_path / "s.sqlite") as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        rows = store.table(exp.name)
    assert len(rows) == 2
    for r in rows:
        prof = [r[f"deg_learned_{k}"] for k in range(5)]
        assert abs(sum(prof) - 1.0) < 1e-12  # Parseval on a Boolean completion
        # mean degree of a ±1 table = its average sensitivity (why the rule uses the share)
        assert abs(sum(k * w for k, w in enumerate(prof)) - r["as_learned"]) < 1e-9
        assert r["lowdeg_learned"] == pytest.approx(prof[0] + prof[1])
    import matplotlib.pyplot as plt

    for fig in (figures.degree_profile_figure(rows), figures.degree_profile_figure([]),
                figures.refit_vs_train_sharpness_figure([])):
        plt.close(fig)


def test_presets_train_as_the_reference_on_gpu_and_paper():
    for name in ("lowsens-generalization", "sensitivity-sharpness"):
        exp = get_experiment(name)
        for preset in ("cpu", "gpu", "paper"):
            spec = resolve(exp.Spec, name, preset)
            src = spec if name == "lowsens-generalization" else spec.source
            assert src.train.stop_on_converge is (preset == "cpu")
            if name == "sensitivity-sharpness":
                assert spec.train.stop_on_converge is (preset == "cpu")
            # E5 step 4 on the refits (issue 22 item 3), in every preset, R = 100
            if name == "sensitivity-sharpness":
                assert spec.train_sharpness_draws == 100


def test_train_subset_sharpness_is_the_refits_on_its_parents_inputs(tmp_path):
    """E5 step 4 (generalization_add_train_sharpness.py): measured on each learned-completion
    refit over the m inputs its source trained on; the rebuilt inputs are the source's subset."""
    exp = get_experiment("sensitivity-sharpness")
    over = {"source": {"n": 4, "train_sizes": [6], "function_seeds": [0, 1], "random_completions": 1,
                       "model": TINY, "train": {"steps": 20, "batch": 8, "eval_every": 10}},
            "random_sizes": [6], "model_seeds": [0], "model": TINY,
            "train": {"steps": 20, "batch": 8, "eval_every": 10},
            "measure": {"draws": 2, "batches": 1, "batch": 16}, "train_sharpness_draws": 5}
    spec = resolve(exp.Spec, exp.name, "cpu", overrides=over)
    with Store(tmp_path / "s.sqlite") as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        rows = store.table(exp.name)
    learned = [r for r in rows if r["kind"] == "learned"]
    assert len(learned) == 2 and all(r["train_sharpness_x4"] == 4 * r["train_sharpness"]
                                     for r in learned)
    assert all(r.get("train_sharpness") is None for r in rows if r["kind"] == "random")
    # the inputs the measurement rebuilds are the ones the source stack trained on
    src = get_experiment("lowsens-generalization")
    plans = src.plan(spec.source)
    stack = Stack("transformer", TINY["params"], [make_task("random", {
        k: p.config[k] for k in ("n", "train_size", "function_seed", "subset_seed")}) for p in plans],
        members_of(plans), "cpu")
    for i, p in enumerate(plans):
        rebuilt = make_task("random", {k: p.config[k] for k in ("n", "train_size", "function_seed",
                                                                 "subset_seed")}).make_state(p.config["seed"])
        assert torch.equal(rebuilt["subset"], stack.task_states["subset"][i])
