"""The SQLite store: atomic runs, resume by id, corrupt files refused."""

import sqlite3

import pytest

from biaslab.errors import InputError
from biaslab.execute.plan import run_id
from biaslab.store import Store


def test_run_id_is_stable_and_config_sensitive():
    a = run_id("exp", {"n": 3, "lr": 0.1})
    assert a == run_id("exp", {"lr": 0.1, "n": 3})
    assert a != run_id("exp", {"n": 4, "lr": 0.1})
    assert a != run_id("other", {"n": 3, "lr": 0.1})


def test_save_and_read_back(tmp_store):
    with Store(tmp_store) as s:
        s.mark_running("e", [("r1", {"n": 3})], "cpu")
        assert s.finished(["r1"]) == set()
        s.save_run("r1", "e", {"n": 3, "model": {"d": 4}}, status="done", metrics={"acc": 1.0},
                   series=[(10, "loss", 0.5), (20, "loss", 0.25)])
        assert s.finished(["r1", "r2"]) == {"r1"}
        rows = s.table("e")
        assert rows == [{"run_id": "r1", "n": 3, "model.d": 4, "acc": 1.0}]
        assert s.series(["r1"], "loss") == {"r1": [(10, 0.5), (20, 0.25)]}
        # saving again replaces, never duplicates
        s.save_run("r1", "e", {"n": 3, "model": {"d": 4}}, status="done", metrics={"acc": 0.5})
        assert len(s.runs()) == 1 and s.table("e")[0]["acc"] == 0.5


def test_failed_transaction_leaves_nothing(tmp_store):
    with Store(tmp_store) as s:
        # The runs row is inserted first; the bad metric fails after it, inside the transaction.
        with pytest.raises((sqlite3.Error, TypeError)):
            s.save_run("r1", "e", {}, status="done", metrics={"acc": object()})  # unstorable
        assert s.runs() == []


def test_corrupt_and_foreign_files_are_refused(tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all, just some bytes" * 10)
    with pytest.raises(InputError) as e:
        Store(bad)
    assert "not a SQLite database" in str(e.value)
    assert bad.read_bytes().startswith(b"this is not")  # untouched
    with pytest.raises(InputError):
        Store(tmp_path)  # a directory
    with pytest.raises(InputError):
        Store(tmp_path / "missing.sqlite", create=False)
    assert not (tmp_path / "missing.sqlite").exists()


def test_export_csv(tmp_store, tmp_path):
    """One row per run with its status, timing, config, final metrics and each curve's last
    point; a failed run is exported with its error."""
    import csv

    with Store(tmp_store) as s:
        s.save_run("r1", "e", {"n": 3}, status="done", metrics={"acc": 1.0},
                   series=[(0, "loss", 2.0), (10, "loss", 0.5)], seconds=4.0)
        s.mark_running("e", [("r2", {"n": 4})], "cpu")
        s.mark_failed(["r2"], "out of memory: CUDA")
        out = s.export(tmp_path / "t.csv")
    rows = {r["run_id"]: r for r in csv.DictReader(out.open())}
    assert {k: rows["r1"][k] for k in ("experiment", "status", "n", "acc", "seconds", "last.loss",
                                      "last_step.loss")} == {
        "experiment": "e", "status": "done", "n": "3", "acc": "1.0", "seconds": "4.0",
        "last.loss": "0.5", "last_step.loss": "10"}
    assert rows["r1"]["finished"] and rows["r2"]["status"] == "failed"
    assert rows["r2"]["error"] == "out of memory: CUDA"


def test_out_of_memory_splits_the_stack(tmp_store):
    """The executor halves a group that does not fit, until it does (M chosen from memory)."""
    import torch

    from biaslab.execute.local import run_with_backoff
    from biaslab.experiments.base import RunOutcome, RunPlan

    calls = []

    class Fake:
        def run_group(self, spec, plans, dev, progress=False):
            calls.append(len(plans))
            if len(plans) > 3:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return [RunOutcome(p, {"x": 1.0}) for p in plans]

    plans = [RunPlan({"i": i}, ("g",), "e") for i in range(10)]
    outs = run_with_backoff(Fake(), None, plans, torch.device("cpu"), False, lambda m: None)
    assert [o.plan.config["i"] for o in outs] == list(range(10))
    assert calls == [10, 5, 2, 3, 5, 2, 3]
    with pytest.raises(RuntimeError, match="shape mismatch"):
        class Broken(Fake):
            def run_group(self, *a, **k):
                raise RuntimeError("shape mismatch")
        run_with_backoff(Broken(), None, plans, torch.device("cpu"), False, lambda m: None)
