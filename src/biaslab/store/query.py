"""Queries over stored runs that the CLI offers: filtering runs by config keys (``--where
key=value``) and turning flat rows into a Parquet table whose columns are the union of every row's
keys (pyarrow would otherwise take the schema of the first row only and drop the rest), and the
dotted flattening of a config both share. The store (db.py) imports this module, never the reverse."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError


def flatten_config(d: dict, prefix: str = "") -> dict:
    """A nested config as one level of dotted keys: ``{"model": {"depth": 2}}`` ->
    ``{"model.depth": 2}``."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten_config(v, key + "."))
        else:
            out[key] = v
    return out


def parse_where(terms: list[str]) -> dict[str, object]:
    """``["n=10", "task=parity"]`` -> ``{"n": 10, "task": "parity"}``; values read as JSON when
    they parse (numbers, true/false, null), else kept as text."""
    out: dict[str, object] = {}
    for term in terms or []:
        key, sep, raw = term.partition("=")
        if not sep or not key.strip():
            raise InputError("where", f"{term!r} is not key=value", "a config key, e.g. n=10 or model.depth=2")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def _same(stored, wanted) -> bool:
    if isinstance(wanted, str) and not isinstance(stored, str):
        return json.dumps(stored) == wanted or str(stored) == wanted
    if isinstance(stored, bool) or isinstance(wanted, bool):
        return stored is wanted
    return stored == wanted


def filter_runs(runs: list[dict], where: dict[str, object]) -> list[dict]:
    """The runs whose flattened config (dotted keys) holds every ``key=value`` of ``where``.

    A key that no run's config has is a typo, not an empty answer: it raises, naming the keys
    that exist."""
    if not where:
        return list(runs)
    flat = [(r, flatten_config(r["config"])) for r in runs]
    known = sorted({k for _, f in flat for k in f})
    for key, wanted in where.items():
        if flat and key not in known:
            raise InputError("where", f"no run's config has the key {key!r}", ", ".join(known))
        stored = [f[key] for _, f in flat if key in f and f[key] is not None]
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in stored)
        if stored and numeric and isinstance(wanted, str):
            raise InputError("where", f"{key}={wanted!r} has the wrong type: {key} holds numbers",
                             f"a number, e.g. {key}={stored[0]}")
    return [r for r, f in flat if all(k in f and _same(f[k], v) for k, v in where.items())]


def write_parquet(rows: list[dict], out: str | os.PathLike) -> Path:
    """Write ``rows`` (flat dicts) as one Parquet table, atomically (a temporary file, then a
    rename). A column whose values mix types (an experiment's ``n`` is a number, another's a
    name) is stored as text so that no value is lost."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError("out", "Parquet export needs pyarrow", "a .csv path, or pip install pyarrow") from None
    out = Path(out)
    cols = sorted({k for r in rows for k in r})
    arrays = {}
    for c in cols:
        values = [r.get(c) for r in rows]
        try:
            arrays[c] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            arrays[c] = pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v))
                                  for v in values], type=pa.string())
    table = pa.table(arrays) if cols else pa.table({"run_id": pa.array([], type=pa.string())})
    tmp = out.with_name(out.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, out)
    return out
