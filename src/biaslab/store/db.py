"""The system of record: one SQLite file (WAL) holding runs, metrics, artifacts and verdicts.

A run's id is the hash of its resolved config (``execute.plan.run_id``), so asking for the same
run twice finds it. A run
is written in ONE transaction when its stack finishes (status, final metrics, curves, artifact
paths): a process killed at any moment leaves either the whole run or none of it, and the next
invocation retrains exactly the runs that are missing. Final metrics are stored at step -1.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from .opening import check_readable, check_writable, open_readonly
from .query import flatten_config

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
    """A biaslab store at ``path`` (created if missing). ``readonly=True`` (the reading commands:
    runs, report, export) opens an existing store without ever writing to it: no schema, no
    journal mode, no upgrade, so its bytes stay as they were."""

    def __init__(self, path: str | os.PathLike, create: bool = True, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if not self.path.exists() and (not create or readonly):
            raise InputError("store", f"{self.path} does not exist", "a path written by biaslab run")
        if self.path.exists() and self.path.is_dir():
            raise InputError("store", f"{self.path} is a directory", "a SQLite file path")
        if self.path.exists():
            check_readable(self.path)
        elif not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError("store", f"cannot create the folder of {self.path} ({exc.strerror})",
                                 "a store path in a writable folder") from None
        if readonly:
            self.conn = open_readonly(self.path)
            return
        check_writable(self.path)
        try:
            self.conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        except sqlite3.OperationalError as exc:
            raise InputError("store", f"cannot open {self.path} for writing ({exc})",
                             "a store in a writable folder") from None
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

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}

    def _add_verdict_columns(self) -> None:
        """Stores written before verdicts recorded their preset, run count and detail (kind, scale,
        replicates, provenance), or before runs recorded why they failed, get the columns."""
        for table, name, kind in (("verdicts", "preset", "TEXT"), ("verdicts", "runs", "INTEGER"),
                                  ("verdicts", "detail", "TEXT"), ("runs", "error", "TEXT")):
            if name not in self._columns(table):
                self.conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

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
                "seconds=excluded.seconds, error=NULL, "
                "device=excluded.device, versions=excluded.versions",
                (rid, experiment, json.dumps(config, sort_keys=True), status, now, now, now, seconds,
                 device, json.dumps(versions())))
            self.conn.execute("DELETE FROM metrics WHERE run_id=?", (rid,))
            self.conn.execute("DELETE FROM artifacts WHERE run_id=?", (rid,))
            rows = [(rid, FINAL_STEP, k, _num(v)) for k, v in metrics.items()]
            rows += [(rid, int(s), k, _num(v)) for s, k, v in series]
            self.conn.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?)", rows)
            for name, path in (artifacts or {}).items():
                self.conn.execute("INSERT INTO artifacts VALUES (?,?,?)",
                                  (rid, name, self._relative(path)))

    def mark_failed(self, rids: list[str], error: str) -> None:
        """Runs whose stack raised (an exception, out of memory): stored ``failed`` with the
        error, so that a crash is told from an interrupted sweep (still ``running``). A rerun
        trains them again (only ``done`` runs are skipped)."""
        with self._tx():
            for rid in rids:
                self.conn.execute("UPDATE runs SET status='failed', error=?, finished=? "
                                  "WHERE id=? AND status!='done'", (error[:2000], time.time(), rid))

    def _relative(self, path) -> str:
        """An artifact path as stored: relative to the store's folder, so that a store moved or
        copied with its artifacts folder keeps them."""
        base = self.path.resolve().parent
        try:
            return Path(os.path.abspath(path)).relative_to(base).as_posix()
        except ValueError:  # outside the store's folder: keep it absolute
            return os.path.abspath(path)

    def resolve_artifact(self, stored: str) -> str:
        return resolve_artifact(self.path, stored)

    def save_verdict(self, claim: str, experiment: str, status: str, summary: str, numbers: dict,
                     preset: str | None = None, runs: int | None = None,
                     detail: dict | None = None) -> float:
        """Store a claim's verdict (replacing the previous one); returns the time it was checked.
        ``detail``: what the claims layer records beside it (kind, scale, bars, replicates,
        provenance, cost), as JSON. A store opened read-only (the report of a store it may not
        change) keeps none."""
        now = time.time()
        if self.readonly:
            return now
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
        error = "error" if "error" in self._columns("runs") else "NULL"
        q, args = f"SELECT id, experiment, config, status, seconds, device, {error} FROM runs", []
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
        for rid, exp, cfg, st, sec, dev, err in found:
            out.append({"id": rid, "experiment": exp, "config": json.loads(cfg), "status": st,
                        "seconds": sec, "device": dev, "metrics": finals.get(rid, {}),
                        **({"error": err} if err else {})})
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
        return {name: self.resolve_artifact(path) for name, path in
                self.conn.execute("SELECT name, path FROM artifacts WHERE run_id=?", (rid,))}

    def artifact_paths(self, experiment: str) -> dict[str, dict[str, str]]:
        """run id -> artifact name -> path, for every run of ``experiment``."""
        q = ("SELECT a.run_id, a.name, a.path FROM artifacts a JOIN runs r ON r.id = a.run_id "
             "WHERE r.experiment=?")
        out: dict[str, dict[str, str]] = {}
        for rid, name, path in self.conn.execute(q, (experiment,)):
            out.setdefault(rid, {})[name] = self.resolve_artifact(path)
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
        have = self._columns("verdicts")
        if not have:  # a read-only store written before verdicts existed
            return []
        extra = ", ".join(c if c in have else "NULL" for c in ("preset", "runs", "detail"))
        q = (f"SELECT claim, experiment, status, summary, numbers, checked, {extra} FROM verdicts "
             "ORDER BY claim")
        return [{"claim": c, "experiment": e, "status": s, "summary": m, "numbers": json.loads(n),
                 "checked": t, "preset": p, "runs": k, "detail": json.loads(d) if d else {}}
                for c, e, s, m, n, t, p, k, d in self.conn.execute(q)]

    def export(self, out: str | os.PathLike, experiment: str | None = None) -> Path:
        """Every run as one flat table, to CSV or Parquet (``store.export``)."""
        from .export import export

        return export(self, out, experiment)


def resolve_artifact(store_path, stored: str) -> str:
    """Where an artifact stored as ``stored`` is now. New stores keep paths relative to the
    store's folder; older ones kept them absolute or relative to the folder biaslab ran in, both
    through the store's ``<stem>_artifacts`` folder: from that folder on, the path is read
    relative to the store, so a moved store finds its artifacts either way."""
    store_path = Path(store_path)
    parts = Path(stored).parts
    folder = store_path.stem + "_artifacts"
    if folder in parts:
        start = len(parts) - 1 - parts[::-1].index(folder)
        return str(store_path.parent.joinpath(*parts[start:]))
    return stored if os.path.isabs(stored) else str(store_path.parent / stored)


def _num(v) -> float | None:
    if v is None:
        return None
    return float(v)
