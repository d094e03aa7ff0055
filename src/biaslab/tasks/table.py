"""TABLE: a Boolean target given by a stored truth table (a .npy file of length 2^n).

Used to refit fresh models to functions learned (or drawn) elsewhere, e.g. the learned and the
random completions stored by lowsens-generalization (Hahn & Rofin E5 step 3). The path is a task
parameter; the table itself lives in the task *state*, so members of one stack may each fit a
different stored table (their tasks differ only in ``path``, which is not part of the shape key).
Indexing is the lab's little-endian convention: bit i of the table index is input i.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from ..errors import InputError
from ..registry import TASKS
from .boolean import MAX_TABLE_N, BooleanParams, BooleanTask, index_of


class TableParams(BooleanParams):
    path: str = Field(description=".npy truth table of length 2^n, values in {0,1} or {-1,+1}")


def load_table(path: str, n: int | None = None) -> np.ndarray:
    """The table at ``path`` as float32 values in {0,1}; checks length and values."""
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("task.table.path", f"{path} does not exist", "a .npy file") from None
    except (ValueError, OSError) as exc:
        raise InputError("task.table.path", f"{path} is not a readable .npy array ({exc})",
                         "a .npy file") from None
    if arr.ndim != 1:
        raise InputError("task.table.path", f"shape {arr.shape} is not one-dimensional",
                         "a 1-D array of length 2^n")
    if n is not None and arr.shape[0] != 1 << n:
        raise InputError("task.table.path", f"length {arr.shape[0]} is not 2^n = {1 << n}",
                         f"{1 << n} entries")
    values = set(np.unique(arr).tolist())
    if values <= {0, 1}:
        return arr.astype(np.float32)
    if values <= {-1, 1}:
        return ((1 - arr) / 2).astype(np.float32)  # +1 -> 0, -1 -> 1 (g = 1 - 2 f)
    raise InputError("task.table.path", f"values {sorted(values)[:3]} are not Boolean",
                     "values in {0,1} or {-1,+1}")


@TASKS.register("table", "a stored truth table (.npy of length 2^n) as the target (n <= 24)")
class TableTask(BooleanTask):
    Params: ClassVar = TableParams
    needs_table: ClassVar[bool] = True

    def __init__(self, params):
        super().__init__(params)
        if params.n > MAX_TABLE_N:  # (needs_table already refuses; keep the message local)
            raise InputError("n", f"{params.n} too large for a table", f"n <= {MAX_TABLE_N}")
        load_table(params.path, params.n)  # fail now, not after a stack is built

    def make_function_state(self, key):
        return {"table": torch.as_tensor(load_table(self.params.path, self.n), device=key.device)}

    def target(self, state, x):
        return state["table"][index_of(x)]
