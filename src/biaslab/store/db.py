"""The system of record: one SQLite file (WAL) holding runs, metrics, artifacts and verdicts.

A run's id is the hash of its resolved config (``execute.plan.run_id``), so asking for the same
run twice finds it. A run
is written in ONE transaction when its stack finishes (status, final metrics, curves, artifact
paths): a process killed at any moment leaves either the whole run or none of it, and the next
invocation retrains exactly the runs that are missing. Final metrics are stored at step -1.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .query import flatten_config, write_parquet

SCHEMA_VERSION = 1
FINAL_STEP = -1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    config TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    seconds REAL,
    device TEXT,
    versions TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS verdicts (
    claim TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    status TEXT NOT NULL,
    summary TEXT NOT NULL,
    numbers TEXT NOT NULL,
    checked REAL NOT NULL,
    preset TEXT,
    runs INTEGER,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs(experiment, status);
"""


def versions() -> dict:
    import torch

    from .. import __version__

    return {"biaslab": __version__, "torch": torch.__version__}


class Store:
    """A biaslab store at ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike, create: bool = True):
        self.path = Path(path)
        if not self.path.exists() and not create:
            raise InputError("store", f"{self.path} does not exist", "a path written by biaslab run")
        if self.path.exists() and self.path.is_dir():
            raise InputError("store", f"{self.path} is a directory", "a SQLite file path")
        if self.path.exists():
            self._check_readable()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        try:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
            self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self._add_verdict_columns()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise InputError("store", f"{self.path} is not a readable biaslab store ({exc})",
                             "a SQLite file written by biaslab") from None

    def _add_verdict_columns(self) -> None:
        """Stores written before verdicts recorded their preset, run count and detail (kind, scale,
        replicates, provenance) get the columns."""
        have = {row[1] for row in self.conn.execute("PRAGMA table_info(verdicts)")}
        for name, kind in (("preset", "TEXT"), ("runs", "INTEGER"), ("detail", "TEXT")):
            if name not in have:
                self.conn.execute(f"ALTER TABLE verdicts ADD COLUMN {name} {kind}")

    def _check_readable(self) -> None:
        """Refuse a file that is not SQLite before sqlite3 touches it (it would not, but be clear)."""
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(16)
        except OSError as exc:
            raise InputError("store", f"cannot read {self.path} ({exc.strerror})",
                             "a readable SQLite file") from None
        if head and head != b"SQLite format 3\x00":
            raise InputError("store", f"{self.path} is not a SQLite database (corrupt or foreign file)",
                             "a SQLite file written by biaslab")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def artifact_dir(self) -> Path:
        return self.path.parent / (self.path.stem + "_artifacts")

    # -- writing ------------------------------------------------------------------------------
    def finished(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        done: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            q = f"SELECT id FROM runs WHERE status='done' AND id IN ({','.join('?' * len(chunk))})"
            done.update(r[0] for r in self.conn.execute(q, chunk))
        return done

    def mark_running(self, experiment: str, runs: list[tuple[str, dict]], device: str) -> None:
        now = time.time()
        with self._tx():
            for rid, cfg in runs:
                self.conn.execute(
                    "INSERT INTO runs (id, experiment, config, status, created, started, device) "
                    "VALUES (?, ?, ?, 'running', ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
                    "status='running', started=excluded.started, device=excluded.device "
                    "WHERE runs.status != 'done'",
                    (rid, experiment, json.dumps(cfg, sort_keys=True), now, now, device))

    def save_run(self, rid: str, experiment: str, config: dict, *, status: str, metrics: dict,
                 series: list[tuple[int, str, float]] = (), artifacts: dict | None = None,
                 seconds: float | None = None, device: str = "cpu") -> None:
        """Write one finished run atomically (replaces any earlier partial record)."""
        now = time.time()
        with self._tx():
            self.conn.execute(
                "INSERT INTO runs (id, experiment, config, status, created, started, finished, "
                "seconds, device, versions) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE "
                "SET config=excluded.config, status=excluded.status, finished=excluded.finished, "
                "seconds=excluded.seconds, "
                "device=excluded.device, versions=excluded.versions",
                (rid, experiment, json.dumps(config, sort_keys=True), status, now, now, now, seconds,
                 device, json.dumps(versions())))
            self.conn.execute("DELETE FROM metrics WHERE run_id=?", (rid,))
            self.conn.execute("DELETE FROM artifacts WHERE run_id=?", (rid,))
            rows = [(rid, FINAL_STEP, k, _num(v)) for k, v in metrics.items()]
            rows += [(rid, int(s), k, _num(v)) for s, k, v in series]
            self.conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?)", rows)
            for name, path in (artifacts or {}).items():
                self.conn.execute("INSERT INTO artifacts VALUES (?,?,?)", (rid, name, str(path)))

    def save_verdict(self, claim: str, experiment: str, status: str, summary: str, numbers: dict,
                     preset: str | None = None, runs: int | None = None,
                     detail: dict | None = None) -> float:
        """Store a claim's verdict (replacing the previous one); returns the time it was checked.
        ``detail``: what the claims layer records beside it (kind, scale, bars, replicates,
        provenance, cost), as JSON."""
        now = time.time()
        with self._tx():
            self.conn.execute(
                "INSERT OR REPLACE INTO verdicts (claim, experiment, status, summary, numbers, "
                "checked, preset, runs, detail) VALUES (?,?,?,?,?,?,?,?,?)",
                (claim, experiment, status, summary, json.dumps(numbers, default=str), now, preset,
                 runs, json.dumps(detail or {}, default=str)))
        return now

    class _Tx:
        def __init__(self, conn):
            self.conn = conn

        def __enter__(self):
            self.conn.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type, *_):
            # After a full disk or an I/O error SQLite may have rolled back already: a second
            # ROLLBACK would raise and hide the real error.
            try:
                if exc_type is None:
                    self.conn.execute("COMMIT")
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")

    def _tx(self):
        return Store._Tx(self.conn)

    # -- reading ------------------------------------------------------------------------------
    def runs(self, experiment: str | None = None, status: str | None = None) -> list[dict]:
        q, args = "SELECT id, experiment, config, status, seconds, device FROM runs", []
        where = []
        if experiment:
            where.append("experiment=?")
            args.append(experiment)
        if status:
            where.append("status=?")
            args.append(status)
        if where:
            q += " WHERE " + " AND ".join(where)
        q += " ORDER BY created, id"
        out = []
        # One read transaction for both queries: a run finishing between them would otherwise
        # read as done without its metrics.
        own = not self.conn.in_transaction
        if own:
            self.conn.execute("BEGIN")
        try:
            finals = self._finals(experiment)
            found = self.conn.execute(q, args).fetchall()
        finally:
            if own:
                self.conn.execute("COMMIT")
        for rid, exp, cfg, st, sec, dev in found:
            out.append({"id": rid, "experiment": exp, "config": json.loads(cfg), "status": st,
                        "seconds": sec, "device": dev, "metrics": finals.get(rid, {})})
        return out

    def _finals(self, experiment: str | None) -> dict[str, dict]:
        q = "SELECT m.run_id, m.name, m.value FROM metrics m"
        args: list = []
        if experiment:
            q += " JOIN runs r ON r.id = m.run_id WHERE r.experiment=? AND m.step=?"
            args = [experiment, FINAL_STEP]
        else:
            q += " WHERE m.step=?"
            args = [FINAL_STEP]
        finals: dict[str, dict] = {}
        for rid, name, value in self.conn.execute(q, args):
            finals.setdefault(rid, {})[name] = value
        return finals

    def table(self, experiment: str) -> list[dict]:
        """One flat row per finished run: config keys, then final metrics (``m.<name>``)."""
        rows = []
        for r in self.runs(experiment, status="done"):
            row = {"run_id": r["id"], **flatten_config(r["config"])}
            row.update(r["metrics"])
            rows.append(row)
        return rows

    def series(self, run_ids: list[str], name: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list] = {rid: [] for rid in run_ids}
        for i in range(0, len(run_ids), 500):
            chunk = run_ids[i:i + 500]
            q = (f"SELECT run_id, step, value FROM metrics WHERE name=? AND step>=0 AND run_id IN "
                 f"({','.join('?' * len(chunk))}) ORDER BY step")
            for rid, step, value in self.conn.execute(q, [name, *chunk]):
                out[rid].append((step, value))
        return out

    def artifacts(self, rid: str) -> dict[str, str]:
        return dict(self.conn.execute("SELECT name, path FROM artifacts WHERE run_id=?", (rid,)))

    def artifact_paths(self, experiment: str) -> dict[str, dict[str, str]]:
        """run id -> artifact name -> path, for every run of ``experiment``."""
        q = ("SELECT a.run_id, a.name, a.path FROM artifacts a JOIN runs r ON r.id = a.run_id "
             "WHERE r.experiment=?")
        out: dict[str, dict[str, str]] = {}
        for rid, name, path in self.conn.execute(q, (experiment,)):
            out.setdefault(rid, {})[name] = path
        return out

    def view(self, experiment: str, run_ids=None) -> "RunsView":
        """A read-only copy of ``experiment``'s finished runs (only ``run_ids`` when given) and
        their artifact paths: plain data that a worker process can read without the store."""
        from .view import Artifacts, RunsView

        rows = self.table(experiment)
        if run_ids is not None:
            ids = set(run_ids)
            rows = [r for r in rows if r["run_id"] in ids]
        keep = {r["run_id"] for r in rows}
        paths = {k: v for k, v in self.artifact_paths(experiment).items() if k in keep}
        return RunsView({experiment: rows}, Artifacts(paths))

    def experiments(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT DISTINCT experiment FROM runs ORDER BY 1")]

    def verdicts(self) -> list[dict]:
        q = ("SELECT claim, experiment, status, summary, numbers, checked, preset, runs, detail "
             "FROM verdicts ORDER BY claim")
        return [{"claim": c, "experiment": e, "status": s, "summary": m, "numbers": json.loads(n),
                 "checked": t, "preset": p, "runs": k, "detail": json.loads(d) if d else {}}
                for c, e, s, m, n, t, p, k, d in self.conn.execute(q)]

    def export(self, out: str | os.PathLike, experiment: str | None = None) -> Path:
        """Export finished runs' flat table to CSV, or to Parquet (``.parquet``, needs pyarrow)."""
        out = Path(out)
        exps = [experiment] if experiment else self.experiments()
        rows = [dict(row, experiment=e) for e in exps for row in self.table(e)]
        if out.suffix == ".parquet":
            return write_parquet(rows, out)
        cols = sorted({k for r in rows for k in r})
        tmp = out.with_suffix(out.suffix + ".tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, out)
        return out


def _num(v) -> float | None:
    if v is None:
        return None
    return float(v)
