"""TABLE: a Boolean target given by a truth table of length 2^n.

Used to refit fresh models to functions learned (or drawn) elsewhere, e.g. the learned and the
random completions stored by lowsens-generalization (Hahn & Rofin E5 step 3). The table comes
from a .npy file (the ``path`` parameter: ``biaslab sample table n=4 path=t.npy``) or, in code,
straight from an array (``TableTask.of(array, n)``: no file round trip). Either way it lives in
the task *state*, so members of one stack may each fit a different table (the table is not part
of the shape key). Indexing is the lab's little-endian convention: bit i of the table index is
input i.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import numpy as np
import torch
from pydantic import Field

from ..errors import InputError
from ..registry import TASKS
from .boolean import MAX_TABLE_N, BooleanParams, BooleanTask, index_of


class TableParams(BooleanParams):
    path: Optional[str] = Field(default=None, description=".npy truth table of length 2^n, values "
                                "in {0,1} or {-1,+1} (in code, TableTask.of(array, n) instead)")


def load_table(path: str, n: int | None = None) -> np.ndarray:
    """The table at ``path`` as float32 values in {0,1}; checks length and values."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("task.table.path", f"{path} does not exist", "a .npy file") from None
    except (ValueError, OSError) as exc:
        raise InputError("task.table.path", f"{path} is not a readable .npy array ({exc})",
                         "a .npy file") from None
    return check_table(arr, n)


def check_table(arr, n: int | None = None, field: str = "task.table.path") -> np.ndarray:
    """A truth table as float32 values in {0,1}; checks shape, length and values."""
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise InputError(field, f"shape {arr.shape} is not one-dimensional",
                         "a 1-D array of length 2^n")
    if n is not None and arr.shape[0] != 1 << n:
        raise InputError(field, f"length {arr.shape[0]} is not 2^n = {1 << n}",
                         f"{1 << n} entries")
    values = set(np.unique(arr).tolist())
    if values <= {0, 1}:
        return arr.astype(np.float32)
    if values <= {-1, 1}:
        return ((1 - arr) / 2).astype(np.float32)  # +1 -> 0, -1 -> 1 (g = 1 - 2 f)
    raise InputError(field, f"values {sorted(values)[:3]} are not Boolean",
                     "values in {0,1} or {-1,+1}")


@TASKS.register("table", "a stored truth table (.npy of length 2^n) as the target (n <= 24)")
class TableTask(BooleanTask):
    Params: ClassVar = TableParams
    needs_table: ClassVar[bool] = True

    def __init__(self, params, table=None):
        super().__init__(params)
        if params.n > MAX_TABLE_N:  # (needs_table already refuses; keep the message local)
            raise InputError("n", f"{params.n} too large for a table", f"n <= {MAX_TABLE_N}")
        if table is not None:
            self._table = check_table(table, params.n, field="table")
        elif params.path is not None:
            self._table = None
            load_table(params.path, params.n)  # fail now, not after a stack is built
        else:
            raise InputError("task.table.path", "missing", "a .npy file of length 2^n")

    @classmethod
    def of(cls, table, n: int, **params) -> "TableTask":
        """The task whose target is ``table`` (array of length 2^n, {0,1} or {-1,+1})."""
        return cls(cls.Params(n=n, **params), table=table)

    def make_function_state(self, key):
        table = self._table if self._table is not None else load_table(self.params.path, self.n)
        return {"table": torch.as_tensor(table, device=key.device)}

    def target(self, state, x):
        return state["table"][index_of(x)]
