"""The local executor: trains each group of unfinished runs as one stack, in this process.

Finished runs (by id) are skipped, so an interrupted sweep resumes where it stopped. Every run
is written to the store in one transaction after its stack finishes; artifacts are written
first, under temporary names renamed into place, so the store never points at half a file.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict

import torch

from ..errors import InputError
from ..store.artifacts import save_array, save_tensors
from ..store.db import Store


def resolve_device(name: str | None) -> torch.device:
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError("device", f"unknown device {name!r}", "auto, cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", "CUDA is not available on this machine", "cpu, auto")
    return torch.device(name)


def plan_groups(plans, max_members: int | None):
    groups: "OrderedDict[tuple, list]" = OrderedDict()
    for p in plans:
        groups.setdefault(p.group, []).append(p)
    for key, members in groups.items():
        step = max_members or len(members)
        for i in range(0, len(members), step):
            yield key, members[i:i + step]


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()


def run_with_backoff(experiment, spec, members, dev, progress, log):
    """Train a group as one stack; if the device runs out of memory, split it in halves.

    This is how M is chosen from free memory: start with the whole group (or --max-members)
    and halve on OOM, so a sweep fills the GPU without the user sizing stacks by hand.
    """
    try:
        return experiment.run_group(spec, members, dev, progress=progress)
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc) or len(members) == 1:
            raise
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    half = len(members) // 2
    log(f"out of memory with a stack of {len(members)}; retrying as {half} + {len(members) - half}")
    return (run_with_backoff(experiment, spec, members[:half], dev, progress, log)
            + run_with_backoff(experiment, spec, members[half:], dev, progress, log))


def _store_outcomes(store: Store, experiment, outcomes, dev) -> None:
    for out in outcomes:
        paths = {}
        base = store.artifact_dir / out.plan.id
        for name, tensors in out.tensors.items():
            paths[name] = save_tensors(base / f"{name}.safetensors", tensors)
        for name, arr in out.arrays.items():
            paths[name] = save_array(base / f"{name}.npy", arr)
        store.save_run(out.plan.id, experiment.name, out.plan.config, status="done",
                       metrics=out.metrics, series=out.series, artifacts=paths,
                       seconds=out.seconds, device=str(dev))


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _worker_run(experiment, spec, members, dev):
    """Runs in a worker process: train one group, return its outcomes (plain data, picklable)."""
    return run_with_backoff(experiment, spec, members, dev, False, lambda msg: None)


def run_experiment(experiment, spec, store: Store, device="auto", progress=True,
                   max_members: int | None = None, log=None, workers: int = 1,
                   pool=None) -> dict:
    """Run every unfinished run of ``experiment`` under ``spec``; returns counts.

    With ``workers > 1`` (CPU), groups train in parallel worker processes, one intra-op thread
    each: on a small machine, two single-threaded stacks beat one two-threaded stack by far.
    ``pool``: an executor with ``submit(fn, *args)`` returning a concurrent.futures Future
    (``execute.ray.RayPool``) to train every group in instead; the caller owns and closes it.
    Only this process writes the store, so the store stays consistent whatever is killed.
    """
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    log = log or (lambda msg: print(msg, file=sys.stderr))
    plans = experiment.plan(spec)
    done = store.finished(p.id for p in plans)
    todo = [p for p in plans if p.id not in done]
    log(f"{experiment.name}: {len(plans)} runs, {len(done)} already in the store, {len(todo)} to train")
    t0 = time.perf_counter()
    groups = list(plan_groups(todo, max_members))
    labels = [f"[{i + 1}/{len(groups)}] {experiment.name} " + " ".join(str(k) for k in key)
              for i, (key, _) in enumerate(groups)]
    trained = 0
    if pool is not None or (workers > 1 and len(groups) > 1 and dev.type == "cpu"):
        import contextlib
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with (contextlib.nullcontext(pool) if pool is not None else ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("spawn"),
                initializer=_worker_init, initargs=(1,))) as pool:
            futures = {}
            for label, (key, members) in zip(labels, groups):
                store.mark_running(experiment.name, [(p.id, p.config) for p in members], dev.type)
                futures[pool.submit(_worker_run, experiment, spec, members, dev)] = (label, members)
            for fut in as_completed(futures):
                label, members = futures[fut]
                _store_outcomes(store, experiment, fut.result(), dev)
                trained += len(members)
                log(f"{label}: {len(members)} runs stored ({time.perf_counter() - t0:.0f}s elapsed)")
    else:
        for label, (key, members) in zip(labels, groups):
            store.mark_running(experiment.name, [(p.id, p.config) for p in members], dev.type)
            outcomes = run_with_backoff(experiment, spec, members, dev, label if progress else False, log)
            _store_outcomes(store, experiment, outcomes, dev)
            trained += len(members)
            log(f"{label}: {len(members)} runs stored ({time.perf_counter() - t0:.0f}s elapsed)")
    return {"planned": len(plans), "skipped": len(done), "trained": trained,
            "seconds": time.perf_counter() - t0}
