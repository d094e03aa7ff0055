"""`biaslab doctor`: installation checks, and a store's integrity, schema and unfinished runs,
each finding with what to do; the store is never modified."""

import hashlib
import json
import sqlite3
import sys

import pytest

from biaslab.cli import main
from biaslab.store.db import Store


def doctor(capsys, *args):
    code = main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, out, err


def checks(capsys, *args):
    code, out, _ = doctor(capsys, *args, "--json")
    return code, {c["name"]: c for c in json.loads(out)}


def make_store(path, done=3, running=0):
    with Store(path) as s:
        for i in range(done):
            art = s.artifact_dir / f"r{i}" / "table.npy"
            art.parent.mkdir(parents=True, exist_ok=True)
            art.write_bytes(b"x")
            s.save_run(f"r{i}", "exp", {"i": i}, status="done", metrics={"acc": 1.0},
                       artifacts={"table": art})
        s.mark_running("exp", [(f"u{i}", {"i": i}) for i in range(running)], "cpu")
    return path


def test_installation_report(capsys):
    import torch

    code, out, _ = doctor(capsys)
    assert code == 0
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    assert f"torch    {torch.__version__} ({build})" in out
    assert "intra-op threads" in out and "checks: 0 failed" in out


def test_more_threads_than_cores_is_a_warning_with_advice(capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4096)
    code, c = checks(capsys)
    assert code == 0 and c["threads"]["status"] == "warn" and "OMP_NUM_THREADS=1" in c["threads"]["todo"]


def test_ray_absent_is_fine(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    code, c = checks(capsys)
    assert code == 0 and c["ray"]["status"] == "ok" and "biaslab[ray]" in c["ray"]["found"]


def test_healthy_store(capsys, tmp_path):
    path = make_store(tmp_path / "s.sqlite")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    code, c = checks(capsys, "--store", str(path))
    assert code == 0
    assert c["integrity"]["status"] == "ok" and c["schema"]["found"] == "version 1"
    assert c["runs"]["found"] == "3 finished in 1 experiments" and c["unfinished"]["found"] == "none"
    assert c["artifacts"]["found"] == "3 files present"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # read-only


def test_unfinished_runs_say_rerun(capsys, tmp_path):
    path = make_store(tmp_path / "s.sqlite", done=2, running=2)
    (path.parent / "s_artifacts" / "r0" / "model.safetensors.tmp").write_bytes(b"half")
    code, out, _ = doctor(capsys, "--store", str(path))
    assert code == 0
    assert "2 runs never finished (running: 2) in exp" in out and "rerun the same" in out
    assert "1 half-written artifact files" in out and "safe to delete" in out


def test_missing_artifacts_warn(capsys, tmp_path):
    path = make_store(tmp_path / "s.sqlite")
    (path.parent / "s_artifacts" / "r1" / "table.npy").unlink()
    code, c = checks(capsys, "--store", str(path))
    assert code == 0 and c["artifacts"]["status"] == "warn" and "1 of 3" in c["artifacts"]["found"]


def test_newer_schema_fails(capsys, tmp_path):
    path = make_store(tmp_path / "s.sqlite")
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value='99' WHERE key='schema'")
    con.commit()
    con.close()
    code, c = checks(capsys, "--store", str(path))
    assert code == 1 and c["schema"]["status"] == "fail" and "upgrade biaslab" in c["schema"]["todo"]


def test_corrupt_store_fails_with_advice(capsys, tmp_path):
    path = make_store(tmp_path / "s.sqlite", done=200)
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    data[2 * page:3 * page] = bytes(range(256)) * (page // 256)  # scribble over a b-tree page
    path.write_bytes(bytes(data))
    code, out, _ = doctor(capsys, "--store", str(path))
    assert code == 1 and "[fail] integrity" in out and "new store" in out


@pytest.mark.parametrize("content", [b"not a database at all", b""])
def test_foreign_file_fails(capsys, tmp_path, content):
    path = tmp_path / "x.sqlite"
    path.write_bytes(content)
    code, out, _ = doctor(capsys, "--store", str(path))
    assert code == 1 and "[fail] store" in out


def test_missing_store_is_bad_input(capsys, tmp_path):
    code, out, err = doctor(capsys, "--store", str(tmp_path / "nope.sqlite"))
    assert code == 2 and err.count("\n") == 1 and "does not exist" in err
