"""How a store file is opened: checked before SQLite touches it, and read-only for the commands
that only read (runs, report, export), so that reading never writes a byte."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from ..errors import InputError


def check_writable(path: Path) -> None:
    """A store writes its -wal and -shm files beside it: a read-only folder (or file) fails
    there, so say so before SQLite reports "unable to open database file"."""
    folder = path.parent if str(path.parent) else Path(".")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError("store", f"the folder {folder} is read-only: a store writes its journal "
                         "files beside it", "a store path in a writable folder (--store PATH), "
                         "or read this one with runs / report / export / doctor")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError("store", f"{path} is read-only", "a writable store file (--store PATH)")


def open_readonly(path: Path) -> sqlite3.Connection:
    if path.stat().st_size == 0:
        raise InputError("store", f"{path} is empty (0 bytes), not a biaslab store",
                         "a store written by biaslab run")
    # mode=ro reads safely beside a writer (it takes SQLite's shared locks, through the -shm file
    # SQLite may create beside the store); the store file itself is never written. In a folder
    # nobody can write to, no writer can exist either, and without a -wal file SQLite has no
    # -shm to create: read it as immutable.
    wal = path.with_name(path.name + "-wal")
    mode = "ro" if os.access(path.parent, os.W_OK) or wal.exists() else "ro&immutable=1"
    conn = sqlite3.connect(f"file:{quote(path.resolve().as_posix())}?mode={mode}", uri=True,
                           timeout=30, isolation_level=None)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise InputError("store", f"{path} is damaged or not SQLite ({exc}); rerunning cannot "
                         "repair it", "a readable store (`biaslab doctor --store PATH` says "
                         "what can be saved)") from None
    if not {"meta", "runs", "metrics", "artifacts"} <= tables:
        conn.close()
        raise InputError("store", f"{path} is a SQLite file but not a biaslab store "
                         f"(tables: {', '.join(sorted(tables)) or 'none'})", "a store written by biaslab run")
    return conn


def check_readable(path: Path) -> None:
    """Refuse a file that is not SQLite before sqlite3 touches it (it would not, but be clear)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputError("store", f"cannot read {path} ({exc.strerror})",
                         "a readable SQLite file") from None
    if head and head != b"SQLite format 3\x00":
        raise InputError("store", f"{path} is not a SQLite database (corrupt or foreign file)",
                         "a SQLite file written by biaslab")
