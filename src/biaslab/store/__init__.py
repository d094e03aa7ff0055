"""SQLite system of record and safetensors artifacts."""

from .db import Store, run_id

__all__ = ["Store", "run_id"]
