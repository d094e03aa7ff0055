"""The resilience suite: SIGKILL at random points of a sweep, diverging members, a full disk,
readers during writes, corrupt checkpoints. Each test prints one figure line (`-s` shows it) and
records its numbers in the pytest cache (`.pytest_cache/v/resilience/`), for docs/reliability.md.

Sweeps run in forked children of this process (torch is imported already, so a restart costs
milliseconds instead of an interpreter start); a child that is to die sends itself SIGKILL from
inside the phase it was told to die in, so nothing gets to clean up.
"""

import errno
import multiprocessing as mp
import os
import pickle
import random
import signal
import sqlite3
import sys
import threading

import numpy as np
import pytest
import torch

from biaslab.cli import main
from biaslab.errors import InputError
from biaslab.execute import run_experiment
from biaslab.experiments import get_experiment
from biaslab.spec import resolve
from biaslab.store import Store
from biaslab.store.artifacts import load_array, load_tensors, save_array, save_tensors
from biaslab.store.db import resolve_artifact

EXP = "lowsens-generalization"
# 16 runs in 8 stacks of 2 (one stack per training size).
SWEEP = ["n=6", "train_sizes=[8,12,16,20,24,28,32,36]", "function_seeds=[0,1]",
         "random_completions=2", "model.params={d_model: 8, d_ff: 8, n_heads: 2, n_layers: 1}",
         "train.steps=30", "train.batch=32", "train.eval_every=15", "train.converge=none"]
RUNS = 16
METRICS = 25  # final metrics of every lowsens run at n = 6 (9 before its degree-profile columns)
ARTIFACTS = 3  # model, learned_table, random_table
KILLS = 12
FORK = mp.get_context("fork")


def record(request, name, line, **numbers):
    print(f"RESILIENCE {name}: {line}")
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        cache.set(f"resilience/{name}", {"line": line, **numbers})


def _spec(overrides=SWEEP):
    exp = get_experiment(EXP)
    return exp, resolve(exp.Spec, EXP, "cpu", None, overrides)


# -- SIGKILL at random points ---------------------------------------------------------------
def _die(marker, phase):
    marker.write_text(phase)
    os.kill(os.getpid(), signal.SIGKILL)


def _sweep_child(store_path, plan):
    """Run the sweep; with a ``plan`` (phase, k, j, delay), die in that phase of the k-th stack."""
    import biaslab.execute.local as local

    torch.set_num_threads(1)  # no OpenMP team inherited across fork
    exp, spec = _spec()
    marker = store_path.parent / "died_in"
    if plan:
        phase, k, j, delay = plan
        module = sys.modules[type(exp).__module__]
        calls = {"fit": 0, "measure": 0, "write": 0, "save": 0}
        if phase == "training":  # a timer fires while the k-th stack trains (or just after)
            fit = module.fit_boolean
            now = ["training"]

            def fit_boolean(*a, **kw):
                calls["fit"] += 1
                if calls["fit"] == k:
                    threading.Timer(delay, lambda: _die(marker, now[0])).start()
                out = fit(*a, **kw)
                now[0] = "measuring"
                return out
            module.fit_boolean = fit_boolean
        elif phase == "measuring":  # inside the k-th sensitivity measure
            measure = module.average_sensitivity

            def average_sensitivity(*a, **kw):
                calls["measure"] += 1
                if calls["measure"] == 3 * k:
                    _die(marker, "measuring")
                return measure(*a, **kw)
            module.average_sensitivity = average_sensitivity
        elif phase == "writing-files":  # artifact files written, the run's row not yet
            write = local.save_array

            def save(*a, **kw):
                out = write(*a, **kw)
                calls["write"] += 1
                if calls["write"] == 2 * k + j % 2:
                    _die(marker, "writing-files")
                return out
            local.save_array = save
        else:  # writing-db: inside the k-th run's transaction, after its j-th statement
            save_run = Store.save_run

            def save_in_tx(self, *a, **kw):
                calls["save"] += 1
                if calls["save"] == k:
                    real = self.conn

                    class Dying:
                        n = 0

                        def execute(self, *x):
                            out = real.execute(*x)
                            Dying.n += 1
                            if Dying.n == j + 1:  # statement 1 is BEGIN IMMEDIATE
                                _die(marker, "writing-db")
                            return out

                        def executemany(self, *x):
                            real.executemany(*x)
                            _die(marker, "writing-db")
                    self.conn = Dying()
                return save_run(self, *a, **kw)
            Store.save_run = save_in_tx
    with Store(store_path) as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None, max_members=2)


def _fork_sweep(store_path, plan=None, timeout=300):
    proc = FORK.Process(target=_sweep_child, args=(store_path, plan))
    proc.start()
    proc.join(timeout)
    if proc.is_alive():
        proc.kill()
        pytest.fail(f"sweep child hung with plan {plan}")
    return proc.exitcode


def _finished(store_path):
    con = sqlite3.connect(f"file:{store_path}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT id, finished FROM runs WHERE status='done'"))
    finally:
        con.close()


def _check_store(store_path, expect_all=False):
    """Integrity, and every finished run whole: all its metrics, all its artifacts loadable."""
    con = sqlite3.connect(store_path)
    ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    runs = con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone()
    done = [r[0] for r in con.execute("SELECT id FROM runs WHERE status='done'")]
    for rid in done:
        assert con.execute("SELECT COUNT(*) FROM metrics WHERE run_id=? AND step=-1",
                           (rid,)).fetchone()[0] == METRICS
        # stored relative to the store's folder (a moved store keeps its artifacts)
        paths = {name: resolve_artifact(store_path, p) for name, p in
                 con.execute("SELECT name, path FROM artifacts WHERE run_id=?", (rid,))}
        assert len(paths) == ARTIFACTS
        load_tensors(paths["model"])
        load_array(paths["learned_table"])
    con.close()
    assert runs[0] == runs[1]
    if expect_all:
        assert len(done) == RUNS
    return ok


def test_sigkill_at_random_points_loses_nothing(request, tmp_path):
    rng = random.Random(14)
    phases = ["training", "measuring", "writing-files", "writing-db"]
    kills, died_in, lost, dup, bad, sweeps = 0, {}, 0, 0, 0, 1
    store = tmp_path / "s1" / "s.sqlite"
    store.parent.mkdir()
    kept: dict = {}
    for attempt in range(4 * KILLS):
        if kills >= KILLS:
            break
        plan = (phases[attempt % 4], rng.randint(1, 2), rng.randint(1, 4), rng.uniform(0.0, 0.4))
        (store.parent / "died_in").unlink(missing_ok=True)
        code = _fork_sweep(store, plan)
        if code == -signal.SIGKILL:
            kills += 1
            phase = (store.parent / "died_in").read_text()
            died_in[phase] = died_in.get(phase, 0) + 1
        else:
            assert code == 0, f"sweep child failed with exit code {code}"
        bad += not _check_store(store)
        now = _finished(store)
        lost += sum(1 for rid in kept if rid not in now)
        dup += sum(1 for rid, t in kept.items() if rid in now and now[rid] != t)  # retrained
        kept = now
        if code == 0:  # this sweep is complete: go on killing a fresh one
            sweeps += 1
            store = tmp_path / f"s{sweeps}" / "s.sqlite"
            store.parent.mkdir()
            kept = {}
    assert _fork_sweep(store) == 0  # the last sweep, to the end
    assert _check_store(store, expect_all=True)
    now = _finished(store)
    lost += sum(1 for rid in kept if rid not in now)
    dup += sum(1 for rid, t in kept.items() if now.get(rid) != t)
    record(request, "sigkill", f"kills={kills} sweeps={sweeps} lost={lost} dup={dup} "
           f"integrity_fail={bad} phases={died_in}", kills=kills, sweeps=sweeps, lost=lost,
           dup=dup, integrity_fail=bad, phases=died_in)
    assert kills >= KILLS and lost == 0 and dup == 0 and bad == 0
    assert len(died_in) >= 3, died_in  # training/measuring and both kinds of writing


# -- NaN / inf members ---------------------------------------------------------------------
def test_diverging_members_are_quarantined_and_the_stack_goes_on(request, tmp_path):
    exp = get_experiment("norm-blowup-tradeoff")
    over = {"targets": ["parity"], "ns": [4], "weight_decays": [0.0], "lrs": [1e-3, 1e30],
            "seeds": [0, 1], "model": {"name": "transformer", "params": {
                "d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}},
            "train": {"steps": 40, "batch": 32, "eval_every": 10, "eval_batch": 64},
            "measure": {"draws": 2, "batches": 2, "batch": 32}}
    spec = resolve(exp.Spec, exp.name, "cpu", overrides=over)
    assert len({p.group for p in exp.plan(spec)}) == 1  # one stack of 4: two blow up
    with Store(tmp_path / "s.sqlite") as store:
        run_experiment(exp, spec, store, "cpu", progress=False, log=lambda m: None)
        rows = store.table(exp.name)
    assert len(rows) == 4
    bad = [r for r in rows if r["lr"] == 1e30]
    good = [r for r in rows if r["lr"] == 1e-3]
    assert all(r["diverged"] == 1.0 and r["converged"] == 0.0 for r in bad)
    assert all(r["diverged"] == 0.0 and r["steps"] == 40 for r in good)  # trained to the end
    assert all(np.isfinite(r["param_norm"]) and np.isfinite(r["sharpness_x4"]) for r in good)
    record(request, "diverged", f"members=4 diverged={len(bad)} healthy_finished={len(good)}",
           diverged=len(bad), healthy=len(good))


# -- a full disk ---------------------------------------------------------------------------
SMALL = SWEEP[:1] + ["train_sizes=[8,16]"] + SWEEP[2:]  # 4 runs


def _one_error_line(err):
    """The progress log may come first; then exactly one error line ends the output."""
    lines = err.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("biaslab: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in err, err
    return errors[0]


def _run_cli(capsys, store, *extra):
    code = main(["run", EXP, *SMALL, "--store", str(store), "--quiet", "--device", "cpu",
                 "--max-members", "1", *extra])
    return code, capsys.readouterr().err


def test_full_disk_on_an_artifact_is_one_line_and_the_store_intact(request, capsys, tmp_path,
                                                                   monkeypatch):
    import safetensors.torch as st

    store, real, calls = tmp_path / "s.sqlite", st.save_file, [0]

    def save_file(tensors, path, *a, **kw):
        calls[0] += 1
        if calls[0] == 3:  # the third run's checkpoint: half a file, then ENOSPC
            with open(path, "wb") as fh:
                fh.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real(tensors, path, *a, **kw)
    monkeypatch.setattr(st, "save_file", save_file)
    code, err = _run_cli(capsys, store)
    line = _one_error_line(err)
    assert code == 1
    assert line.startswith("biaslab: error: I/O failed (No space left on device") and "rerun" in line
    assert _check_store(store) and len(_finished(store)) == 2
    assert not list(tmp_path.rglob("*.tmp*"))  # the half file was removed
    monkeypatch.setattr(st, "save_file", real)
    code, err = _run_cli(capsys, store)
    assert code == 0 and "2 already in the store" in err
    assert _check_store(store) and len(_finished(store)) == 4
    record(request, "enospc_artifact", "one line, exit 1, store intact, resumed 2 of 4")


def test_full_database_is_one_line_and_the_store_intact(request, capsys, tmp_path, monkeypatch):
    store, init = tmp_path / "s.sqlite", Store.__init__
    eight = ["train_sizes=[8,12,16,20]"]  # 8 runs: more rows than the store's first pages hold

    def small_disk(self, *a, **kw):  # SQLite's own SQLITE_FULL: the file may not grow
        init(self, *a, **kw)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count={pages + 1}")
    monkeypatch.setattr(Store, "__init__", small_disk)
    code, err = _run_cli(capsys, store, *eight)
    line = _one_error_line(err)
    assert code == 1 and line.startswith("biaslab: error: I/O failed (database or disk is full")
    assert _check_store(store)
    stored = len(_finished(store))
    monkeypatch.setattr(Store, "__init__", init)
    code, err = _run_cli(capsys, store, *eight)
    assert code == 0 and f"{stored} already in the store" in err
    assert len(_finished(store)) == 8
    record(request, "sqlite_full", f"one line, exit 1, store intact, {stored} of 8 kept, resumed")


# -- readers during writes -----------------------------------------------------------------
def test_readers_never_see_a_half_written_run(request, capsys, tmp_path):
    store = tmp_path / "s.sqlite"
    with Store(store):
        pass
    proc = FORK.Process(target=_sweep_child, args=(store, None))
    proc.start()
    reads, seen, reported = 0, set(), False
    while proc.is_alive() or reads == 0:
        code = main(["runs", "--store", str(store), "--json"])
        out, err = capsys.readouterr()
        assert code == 0, err
        runs = __import__("json").loads(out)
        done = [r for r in runs if r["status"] == "done"]
        assert all(len(r["metrics"]) == METRICS for r in done)
        assert all(not r["metrics"] for r in runs if r["status"] != "done")
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)
        whole = con.execute(  # one read transaction: each finished run with all its rows
            "SELECT r.id, (SELECT COUNT(*) FROM metrics m WHERE m.run_id=r.id AND m.step=-1), "
            "(SELECT COUNT(*) FROM artifacts a WHERE a.run_id=r.id) FROM runs r "
            "WHERE r.status='done'").fetchall()
        con.close()
        assert all(m == METRICS and a == ARTIFACTS for _, m, a in whole)
        reads += 1
        seen.add(len(done))
        if not reported and 0 < len(done) < RUNS:
            code = main(["report", "--store", str(store), "--out", str(tmp_path / "rep")])
            err = capsys.readouterr().err
            assert code == 0, err
            reported = True
    proc.join()
    assert proc.exitcode == 0, f"the writing sweep ended with exit code {proc.exitcode}"
    assert len(seen) >= 3, f"reads did not interleave with the writes: {sorted(seen)}"
    record(request, "readers", f"reads={reads} states_seen={len(seen)} half_written=0 "
           f"report_mid_sweep={reported}", reads=reads, half_written=0)


# -- corrupt checkpoints -------------------------------------------------------------------
class _Boom:
    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(_Boom.marker), "w"))


def test_corrupt_or_truncated_checkpoints_are_one_line_and_never_unpickled(request, capsys, tmp_path):
    ckpt = save_tensors(tmp_path / "m.safetensors", {"w": torch.randn(64, 64)})
    arr = save_array(tmp_path / "t.npy", np.arange(256) % 2)
    data, cases = ckpt.read_bytes(), 0
    variants = {"truncated": data[:len(data) // 2], "empty": b"", "header": b"\xff" * 16 + data[16:],
                "pickle": None}
    _Boom.marker = tmp_path / "unpickled"
    for name, blob in variants.items():
        bad = tmp_path / f"{name}.safetensors"
        if blob is None:
            blob = pickle.dumps({"w": _Boom()})
        bad.write_bytes(blob)
        with pytest.raises(InputError) as exc:
            load_tensors(bad)
        assert "\n" not in str(exc.value) and str(bad) in str(exc.value)
        cases += 1
    for name, blob in {"truncated": arr.read_bytes()[:100], "pickle": pickle.dumps(_Boom())}.items():
        bad = tmp_path / f"{name}.npy"
        bad.write_bytes(blob)
        with pytest.raises(InputError):
            load_array(bad)
        code = main(["measure", "sensitivity", "--table", str(bad)])  # through the CLI
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and str(bad) in err
        cases += 1
    assert not _Boom.marker.exists()
    record(request, "checkpoints", f"corrupt_cases={cases} one_line=all unpickled=0", cases=cases)
