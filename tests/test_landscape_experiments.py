"""Loss-landscape experiments (issue 3): plans, tiny end-to-end runs, claims on hand-made tables,
the `table` and `prefix_parity` tasks, the `seq2seq` model and the probed training loop."""

import math

import numpy as np
import pytest
import torch

from biaslab.execute import run_experiment
from biaslab.experiments import stats
from biaslab.experiments.hahn_rofin import lowsens_generalization, scratchpad, training_dynamics
from biaslab.experiments.base import get_experiment
from biaslab.measure.sensitivity import average_sensitivity
from biaslab.models import seq2seq  # noqa: F401
from biaslab.registry import CLAIMS
from biaslab.spec import resolve
from biaslab.store import Artifacts, Store
from biaslab.tasks import make_task, prefix_parity, table  # noqa: F401
from biaslab.tasks.boolean import all_inputs
from biaslab.train import Member, Stack, TrainConfig, train

TINY = {"name": "transformer", "params": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}}
TINY_S2S = {"name": "seq2seq", "params": {"d_model": 8, "n_heads": 2, "n_enc_layers": 1,
                                          "n_dec_layers": 1, "d_ff": 8}}
TRAIN = {"steps": 20, "batch": 32, "eval_every": 10, "eval_batch": 64}
MEASURE = {"draws": 2, "batches": 2, "batch": 32}
EXPERIMENTS = ["sharpness-scaling", "norm-blowup-tradeoff", "training-dynamics",
               "sensitivity-sharpness", "length-generalization", "scratchpad"]


def claim_of(experiment):
    return next(c.obj for c in CLAIMS.entries() if c.obj.experiment == experiment)


# -- plans ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,preset,runs,groups", [
    ("sharpness-scaling", "paper", 1080 + 600, 27 * 4 + 20 * 3),
    ("sharpness-scaling", "cpu", 36 + 4, 12 + 4),  # sweep B: one seed (issue 10 budget)
    ("norm-blowup-tradeoff", "paper", 2000, None),
    ("norm-blowup-tradeoff", "gpu", 144, 12),  # issue 22: 4 targets x 3 n x 4 wd x 3 seeds
    ("norm-blowup-tradeoff", "cpu", 72, 12),  # 4 targets x 3 n x 2 wd x 3 seeds
    ("training-dynamics", "paper", 404, 4),
    ("sensitivity-sharpness", "paper", 1000 + 1500, 5),
    ("length-generalization", "cpu", 12, 4),
    ("scratchpad", "paper", 300 + 270, 30 + 27),
])
def test_plan_sizes(name, preset, runs, groups):
    exp = get_experiment(name)
    plans = exp.plan(resolve(exp.Spec, name, preset))
    assert len(plans) == runs
    assert len({p.id for p in plans}) == runs  # distinct configs
    if groups is not None:
        assert len({p.group for p in plans}) == groups


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_preset_resolves(name):
    exp = get_experiment(name)
    for preset in ("cpu", "gpu", "paper"):
        assert exp.plan(resolve(exp.Spec, name, preset))


def test_random_search_is_seeded_and_in_range():
    exp = get_experiment("norm-blowup-tradeoff")
    spec = resolve(exp.Spec, exp.name, "paper")
    a, b = exp.draws(spec), exp.draws(spec)
    assert a == b
    par = [d for d in a if d[0] == "parity"]
    assert len(par) == 1000
    assert all(4 <= n <= 25 and 0 <= wd <= 0.4 and 1e-4 <= lr <= 5e-4 and 0 <= s <= 1000
               for _, n, wd, lr, s in a)


# -- tiny end-to-end runs -----------------------------------------------------------------------
def _tiny_overrides(name):
    if name == "sharpness-scaling":
        sw = {"targets": ["parity", "first"], "ns": [4], "seeds": [0, 1], "model": TINY,
              "train": TRAIN}
        return {"sweeps": {"A": sw, "B": {**sw, "targets": ["majority"], "ns": [5], "seeds": [0]}},
                "measure": MEASURE}
    if name == "norm-blowup-tradeoff":
        return {"targets": ["parity"], "ns": [4], "weight_decays": [0.0, 0.3], "seeds": [0],
                "model": TINY, "train": TRAIN, "measure": MEASURE}
    if name == "training-dynamics":
        return {"n": 4, "seeds": [0, 1], "model": TINY, "train": {**TRAIN, "eval_every": 5},
                "probe": {"draws": 2, "batches": 1, "batch": 32}, "window": 5, "span": 10}
    if name == "sensitivity-sharpness":
        return {"source": {"n": 4, "train_sizes": [4, 8], "function_seeds": [0],
                           "random_completions": 1, "model": TINY,
                           "train": {"steps": 20, "batch": 8, "eval_every": 10}},
                "random_sizes": [8], "model_seeds": [0], "model": TINY, "train": TRAIN,
                "measure": MEASURE}
    if name == "length-generalization":
        return {"n": 3, "seeds": [0], "test_lengths": [3, 7], "model": TINY, "train": TRAIN,
                "eval_batches": 1, "eval_batch": 32}
    if name == "scratchpad":
        return {"ns": [2, 3], "seeds": [0], "model": TINY_S2S, "train": TRAIN, "parity_ns": [3],
                "parity_seeds": [0], "parity_model": TINY, "parity_train": TRAIN,
                "measure": MEASURE, "greedy_batches": 1}
    raise KeyError(name)


EXPECTED_METRICS = {
    "sharpness-scaling": {"sharpness", "sharpness_x4", "blowup", "param_norm", "converged",
                          "eval_mse", "steps"},
    "norm-blowup-tradeoff": {"sharpness_x4", "blowup", "param_norm", "converged"},
    "training-dynamics": {"align_step", "windows_ok", "sharpness_x4_before", "blowup_after",
                          "norm_sq_final"},
    "sensitivity-sharpness": {"as_table", "sharpness_x4", "converged", "source_fitted"},
    "length-generalization": {"acc_len_3", "acc_len_7", "acc_2n", "fitted"},
    "scratchpad": {"sharpness_x4", "blowup", "param_norm", "converged"},
}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_tiny_end_to_end(name, tmp_path):
    exp = get_experiment(name)
    spec = resolve(exp.Spec, name, "cpu", overrides=_tiny_overrides(name))
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        rows = store.table(name)
        assert summary["trained"] == len(exp.plan(spec)) == len(rows)
        for r in rows:
            assert EXPECTED_METRICS[name] <= set(r), set(r)
        if name == "training-dynamics":
            sr = store.series([rows[0]["run_id"]], "sharpness_x4")[rows[0]["run_id"]]
            assert [s for s, _ in sr] == list(range(5, 21, 5))
        if name == "scratchpad":
            assert {r["kind"] for r in rows} == {"scratchpad", "parity"}
            assert all(r["blowup"] > 0 for r in rows if r["kind"] == "scratchpad")
        verdict = claim_of(name).check(rows)
        assert verdict.status in ("PASS", "FAIL", "INCONCLUSIVE")
        figs = exp.figures(rows, Artifacts(store.artifact_paths(name)))
        assert figs
        import matplotlib.pyplot as plt

        for f in figs.values():
            plt.close(f)
        # finished runs are not retrained
        again = run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        assert again["trained"] == 0


def test_sensitivity_sharpness_reads_its_dependency_from_the_store(tmp_path):
    """The executor runs lowsens-generalization (the dependency) first, into the same store;
    sensitivity-sharpness reads its tables from a read-only view and never trains a source."""
    exp = get_experiment("sensitivity-sharpness")
    spec = resolve(exp.Spec, exp.name, "cpu", overrides=_tiny_overrides("sensitivity-sharpness"))
    with Store(tmp_path / "s.sqlite") as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        rows = store.table(exp.name)
        src_rows = store.table("lowsens-generalization")
        assert len(src_rows) == 2
        learned = {r["run_id"]: np.load(store.artifacts(r["run_id"])["learned_table"]) for r in src_rows}
    for r in rows:
        if r["kind"] == "learned":
            want = float(average_sensitivity(torch.as_tensor(learned[r["source_run"]], dtype=torch.float64)))
            assert r["as_table"] == pytest.approx(want)
    # new refits (another model seed) of the same sources: the sources come from the store
    more = resolve(exp.Spec, exp.name, "cpu",
                   overrides={**_tiny_overrides("sensitivity-sharpness"), "model_seeds": [1]})
    called = []
    orig = lowsens_generalization.LowSensGeneralization.run_group
    lowsens_generalization.LowSensGeneralization.run_group = \
        lambda *a, **k: called.append(1) or orig(*a, **k)
    try:
        with Store(tmp_path / "s.sqlite") as store:
            out = run_experiment(get_experiment(exp.name), more, store, "cpu", progress=False,
                                 log=lambda m: None)
            tables = exp.source_tables(store.view("lowsens-generalization"), set(learned))
    finally:
        lowsens_generalization.LowSensGeneralization.run_group = orig
    assert out["trained"] == len(rows)
    assert not called and set(tables) == set(learned)


# -- probes and checks inside train -----------------------------------------------------------------
def test_probe_sees_current_parameters_and_changes_nothing():
    task = make_task("parity", {"n": 5})
    members = [Member(seed=1, lr=3e-3, weight_decay=0.1), Member(seed=2, lr=1e-3)]
    cfg = TrainConfig(steps=30, batch=32, eval_every=10, converge="none", stop_on_converge=False)
    a = Stack("transformer", TINY["params"], task, members, dtype=torch.float64)
    b = Stack("transformer", TINY["params"], task, members, dtype=torch.float64)
    c = Stack("transformer", TINY["params"], task, members, dtype=torch.float64)
    train(a, cfg)
    train(c, cfg.model_copy(update={"steps": 10}))  # constant schedule: the first 10 steps of a
    seen = {}
    res = train(b, cfg, probe=lambda s: seen.setdefault(s, {k: v.clone() for k, v in b.params.items()}))
    assert sorted(seen) == [10, 20, 30] and res.steps_run == 30
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(seen[10][k], c.params[k], rtol=1e-9, atol=1e-11)


def test_check_replaces_convergence_and_probe_sees_compacted_members():
    task = make_task("first", {"n": 4})
    members = [Member(seed=s, lr=1e-3) for s in range(4)]
    cfg = TrainConfig(steps=20, batch=16, eval_every=5, converge="none", stop_on_converge=True)
    st = Stack("transformer", TINY["params"], task, members)
    snaps = {}

    def check():  # members 0-2 "converge" at the first boundary: the stack compacts to member 3
        return torch.tensor([True, True, True, False])

    def probe(step):
        snaps[step] = {k: v.clone() for k, v in st.params.items()}

    res = train(st, cfg, probe=probe, check=check)
    assert res.converge_step.tolist() == [5, 5, 5, -1]
    assert res.converged.tolist() == [True, True, True, False]
    for k in snaps[5]:
        assert snaps[20][k].shape[0] == 4  # the probe always sees every member
        torch.testing.assert_close(snaps[20][k][:3], snaps[5][k][:3])  # frozen after step 5
        torch.testing.assert_close(st.params[k], snaps[20][k])
    assert any(not torch.equal(snaps[20][k][3], snaps[5][k][3]) for k in snaps[5])  # 3 trains on


# -- statistics and windows ---------------------------------------------------------------------
def test_statistics():
    assert stats.ranks([3, 1, 2, 2]) == [4.0, 1.0, 2.5, 2.5]
    assert stats.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    fit = stats.linfit([1, 2, 3], [2, 4, 6.5])
    assert fit["slope"] == pytest.approx(2.25) and fit["r"] > 0.99
    assert math.isnan(stats.linfit([1, 1], [2, 3])["slope"])


def test_window_stats():
    series = {s: (1.0 if s < 100 else 5.0) for s in range(10, 201, 10)}
    w = training_dynamics.window_stats(series, 100, 30, 10, 200)
    assert w == {"ctrl": 1.0, "before": 1.0, "after": 5.0, "ok": True}
    assert not training_dynamics.window_stats(series, 50, 30, 10, 200)["ok"]  # control window too early


# -- claims on hand-made tables (the wing's other rules: tests/claim_tables/hahn_rofin.py) ---------
def _sens_rows(learned, random, k=4):
    rows = []
    for i in range(k):
        rows.append({"kind": "learned", "converged": 1.0, "source_fitted": 1.0, "as_table": 1.0 + 0.1 * i,
                     "sharpness_x4": learned + 0.01 * i})
        rows.append({"kind": "random", "converged": 1.0, "source_fitted": 1.0, "as_table": 3.0 + 0.1 * i,
                     "sharpness_x4": random + 0.01 * i})
    return rows


def test_claim_sensitivity_sharpness():
    check = claim_of("sensitivity-sharpness").check
    assert check(_sens_rows(0.1, 0.5)).status == "PASS"
    assert check(_sens_rows(0.5, 0.1)).status == "FAIL"
    assert check(_sens_rows(0.1, 0.5, k=2)).status == "INCONCLUSIVE"
    unfitted = [dict(r, source_fitted=0.0) for r in _sens_rows(0.1, 0.5)]
    assert check(unfitted).status == "INCONCLUSIVE"


# -- tasks -------------------------------------------------------------------------------------
def test_table_task(tmp_path):
    rs = np.random.default_rng(0)
    tables = [rs.integers(0, 2, 32) for _ in range(2)]
    paths = []
    for i, t in enumerate(tables):
        paths.append(tmp_path / f"t{i}.npy")
        np.save(paths[-1], t if i == 0 else 1 - 2 * t)  # the second on the +-1 scale (g = 1 - 2f)
    tasks = [make_task("table", {"n": 5, "path": str(p)}) for p in paths]
    for task, t in zip(tasks, tables):
        state = task.make_state(0)
        assert torch.equal(task.truth_table(state), torch.as_tensor(t, dtype=torch.float32))
        x, y = task.sample(state, torch.tensor(3), 64)
        idx = (x * (1 << torch.arange(5))).sum(-1)
        assert torch.equal(y, torch.as_tensor(t, dtype=torch.float32)[idx])
    st = Stack("transformer", TINY["params"], tasks, [Member(seed=0), Member(seed=1)])
    assert torch.equal(st.task_states["table"][1], torch.as_tensor(tables[1], dtype=torch.float32))
    from biaslab.errors import InputError

    with pytest.raises(InputError):
        make_task("table", {"n": 6, "path": str(paths[0])})  # wrong length
    with pytest.raises(InputError):
        make_task("table", {"n": 5, "path": str(tmp_path / "missing.npy")})


def test_prefix_parity_task():
    task = make_task("prefix_parity", {"n": 6})
    x, y = task.sample({}, torch.tensor(1), 50)
    assert x.shape == (50, 12) and y.shape == (50, 6) and task.n_outputs == 6
    bits = x[:, :6]
    for b, t in zip(bits.tolist(), y.tolist()):
        assert t == [sum(b[:i + 1]) % 2 for i in range(6)]
    assert (x[:, 6] == prefix_parity.BOS).all()
    assert torch.equal(x[:, 7:].float(), y[:, :-1])  # teacher forcing: targets shifted right
    assert task.correct(y.clone(), y).all()
    wrong = y.clone()
    wrong[0, 3] = 1 - wrong[0, 3]
    assert task.correct(wrong, y).tolist() == [False] + [True] * 49


# -- the seq2seq model ---------------------------------------------------------------------------
def test_seq2seq_shapes_causality_and_stack():
    task = make_task("prefix_parity", {"n": 5})
    members = [Member(seed=0), Member(seed=3)]
    st = Stack("seq2seq", TINY_S2S["params"], task, members, dtype=torch.float64)
    x, y = task.sample({}, torch.tensor(0), 7)
    out = st.forward(x)
    assert out.shape == (2, 7, 5)
    for i in range(2):  # a vmapped member equals the member alone
        torch.testing.assert_close(out[i], st.member(i)(x))
    # the output at decoder position t ignores decoder tokens after t
    x2 = x.clone()
    x2[:, 5 + 3:] = 1 - x2[:, 5 + 3:].clamp(max=1)
    out2 = st.forward(x2)
    torch.testing.assert_close(out[..., :3], out2[..., :3])
    _, acts = st.member(0)(x, acts=True)
    assert {"encoder.0.ln1_in", "encoder.0.ln2_in", "decoder.0.ln1_in", "decoder.0.ln2_in",
            "decoder.0.ln3_in"} <= set(acts)
    blow = scratchpad.seq2seq_blowups(st, [(torch.stack([x, x]), None)])
    assert blow["blowup"].shape == (2,)
    assert all(torch.isfinite(v).all() and (v > 0).all() for v in blow.values())
    assert {n for n in st.params if n.startswith("pos_embed")} == {"pos_embed_enc.weight",
                                                                   "pos_embed_dec.weight"}


def test_greedy_accuracy_of_an_oracle():
    """A stand-in stack that outputs y_t = y_{t-1} xor x_t from its decoder input is exact under
    greedy decoding; one that ignores the decoder input is not."""
    n = 6
    task = make_task("prefix_parity", {"n": n})
    x, y = task.sample({}, torch.tensor(2), 40)

    class Oracle:
        def forward(self, inp, shared_input=True):
            enc, dec = inp[..., :n], inp[..., n:]
            prev = torch.where(dec == prefix_parity.BOS, 0, dec)
            return ((prev + enc) % 2).float()

    class Lazy:
        def forward(self, inp, shared_input=True):
            return inp[..., :n].float()

    X, Y = torch.stack([x]), torch.stack([y])
    assert scratchpad.greedy_accuracy(Oracle(), X, Y).tolist() == [1.0]
    assert scratchpad.greedy_accuracy(Lazy(), X, Y).item() < 0.5
