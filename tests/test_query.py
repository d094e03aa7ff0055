"""Queryable results: Parquet export read back by pandas and DuckDB, `biaslab runs` filters."""

import json

import pytest

from biaslab.cli import main
from biaslab.store import Store


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.save_run("a1", "exp-a", {"n": 10, "model": {"depth": 2}, "task": "parity"}, status="done",
                   metrics={"acc": 0.5})
        s.save_run("a2", "exp-a", {"n": 12, "model": {"depth": 4}, "task": "parity"}, status="done",
                   metrics={"acc": 0.75})
        # Another experiment with other columns and a column of another type ("n" as a name).
        s.save_run("b1", "exp-b", {"n": "small", "width": 64}, status="done", metrics={"loss": 0.25})
        s.mark_running("exp-b", [("b2", {"n": "big", "width": 128})], "cpu")
    return path


def test_parquet_reads_back_in_pandas_and_duckdb(store_path, tmp_path, capsys):
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "runs.parquet"
    assert main(["export", "--store", str(store_path), "--out", str(out)]) == 0
    assert not list(tmp_path.glob("*.tmp"))
    df = pd.read_parquet(out).set_index("run_id").sort_index()
    # Every run with its status, every column of every experiment (not only the first row's keys).
    assert list(df.index) == ["a1", "a2", "b1", "b2"]
    assert list(df["status"]) == ["done", "done", "done", "running"]
    assert {"acc", "loss", "width", "model.depth", "experiment"} <= set(df.columns)
    assert df.loc["a2", "acc"] == 0.75 and df.loc["a2", "model.depth"] == 4
    assert df.loc["b1", "loss"] == 0.25 and df.loc["b1", "width"] == 64
    assert pd.isna(df.loc["a1", "loss"])
    # The mixed-type column keeps every value, as text.
    assert list(df["n"]) == ["10", "12", "small", "big"]
    con = duckdb.connect()
    got = con.execute(f"SELECT experiment, count(*), avg(acc) FROM read_parquet('{out}') "
                      "GROUP BY experiment ORDER BY experiment").fetchall()
    assert got == [("exp-a", 2, 0.625), ("exp-b", 2, None)]


def test_runs_filters_and_json(store_path, capsys):
    def runs(*extra):
        assert main(["runs", "--store", str(store_path), "--json", *extra]) == 0
        return json.loads(capsys.readouterr().out)

    assert {r["id"] for r in runs()} == {"a1", "a2", "b1", "b2"}
    assert {r["id"] for r in runs("--experiment", "exp-b")} == {"b1", "b2"}
    assert [r["id"] for r in runs("--status", "running")] == ["b2"]
    assert [r["id"] for r in runs("--where", "n=12")] == ["a2"]
    assert [r["id"] for r in runs("--where", "model.depth=2", "--where", "task=parity")] == ["a1"]
    assert [r["id"] for r in runs("--where", "n=small", "--status", "done")] == ["b1"]
    one = runs("--where", "width=128")[0]
    assert one["config"] == {"n": "big", "width": 128} and one["status"] == "running"
    assert runs("--where", "n=99") == []


def test_runs_where_rejects_unknown_keys_and_bad_terms(store_path, capsys):
    assert main(["runs", "--store", str(store_path), "--where", "depth=2"]) == 2
    err = capsys.readouterr().err
    assert "where" in err and "model.depth" in err  # names the keys that exist
    assert main(["runs", "--store", str(store_path), "--where", "novalue"]) == 2
    assert main(["runs", "--store", str(store_path), "--status", "lost"]) == 2
