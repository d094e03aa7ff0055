"""An optional sink: the stored training curves of some runs written as TensorBoard event files
(``biaslab run ... --log tensorboard``), one folder per run under ``<log_dir>/<experiment>/``.

The store stays the system of record: this copies curves out of it after the runs finished, and
never feeds anything back. Needs the ``tensorboard`` extra (tensorboardX, protobuf only)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError


def write_curves(store, experiment: str, run_ids, log_dir: str | os.PathLike) -> int:
    """Write every stored curve (metrics at steps >= 0) of ``run_ids`` to TensorBoard event files;
    returns the number of runs written. A run's folder is replaced, so rerunning does not append
    the same points twice."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise InputError("log", "TensorBoard logging needs tensorboardX",
                         "pip install 'biaslab[tensorboard]', or leave out --log") from None
    import shutil

    root = Path(log_dir) / experiment
    written = 0
    for rid in sorted(run_ids):
        points = store.conn.execute(
            "SELECT step, name, value FROM metrics WHERE run_id=? AND step>=0 ORDER BY step, name",
            (rid,)).fetchall()
        if not points:
            continue
        folder = root / rid
        if folder.exists():
            shutil.rmtree(folder)
        with SummaryWriter(logdir=str(folder)) as writer:
            for step, name, value in points:
                if value is not None:
                    writer.add_scalar(name, value, global_step=step)
        written += 1
    return written
