"""``biaslab export``: every run of a store as one flat table (CSV, or Parquet with pyarrow).

One row per run: its id, experiment, status (done, failed, running), error, timing (seconds
trained, start and finish times), config keys (dotted), final metrics by name, and the last
value of each stored curve as ``last.<curve>`` (with its step as ``last_step.<curve>``), so a
table answers "where did training end" without reading the curves.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..errors import InputError

FORMATS = (".csv", ".parquet")


def check_out(out: str | os.PathLike) -> Path:
    out = Path(out)
    if out.suffix not in FORMATS:
        raise InputError("out", f"unknown extension {out.suffix or '(none)'!r} of {out.name}",
                         ", ".join(FORMATS))
    return out


def rows(store, experiment: str | None = None) -> list[dict]:
    from .query import flatten_config as _flatten

    known = store.experiments()
    if experiment and experiment not in known:
        raise InputError("experiment", f"the store holds no runs of {experiment!r}",
                         ", ".join(known) or "none (the store is empty)")
    times = {rid: (started, finished) for rid, started, finished in
             store.conn.execute("SELECT id, started, finished FROM runs")}
    last: dict[str, dict] = {}
    # SQLite returns the other columns of the row holding MAX(step): the curve's last point.
    for rid, name, value, step in store.conn.execute(
            "SELECT run_id, name, value, MAX(step) FROM metrics WHERE step >= 0 GROUP BY run_id, name"):
        last.setdefault(rid, {}).update({f"last.{name}": value, f"last_step.{name}": step})
    out = []
    for r in store.runs(experiment):
        started, finished = times.get(r["id"], (None, None))
        row = {"run_id": r["id"], "experiment": r["experiment"], "status": r["status"],
               "error": r.get("error"), "seconds": r["seconds"], "started": started,
               "finished": finished, **_flatten(r["config"])}
        row.update(r["metrics"])
        row.update(last.get(r["id"], {}))
        out.append(row)
    return out


def export(store, out: str | os.PathLike, experiment: str | None = None) -> Path:
    out = check_out(out)
    table = rows(store, experiment)
    if out.suffix == ".parquet":
        from .query import write_parquet

        return write_parquet(table, out)
    cols = sorted({k for r in table for k in r})
    tmp = out.with_suffix(out.suffix + ".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(table)
    os.replace(tmp, out)
    return out
