"""SIGKILL in the middle of `biaslab run`, then run again: finished runs are kept, not retrained."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from store_probe import finished_runs

TINY = ["n=6", "train_sizes=[8,16,24,32,40]", "function_seeds=[0,1]", "random_completions=2",
        "model.params={d_model: 16, d_ff: 16, n_heads: 2, n_layers: 1}",
        "train.steps=150", "train.batch=32", "train.eval_every=50"]


def _cmd(store):
    return [sys.executable, "-m", "biaslab", "run", "lowsens-generalization", *TINY, "--store",
            str(store), "--quiet", "--device", "cpu"]


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


def test_sigkill_then_resume(tmp_path):
    store = tmp_path / "s.sqlite"
    proc = subprocess.Popen(_cmd(store), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None and not finished_runs(store):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = finished_runs(store)
    assert before, "no run finished before the kill"

    out = subprocess.run(_cmd(store), env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"{len(before)} already in the store" in out.stderr
    after = finished_runs(store)
    assert len(after) == 10  # 5 sizes x 2 tables, each exactly once
    for rid, finished in before.items():
        assert after[rid] == finished  # not retrained
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 10
    assert con.execute("SELECT COUNT(*) FROM runs WHERE status != 'done'").fetchone()[0] == 0
    # a third invocation trains nothing
    again = subprocess.run(_cmd(store), env=_env(), capture_output=True, text=True, timeout=120)
    assert "0 to train" in again.stderr


def test_parallel_workers_store_every_run_once(tmp_path):
    """--workers 2: groups train in worker processes; the driver alone writes the store."""
    store = tmp_path / "p.sqlite"
    cmd = _cmd(store)[:-3] + ["--workers", "2", "--max-members", "1", "--device", "cpu"]
    cmd = [c for c in cmd if c != "train.steps=150"] + ["train.steps=40", "train_sizes=[8,16]"]
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(finished_runs(store)) == 4  # 2 sizes x 2 tables, one stack of one member each


def test_checkpoints_reload_into_plain_modules(tmp_path):
    """Every run's member is saved as safetensors and loads back into a plain nn.Module."""
    import numpy as np
    import torch

    from biaslab.execute import run_experiment
    from biaslab.experiments import get_experiment
    from biaslab.models import build_model
    from biaslab.spec import resolve
    from biaslab.store import Store
    from biaslab.store.artifacts import load_tensors
    from biaslab.tasks import make_task
    from biaslab.tasks.boolean import all_inputs

    exp = get_experiment("lowsens-generalization")
    spec = resolve(exp.Spec, exp.name, "cpu", None, TINY + ["train_sizes=[8]", "train.steps=20"])
    with Store(tmp_path / "s.sqlite") as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        row = store.table(exp.name)[0]
        paths = store.artifacts(row["run_id"])
    task = make_task("random", {"n": 6, "train_size": 8, "function_seed": row["function_seed"]})
    model = build_model("transformer", spec.model.params, task, seed=0)
    model.load_state_dict(load_tensors(paths["model"]))
    with torch.no_grad():
        learned = (model(all_inputs(6)) > 0.5).float().numpy()
    assert np.array_equal(learned, np.load(paths["learned_table"]))
