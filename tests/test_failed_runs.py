"""A run whose stack raises is stored `failed` with its error (not left `running`), the command
says so in one line (exit 1), `doctor` tells it from an interrupted sweep, and a rerun trains it
again. Artifact paths are stored relative to the store, so a moved store keeps its artifacts."""

import json
import shutil

import numpy as np
import torch

from biaslab.cli import main
from biaslab.execute import run_experiment
from biaslab.experiments.base import RunOutcome, RunPlan
from biaslab.store import Store


class Toy:
    """An experiment of two one-run stacks; ``crash`` makes the second stack raise."""
    name = "toy"

    def __init__(self, crash=None):
        self.crash = crash

    def dependencies(self, spec):
        return []

    def plan(self, spec):
        return [RunPlan({"i": i}, (f"g{i}",), self.name) for i in range(2)]

    def run_group(self, spec, plans, dev, progress=False):
        if self.crash and plans[0].config["i"] == 1:
            raise self.crash
        return [RunOutcome(p, {"x": float(p.config["i"])}, arrays={"w": np.arange(3)}) for p in plans]


def _doctor(path, capsys):
    capsys.readouterr()
    main(["doctor", "--store", str(path), "--json"])
    return {c["name"]: c for c in json.loads(capsys.readouterr().out)}


def test_a_crash_is_stored_as_failed_and_told_from_an_interruption(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        try:
            run_experiment(Toy(RuntimeError("CUDA out of memory. Tried to allocate 9 GiB")), None,
                           store, torch.device("cpu"), progress=False, log=lambda m: None)
        except Exception as exc:  # noqa: BLE001
            assert type(exc).__name__ == "RunsFailed" and "1 runs of toy failed" in str(exc)
        else:
            raise AssertionError("the crash was not raised")
        runs = {r["config"]["i"]: r for r in store.runs("toy")}
    assert runs[0]["status"] == "done"
    assert runs[1]["status"] == "failed" and runs[1]["error"].startswith("out of memory")
    checks = _doctor(path, capsys)
    assert checks["failed"]["status"] == "warn" and "max-members" in checks["failed"]["todo"]
    assert checks["unfinished"]["status"] == "ok"
    with Store(path) as store:  # a rerun (the cause fixed) trains the failed run only
        counts = run_experiment(Toy(), None, store, torch.device("cpu"), progress=False,
                                log=lambda m: None)
        assert counts["trained"] == 1 and {r["status"] for r in store.runs("toy")} == {"done"}
        assert "error" not in store.runs("toy")[1]


def test_a_crash_says_one_line_at_the_command_line(tmp_path, capsys, monkeypatch):
    import biaslab.execute

    def crash(*a, **k):
        from biaslab.errors import RunsFailed

        raise RunsFailed(3, "lowsens-generalization", "ValueError: bad", str(tmp_path / "s.sqlite"))
    monkeypatch.setattr(biaslab.execute, "run_experiment", crash)
    code = main(["run", "lowsens-generalization", "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.splitlines()
    assert code == 1 and err[-1].startswith("biaslab: error: 3 runs of lowsens-generalization failed")


def test_a_moved_store_keeps_its_artifacts(tmp_path, capsys, monkeypatch):
    here = tmp_path / "a"
    here.mkdir()
    monkeypatch.chdir(here)
    with Store("runs/s.sqlite") as store:  # a path relative to where biaslab ran
        run_experiment(Toy(), None, store, torch.device("cpu"), progress=False, log=lambda m: None)
        stored = [p for _, p in store.conn.execute("SELECT name, path FROM artifacts")]
    assert stored and all(p.startswith("s_artifacts/") for p in stored)
    shutil.move(str(here / "runs"), str(tmp_path / "moved"))
    monkeypatch.chdir(tmp_path)
    checks = _doctor(tmp_path / "moved" / "s.sqlite", capsys)
    assert checks["artifacts"]["status"] == "ok", checks["artifacts"]
    with Store(tmp_path / "moved" / "s.sqlite", readonly=True) as store:
        paths = store.artifact_paths("toy")
    assert all(np.load(p["w"]).tolist() == [0, 1, 2] for p in paths.values())


def test_old_absolute_and_cwd_relative_artifact_paths_still_read(tmp_path):
    from biaslab.store.db import resolve_artifact

    store = tmp_path / "new" / "s.sqlite"
    for old in ("/old/place/s_artifacts/r1/w.npy", "runs/s_artifacts/r1/w.npy"):
        assert resolve_artifact(store, old) == str(tmp_path / "new" / "s_artifacts" / "r1" / "w.npy")
    assert resolve_artifact(store, "/elsewhere/x.npy") == "/elsewhere/x.npy"
