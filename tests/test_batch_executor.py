"""execute.batch.run_experiments: several experiments with their stacks in one worker pool store
exactly what running them one after another stores, a dependent experiment included."""

import pytest

from biaslab.execute import run_experiment
from biaslab.execute.batch import run_experiments
from biaslab.experiments import get_experiment
from biaslab.spec import resolve
from biaslab.store import Store

from test_landscape_experiments import _tiny_overrides

NAMES = ["norm-blowup-tradeoff", "length-generalization", "sensitivity-sharpness"]


def _items():
    out = []
    for name in NAMES:
        exp = get_experiment(name)
        out.append((exp, resolve(exp.Spec, name, "cpu", overrides=_tiny_overrides(name))))
    return out


def _final(store, names):
    return {n: {r["run_id"]: {k: v for k, v in r.items() if k not in ("seconds",)}
                for r in store.table(n)} for n in names}


def test_pooled_batch_stores_what_sequential_runs_store(tmp_path):
    with Store(tmp_path / "seq.sqlite") as store:
        for exp, spec in _items():
            run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        want = _final(store, NAMES + ["lowsens-generalization"])
    seen = []
    with Store(tmp_path / "pool.sqlite") as store:
        counts = run_experiments(_items(), store, "cpu", progress=False, log=lambda m: None,
                                 workers=2, on_done=lambda exp, c: seen.append(exp.name))
        got = _final(store, NAMES + ["lowsens-generalization"])
    assert sorted(seen) == sorted(NAMES)
    assert seen[-1] == "sensitivity-sharpness"  # after its upstream runs were stored
    assert all(counts[n]["trained"] == len(want[n]) for n in NAMES)
    for name in want:
        assert set(got[name]) == set(want[name]), name
        for rid, row in want[name].items():
            for k, v in row.items():
                if isinstance(v, float):
                    assert got[name][rid][k] == pytest.approx(v, rel=1e-6, nan_ok=True), (name, k)
                else:
                    assert got[name][rid][k] == v, (name, k)
    # a second batch finds everything stored and trains nothing
    with Store(tmp_path / "pool.sqlite") as store:
        again = run_experiments(_items(), store, "cpu", progress=False, log=lambda m: None,
                                workers=2)
    assert all(again[n]["trained"] == 0 for n in NAMES)
