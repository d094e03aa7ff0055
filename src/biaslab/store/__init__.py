"""SQLite system of record, safetensors / npy artifacts, and read-only views of stored runs."""

from .db import Store
from .view import Artifacts, RunsView

__all__ = ["Artifacts", "RunsView", "Store"]
