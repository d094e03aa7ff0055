"""`biaslab doctor`: is this installation sound, is this store sound, and what to do if not.

Each check gives a status (ok, warn, fail), what it found, and — unless ok — what to do. The
store is opened read-only: the doctor never changes what it examines. Exit code 0 when nothing
failed (warnings included), 1 when a check failed; bad arguments exit 2 like everywhere else.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InputError
from .store.db import resolve_artifact

PINNED_TORCH = "2.13.0"
PINNED_RAY = "2.60.0"


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    found: str
    todo: str = ""


# -- installation ----------------------------------------------------------------------------
def installation_checks() -> list[Check]:
    import torch

    from . import __version__

    out = [Check("biaslab", "ok", f"{__version__} on Python {sys.version.split()[0]}")]
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU-only"
    out.append(Check("torch", "ok" if torch.__version__.split("+")[0] == PINNED_TORCH else "warn",
                     f"{torch.__version__} ({build} build)",
                     "" if torch.__version__.startswith(PINNED_TORCH) else
                     f"the lab pins torch=={PINNED_TORCH}; stored metrics are bit-identical only "
                     "under one torch build (docs/reliability.md)"))
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        out.append(Check("device", "ok", f"cuda: {names}; `--device auto` trains there"))
    elif torch.version.cuda:
        out.append(Check("device", "warn", "a CUDA build of torch, but no GPU is visible",
                         "check the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or use --device cpu"))
    else:
        out.append(Check("device", "ok", "cpu (no CUDA in this torch build)"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    found = f"{cores} usable cores; torch uses {threads} intra-op threads (OMP_NUM_THREADS={omp or 'unset'})"
    out.append(Check("threads", "ok", found) if threads <= (cores or 1) else Check(
        "threads", "warn", found, f"more threads than cores slows small models: export "
        f"OMP_NUM_THREADS=1 and use --workers {cores} for parallel stacks"))
    out.append(_ray_check())
    return out


def _ray_check() -> Check:
    try:
        import ray
    except ImportError:
        return Check("ray", "ok", "not installed (optional: pip install 'biaslab[ray]' for --executor ray)")
    if ray.__version__ != PINNED_RAY:
        return Check("ray", "warn", f"{ray.__version__} (tested with {PINNED_RAY})",
                     f"pip install ray=={PINNED_RAY}; every node of a cluster needs the same version")
    return Check("ray", "ok", f"{ray.__version__}; every cluster node needs it and biaslab installed")


# -- store -----------------------------------------------------------------------------------
def store_checks(path: str | os.PathLike) -> list[Check]:
    from .store.db import SCHEMA_VERSION

    path = Path(path)
    if not path.exists():
        raise InputError("store", f"{path} does not exist", "a store written by biaslab run")
    if path.is_dir():
        raise InputError("store", f"{path} is a directory", "a SQLite file path")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head != b"SQLite format 3\x00":
        return [Check("store", "fail", f"{path} is not a SQLite database (corrupt or foreign file)",
                      "restore it from a copy, or start a new store (--store NEW.sqlite) and rerun")]
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        integrity = [r[0] for r in con.execute("PRAGMA integrity_check")]
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        return [Check("integrity", "fail", f"SQLite cannot read {path} ({exc})",
                      "restore it from a copy, or start a new store and rerun")]
    out = [Check("integrity", "ok", "PRAGMA integrity_check: ok") if integrity == ["ok"] else
           Check("integrity", "fail", f"PRAGMA integrity_check: {'; '.join(integrity[:3])}",
                 "copy the finished runs out (`biaslab export`), start a new store, rerun")]
    if not {"meta", "runs", "metrics", "artifacts"} <= tables:
        out.append(Check("schema", "fail", f"tables {sorted(tables)}: not a biaslab store",
                         "point --store at a file written by biaslab run"))
        con.close()
        return out
    row = con.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
    version = int(row[0]) if row and str(row[0]).isdigit() else None
    if version == SCHEMA_VERSION:
        out.append(Check("schema", "ok", f"version {version}"))
    elif version is not None and version < SCHEMA_VERSION:
        out.append(Check("schema", "warn", f"version {version}, this biaslab writes {SCHEMA_VERSION}",
                         "the next `biaslab run` on it upgrades it in place"))
    else:
        out.append(Check("schema", "fail", f"version {version}, this biaslab reads {SCHEMA_VERSION}",
                         "upgrade biaslab (the store was written by a newer one)"))
    out += _run_checks(con, path)
    con.close()
    return out


def _failed_check(con, failed: int) -> Check:
    """Crashed runs: rerunning as is crashes again, so say what the errors suggest changing."""
    errors = con.execute("SELECT experiment, error, COUNT(*) FROM runs WHERE status='failed' "
                         "GROUP BY experiment, error ORDER BY 3 DESC").fetchall()
    exp, error, _ = errors[0]
    if "out of memory" in (error or ""):
        todo = ("they ran out of memory: rerun with a smaller stack (--max-members), a smaller "
                "train.batch or model, or on a device with more memory")
    else:
        todo = ("rerunning as is will crash again: change what the error names (a spec value, "
                "the device, the installation), then rerun; `biaslab runs --status failed --json` "
                "lists each run's error")
    return Check("failed", "warn", f"{failed} runs crashed (e.g. {exp}: {error or 'no error stored'})"
                 + (f"; {len(errors)} different errors" if len(errors) > 1 else ""), todo)


def _run_checks(con, path: Path) -> list[Check]:
    counts = dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status"))
    done = counts.pop("done", 0)
    out = [Check("runs", "ok", f"{done} finished" + (f" in {n} experiments" if (n := con.execute(
        "SELECT COUNT(DISTINCT experiment) FROM runs").fetchone()[0]) else ""))]
    failed = counts.pop("failed", 0)
    if counts:
        exps = [r[0] for r in con.execute("SELECT DISTINCT experiment FROM runs WHERE status='running'")]
        out.append(Check("unfinished", "warn", f"{sum(counts.values())} runs never finished "
                         f"({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))}) in {', '.join(exps)}",
                         "a sweep was interrupted: rerun the same `biaslab run` / `reproduce` command; "
                         "it trains only these (finished runs are skipped)"))
    else:
        out.append(Check("unfinished", "ok", "none"))
    if failed:
        out.append(_failed_check(con, failed))
    rows = con.execute("SELECT a.run_id, a.path FROM artifacts a JOIN runs r ON r.id=a.run_id "
                       "WHERE r.status='done'").fetchall()
    missing = [p for _, p in rows if not Path(resolve_artifact(path, p)).exists()]
    if missing:
        out.append(Check("artifacts", "warn", f"{len(missing)} of {len(rows)} artifact files are missing "
                         f"(e.g. {missing[0]})", "the store was moved without its *_artifacts folder: "
                         "move that folder beside it (metrics and verdicts do not need it)"))
    else:
        out.append(Check("artifacts", "ok", f"{len(rows)} files present"))
    art_dir = path.parent / (path.stem + "_artifacts")
    partial = sorted(art_dir.rglob("*.tmp*")) if art_dir.is_dir() else []
    if partial:
        out.append(Check("partial files", "warn", f"{len(partial)} half-written artifact files "
                         f"(e.g. {partial[0].name}) from an interrupted write; no run points at them",
                         f"safe to delete: find {art_dir} -name '*.tmp*' -delete"))
    return out


# -- command ---------------------------------------------------------------------------------
def cmd_doctor(args) -> int:
    import json

    checks = installation_checks()
    if args.store:
        checks += store_checks(args.store)
    if args.json:
        print(json.dumps([asdict(c) for c in checks], indent=2))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"[{c.status:<4}] {c.name:<{width}}  {c.found}")
            if c.todo:
                print(f"       {'':<{width}}  -> {c.todo}")
        failed = sum(c.status == "fail" for c in checks)
        warned = sum(c.status == "warn" for c in checks)
        print(f"{len(checks)} checks: {failed} failed, {warned} warnings")
    return 1 if any(c.status == "fail" for c in checks) else 0


def add_doctor_parser(sub) -> None:
    s = sub.add_parser("doctor", help="check the installation (and a store) and say what to do")
    s.add_argument("--store", help="also check this store: integrity, schema, unfinished runs")
    s.add_argument("--json", action="store_true", help="the checks as a JSON list")
    s.set_defaults(fn=cmd_doctor)
