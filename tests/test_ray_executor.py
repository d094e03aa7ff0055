"""`--executor ray` on a real Ray cluster (2 CPUs on the loopback address, started and torn down
here): every run lands once although a worker is SIGKILLed mid-task (Ray retries the stack from
its start), and a driver killed mid-sweep resumes from the store."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from biaslab.cli import main
from store_probe import finished_runs

# One stack per run (--max-members 1): 3 sizes x 2 tables = 6 tasks of a few seconds each.
TINY = ["n=6", "train_sizes=[8,16,24]", "function_seeds=[0,1]", "random_completions=2",
        "model.params={d_model: 16, d_ff: 16, n_heads: 2, n_layers: 1}",
        "train.steps=200", "train.batch=32", "train.eval_every=100", "train.converge=none"]
RUNS = 6


@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray", reason="ray is not installed (pip install 'biaslab[ray]')")
    from ray_cluster import Cluster

    c = Cluster(cpus=2)
    yield c
    c.stop()


def _driver(store, address):
    from ray_cluster import env

    cmd = [sys.executable, "-m", "biaslab", "run", "lowsens-generalization", *TINY, "--store",
           str(store), "--quiet", "--executor", "ray", "--address", address, "--max-members", "1"]
    return subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _check_store(store):
    con = sqlite3.connect(store)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone() == (RUNS, RUNS)
    assert con.execute("SELECT COUNT(*) FROM runs WHERE status != 'done'").fetchone()[0] == 0
    # every run has its final metrics and its three artifacts, once
    per_run = con.execute("SELECT run_id, COUNT(*) FROM artifacts GROUP BY run_id").fetchall()
    assert len(per_run) == RUNS and all(n == 3 for _, n in per_run)
    finals = con.execute("SELECT COUNT(DISTINCT run_id) FROM metrics WHERE step=-1").fetchone()[0]
    assert finals == RUNS
    con.close()


def test_killed_worker_and_killed_driver_lose_nothing(cluster, tmp_path, request):
    """One sweep, two kills: a worker SIGKILLed while it trains a stack (Ray retries the task),
    then the driver SIGKILLed once some runs are stored; a second driver trains the rest."""
    store = tmp_path / "ray.sqlite"
    proc = _driver(store, cluster.address)
    killed, deadline = None, time.time() + 150
    while killed is None and time.time() < deadline and proc.poll() is None:
        busy = cluster.processes("ray::train_stack")
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.02)
    assert killed is not None, "no task was seen running"
    while time.time() < deadline and proc.poll() is None and not finished_runs(store):
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    assert f"{RUNS} to train" in err
    before = finished_runs(store)
    assert 0 < len(before) < RUNS, "the driver kill did not land mid-sweep"

    again = _driver(store, cluster.address)
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err
    assert f"{len(before)} already in the store" in err
    after = finished_runs(store)
    assert all(after[rid] == t for rid, t in before.items())  # kept, not retrained
    _check_store(store)
    line = (f"worker_killed=1 driver_killed_after={len(before)} resumed={RUNS - len(before)} "
            f"runs={len(after)}/{RUNS} lost=0 dup=0")
    print(f"RESILIENCE ray: {line}")
    cache = getattr(request.config, "cache", None)
    if cache is not None:
        cache.set("resilience/ray", {"line": line, "runs": len(after), "driver_killed_after": len(before)})


def test_ray_missing_is_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = main(["run", "lowsens-generalization", *TINY, "--executor", "ray", "--store", "x.sqlite"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "biaslab[ray]" in err
    assert not os.path.exists("x.sqlite")


@pytest.mark.parametrize("args,field", [
    (["--executor", "dask"], "executor"),
    (["--address", "127.0.0.1:1"], "address"),  # the local executor takes no address
    (["--executor", "ray", "--device", "cuda", "--ray-gpus-per-task", "0"], "ray-gpus-per-task"),
    (["--executor", "ray", "--device", "cpu", "--ray-gpus-per-task", "0.5"], "device"),
    (["--executor", "ray", "--address", "127.0.0.1:1"], "address"),  # nobody listens there
    (["--executor", "ray", "--address", "nonsense"], "address"),
])
def test_bad_executor_options_are_one_line(capsys, tmp_path, args, field):
    if "ray" in args:
        pytest.importorskip("ray")
    store = tmp_path / "s.sqlite"
    code = main(["run", "lowsens-generalization", *TINY, "--store", str(store), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and f"error: {field}:" in err, err
    assert not store.exists()
