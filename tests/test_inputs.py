"""Every class of bad input from issue 25 ends in one line that names the field, exit 2, before
anything is allocated or trained: sizes over the memory limit, threads over the cores,
non-finite values, repeated seeds, unknown sweep names, flags that do not apply, seeds outside
the generator's range, damaged / empty / read-only stores, and a 100,000-character name."""

import contextlib
import io
import os
import sqlite3

import pytest

import biaslab.execute
from biaslab.cli import main


def run_cli(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("bad input reached training")
    monkeypatch.setattr(biaslab.execute, "run_experiment", refuse)


BAD = [  # (argv, field named in the one line)
    (["sample", "parity", "n=1000000000"], "n:"),
    (["sample", "parity", "n=8", "--count", "1000000000"], "count:"),
    (["measure", "sensitivity", "parity", "n=1000000000"], "n:"),
    (["measure", "sensitivity", "parity", "n=5000"], "n:"),
    (["run", "sharpness-scaling", "sweeps.A.train.batch=1000000000"], "train.batch:"),
    (["spec", "lowsens-generalization", "model.params.d_model=1000000000"], "model.params.d_model:"),
    (["spec", "lowsens-generalization", "lr=inf"], "lr:"),
    (["spec", "lowsens-generalization", "lr=nan"], "lr:"),
    (["run", "lowsens-generalization", "function_seeds=[0,0]"], "function_seeds:"),
    (["run", "sharpness-scaling", "sweeps.a.lr=0.01"], "sweeps:"),
    (["sample", "parity", "n=4", "--seed", str(2**64)], "seed:"),
    (["spec", "lowsens-generalization", f"function_seeds=[{2**40}]"], "function_seeds:"),
    (["run", "lowsens-generalization", "--ray-gpus-per-task", "0.25"], "ray-gpus-per-task:"),
    (["run", "lowsens-generalization", "--threads", "0"], "threads:"),
    (["run", "sharpness-scaling", "--only", "ns=4,8"], "only:"),
]


@pytest.mark.parametrize("argv,field", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_input_is_one_line_naming_the_field(argv, field, tmp_path):
    extra = ["--store", tmp_path / "s.sqlite"] if argv[0] == "run" else []
    code, _, err = run_cli([*argv, *extra])
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith(f"biaslab: error: {field}"), err
    assert not (tmp_path / "s.sqlite").exists()


def test_a_plan_far_larger_than_its_preset_asks_for_yes(tmp_path, monkeypatch):
    seeds = "sweeps.A.seeds=[" + ",".join(map(str, range(20))) + "]"
    code, _, err = run_cli(["run", "sharpness-scaling", seeds, "--store", tmp_path / "s.sqlite"])
    assert code == 2 and "pass --yes" in err and "244 runs" in err and err.count("\n") == 1, err
    monkeypatch.setattr(biaslab.execute, "run_experiment", lambda *a, **k: {
        "planned": 244, "skipped": 0, "trained": 244, "seconds": 0.0})
    code, _, err = run_cli(["run", "sharpness-scaling", seeds, "--yes", "--store", tmp_path / "s.sqlite"])
    assert code == 0, err


def test_threads_over_the_cores_are_clamped_with_a_warning(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(biaslab.execute, "run_experiment", lambda *a, **k: {
        "planned": 1, "skipped": 0, "trained": 0, "seconds": 0.0})
    before = torch.get_num_threads()
    try:
        code, _, err = run_cli(["run", "lowsens-generalization", "--threads", "10000",
                                "--store", tmp_path / "s.sqlite"])
        assert code == 0 and "more than this machine's" in err
        assert torch.get_num_threads() <= (os.cpu_count() or 1)
    finally:
        torch.set_num_threads(before)


def test_a_long_name_is_cut(tmp_path):
    code, _, err = run_cli(["run", "x" * 100_000, "--store", tmp_path / "s.sqlite"])
    assert code == 2 and err.count("\n") == 1 and len(err) < 600 and "characters cut" in err


def _store(path):
    from biaslab.store import Store

    with Store(path) as s:
        s.save_run("r1", "lowsens-generalization", {"n": 10}, status="done", metrics={"acc": 1.0},
                   series=[(0, "loss", 1.0)])
    return path


def test_reading_commands_leave_the_store_bytes_unchanged(tiny_store, tmp_path):
    """The store file keeps its bytes; SQLite's shared-memory index (-shm, for its read locks)
    may appear beside it, its write-ahead log stays empty."""
    import shutil

    path = tmp_path / "s.sqlite"
    shutil.copyfile(tiny_store, path)  # the closed store: one file, its log checkpointed
    wal = tmp_path / "s.sqlite-wal"
    before = path.read_bytes()
    for args in (["runs"], ["runs", "--json", "--where", "n=4"], ["report", "--out", tmp_path / "rep"],
                 ["export", "--out", tmp_path / "t.csv"], ["doctor"]):
        code, _, err = run_cli([*args, "--store", path])
        assert code in (0, 1) and "Traceback" not in err, (args, err)
        assert path.read_bytes() == before, args
        assert not wal.exists() or wal.stat().st_size == 0, args


def test_empty_corrupt_and_truncated_stores_exit_2_without_advising_a_rerun(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"not a database at all" * 100)
    full = _store(tmp_path / "full.sqlite")
    con = sqlite3.connect(full)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(full.read_bytes()[:2048])
    for store in (empty, corrupt, truncated):
        for cmd in (["runs"], ["export", "--out", tmp_path / "x.csv"], ["report", "--out", tmp_path / "r"]):
            code, _, err = run_cli([*cmd, "--store", store])
            assert code == 2 and err.count("\n") == 1, (store.name, cmd, err)
            assert "rerun the same command" not in err, err
    assert empty.read_bytes() == b""


def test_export_refuses_an_unknown_experiment_and_extension_and_where_checks_types(tmp_path):
    path = _store(tmp_path / "s.sqlite")
    for args, field in ((["export", "--out", tmp_path / "t.xlsx"], "out:"),
                        (["export", "--out", tmp_path / "t.csv", "--experiment", "nope"], "experiment:"),
                        (["runs", "--where", "n=abc"], "where:")):
        code, _, err = run_cli([*args, "--store", path])
        assert code == 2 and err.startswith(f"biaslab: error: {field}"), err


def test_a_store_in_a_read_only_folder_is_explained(tmp_path, monkeypatch):
    """(Root may write anywhere, so the folder's mode is simulated through os.access.)"""
    folder = tmp_path / "ro"
    folder.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(folder) else real(p, mode))
    code, _, err = run_cli(["run", "lowsens-generalization", "--store", folder / "s.sqlite"])
    assert code == 2 and "read-only" in err and err.count("\n") == 1, err
    assert not (folder / "s.sqlite").exists()
