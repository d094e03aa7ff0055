"""Read a store from outside the process that writes it, as a test that kills that process does."""

from __future__ import annotations

import sqlite3


def finished_runs(store) -> dict:
    """id -> finished time of every run marked done; {} while the store does not exist yet or is
    locked by the writer (read-only, so probing never changes what is tested)."""
    if not store.exists():
        return {}
    try:
        con = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        rows = dict(con.execute("SELECT id, finished FROM runs WHERE status='done'"))
        con.close()
        return rows
    except sqlite3.OperationalError:
        return {}
