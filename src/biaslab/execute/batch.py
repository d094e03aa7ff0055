"""Several experiments at once, their stacks sharing one pool of workers.

``biaslab reproduce --all`` runs twenty experiments; many are a single stack. Run one after
another, a two-worker pool would train each of those on one core while the other waits. Here
every stack of every experiment without dependencies goes to the pool at once, and each is
stored (by this driver process, as in ``run_experiment``) the moment it finishes; experiments
with dependencies follow, once their upstream runs are in the store. Without a pool (one worker,
or a GPU, where one stack already fills the device) it is ``run_experiment`` in turn.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Callable, Optional

import torch

from ..store.db import Store
from .local import (_worker_init, pending_groups, resolve_device, run_experiment,
                    store_as_completed, submit_group)


def run_experiments(items, store: Store, device="auto", progress=True,
                    max_members: Optional[int] = None, log=None, workers: int = 1, pool=None,
                    on_done: Optional[Callable[[object, dict], None]] = None) -> dict[str, dict]:
    """Run every unfinished run of each (experiment, spec) in ``items``; returns the counts of
    each experiment by name (as ``run_experiment``'s). ``on_done(experiment, counts)`` is called
    as each experiment's last stack is stored; ``seconds`` counts from the start of the batch."""
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    log = log or (lambda msg: print(msg, file=sys.stderr))
    on_done = on_done or (lambda exp, counts: None)
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    if pool is None and not (workers > 1 and dev.type == "cpu"):
        for exp, spec in items:
            results[exp.name] = run_experiment(exp, spec, store, dev, progress=progress,
                                               max_members=max_members, log=log, workers=workers)
            results[exp.name]["seconds"] = time.perf_counter() - t0
            on_done(exp, results[exp.name])
        return results
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    free = [(e, s) for e, s in items if not e.dependencies(s)]
    later = [(e, s) for e, s in items if e.dependencies(s)]
    own = pool is None
    with (ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                              initializer=_worker_init, initargs=(1,))
          if own else contextlib.nullcontext(pool)) as pool:
        futures, left = {}, {}
        for exp, spec in free:
            plans, done, groups = pending_groups(exp, spec, store, max_members, log)
            results[exp.name] = {"planned": len(plans), "skipped": len(done), "trained": 0,
                                 "seconds": 0.0}
            left[exp.name] = len(groups)
            for key, members in groups:
                label = f"{exp.name} " + " ".join(str(k) for k in key)
                futures[submit_group(pool, store, exp, spec, members, dev)] = (exp, label, members)
            if not groups:
                on_done(exp, results[exp.name])
        for exp, members in store_as_completed(futures, store, dev, log, t0):
            counts = results[exp.name]
            counts["trained"] += len(members)
            left[exp.name] -= 1
            if left[exp.name] == 0:
                counts["seconds"] = time.perf_counter() - t0
                on_done(exp, counts)
        for exp, spec in later:  # their upstream experiments are stored by now
            results[exp.name] = run_experiment(exp, spec, store, dev, progress=False,
                                               max_members=max_members, log=log,
                                               workers=workers, pool=pool)
            results[exp.name]["seconds"] = time.perf_counter() - t0
            on_done(exp, results[exp.name])
    return results
