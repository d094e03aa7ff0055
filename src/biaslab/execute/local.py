"""The local executor: trains each stack of unfinished runs, in this process or in workers.

An experiment's dependencies run first (recursively), and the experiment's ``run_group`` gets a
read-only view of their finished runs (``upstream``). Finished runs (by id) are skipped, so an
interrupted sweep resumes where it stopped. Only this driver process writes the store, also with
worker processes: every run is written in one transaction after its stack finishes; artifacts
are written first, under temporary names renamed into place, so the store never points at half
a file.
"""

from __future__ import annotations

import sys
import time

import torch

from ..errors import InputError, RunsFailed
from ..store.artifacts import save_array, save_tensors
from ..store.db import Store
from ..store.view import RunsView
from .plan import stacks_of


def resolve_device(name: str | None) -> torch.device:
    name = name or "auto"
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError("device", f"unknown device {name!r}", "auto, cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device", "CUDA is not available on this machine", "cpu, auto")
    return torch.device(name)


def _is_oom(exc: BaseException) -> bool:
    oom = getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(exc, oom) or "out of memory" in str(exc).lower()


def run_with_backoff(experiment, spec, members, dev, progress, log, upstream=None):
    """Train a group as one stack; if the device runs out of memory, split it in halves.

    This is how M is chosen from free memory: start with the whole group (or --max-members)
    and halve on OOM, so a sweep fills the GPU without the user sizing stacks by hand.
    ``upstream`` (the dependencies' runs) is passed on to experiments that declare dependencies.
    """
    try:
        extra = {"upstream": upstream} if upstream is not None else {}
        return experiment.run_group(spec, members, dev, progress=progress, **extra)
    except (RuntimeError, MemoryError) as exc:
        if not _is_oom(exc) or len(members) == 1:
            raise
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    half = len(members) // 2
    log(f"out of memory with a stack of {len(members)}; retrying as {half} + {len(members) - half}")
    return (run_with_backoff(experiment, spec, members[:half], dev, progress, log, upstream)
            + run_with_backoff(experiment, spec, members[half:], dev, progress, log, upstream))


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


def error_text(exc: BaseException) -> str:
    """One line saying why a stack died, as stored with its failed runs."""
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    kind = "out of memory" if _is_oom(exc) or isinstance(exc, MemoryError) else type(exc).__name__
    return f"{kind}: {first}" if first else kind


def record_failure(store: Store, experiment, members, exc: BaseException) -> Exception:
    """Store a crashed stack's runs as failed with the error; the exception to raise for it
    (bad input found while training stays the one-line InputError it is)."""
    text = error_text(exc)
    store.mark_failed([p.id for p in members], text)
    if isinstance(exc, InputError):
        return exc
    return RunsFailed(len(members), experiment.name, text, str(store.path))


#: Seconds between "still training" lines while a pool's stacks run: a first stack of minutes
#: would otherwise be minutes of silence.
HEARTBEAT_S = 20.0


def store_as_completed(futures, store: Store, dev, log, t0: float):
    """Store each stack's outcomes as its future completes and yield (experiment, members);
    ``futures`` maps a future to (experiment, label, members). A stack that raised is stored as
    failed; the first failure is raised once every other stack has been stored."""
    failure = None
    for fut in completed(futures, log, t0):
        exp, label, members = futures[fut]
        try:
            outcomes = fut.result()
        except Exception as exc:  # noqa: BLE001 - stored as failed, raised after the rest
            failure = failure or record_failure(store, exp, members, exc)
            continue
        _store_outcomes(store, exp, outcomes, dev)
        log(f"{label}: {len(members)} runs stored ({time.perf_counter() - t0:.0f}s elapsed)")
        yield exp, members
    if failure is not None:
        raise failure


def completed(futures, log, t0: float, every: float = HEARTBEAT_S):
    """``as_completed`` that logs how far the pool is whenever ``every`` seconds pass without
    a stack finishing."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pending, total = set(futures), len(futures)
    while pending:
        done, pending = wait(pending, timeout=every, return_when=FIRST_COMPLETED)
        if not done:
            log(f"training: {total - len(pending)}/{total} stacks done, {len(pending)} in progress "
                f"({time.perf_counter() - t0:.0f}s elapsed)")
        yield from done


def _worker_init(threads: int) -> None:
    from ..train.allocator import tune_malloc

    torch.set_num_threads(threads)
    tune_malloc()
    _exit_with_parent()


#: How often a worker checks that the driver that spawned it is still alive (seconds).
PARENT_POLL_SECONDS = 1.0


def _exit_with_parent() -> None:
    """End this worker when the driver dies. A driver killed with SIGKILL (or by the OOM killer)
    cannot shut its pool down, and its spawned workers would go on training stacks whose results
    no one stores, holding the CPU. An orphan is re-parented, so a changed parent pid means the
    driver is gone; polling works on every platform and for workers spawned from any thread
    (Linux's PR_SET_PDEATHSIG fires when the spawning *thread* exits)."""
    import os
    import threading

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="biaslab-parent-watch", daemon=True).start()


def _worker_run(experiment, spec, members, dev, upstream):
    """Runs in a worker process: train one group, return its outcomes (plain data, picklable)."""
    return run_with_backoff(experiment, spec, members, dev, False, lambda msg: None, upstream)


def pending_groups(experiment, spec, store: Store, max_members, log):
    """(plans, ids already finished, [(group key, plans)] of the stacks still to train), logged."""
    plans = experiment.plan(spec)
    done = store.finished(p.id for p in plans)
    todo = [p for p in plans if p.id not in done]
    log(f"{experiment.name}: {len(plans)} runs, {len(done)} already in the store, {len(todo)} to train")
    return plans, done, list(stacks_of(todo, max_members))


def submit_group(pool, store: Store, experiment, spec, members, dev, upstream=None):
    """Mark a stack's runs running and hand the stack to a worker pool; returns its Future."""
    store.mark_running(experiment.name, [(p.id, p.config) for p in members], dev.type)
    return pool.submit(_worker_run, experiment, spec, members, dev, upstream)


def run_dependencies(experiment, spec, store: Store, device, **kwargs) -> RunsView | None:
    """Run every experiment ``experiment`` depends on (each after its own dependencies) and
    return a read-only view of their planned runs; None when it has no dependencies."""
    deps = experiment.dependencies(spec)
    if not deps:
        return None
    view = RunsView()
    for dep, dep_spec in deps:
        run_experiment(dep, dep_spec, store, device, **kwargs)
        view = view.merged(store.view(dep.name, [p.id for p in dep.plan(dep_spec)]))
    return view


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
    upstream = run_dependencies(experiment, spec, store, dev, progress=progress,
                                max_members=max_members, log=log, workers=workers, pool=pool)
    plans, done, groups = pending_groups(experiment, spec, store, max_members, log)
    t0 = time.perf_counter()
    labels = [f"[{i + 1}/{len(groups)}] {experiment.name} " + " ".join(str(k) for k in key)
              for i, (key, _) in enumerate(groups)]
    trained = 0
    if pool is not None or (workers > 1 and len(groups) > 1 and dev.type == "cpu"):
        import contextlib
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with (contextlib.nullcontext(pool) if pool is not None else ProcessPoolExecutor(
                max_workers=workers, mp_context=mp.get_context("spawn"),
                initializer=_worker_init, initargs=(1,))) as pool:
            futures = {}
            for label, (key, members) in zip(labels, groups):
                futures[submit_group(pool, store, experiment, spec, members, dev, upstream)] = \
                    (experiment, label, members)
            for _, members in store_as_completed(futures, store, dev, log, t0):
                trained += len(members)
    else:
        for label, (key, members) in zip(labels, groups):
            store.mark_running(experiment.name, [(p.id, p.config) for p in members], dev.type)
            try:
                outcomes = run_with_backoff(experiment, spec, members, dev,
                                            label if progress else False, log, upstream)
            except Exception as exc:  # noqa: BLE001 - a crash is stored, then said in one line
                raise record_failure(store, experiment, members, exc)  # noqa: B904 - chained
            _store_outcomes(store, experiment, outcomes, dev)
            trained += len(members)
            log(f"{label}: {len(members)} runs stored ({time.perf_counter() - t0:.0f}s elapsed)")
    return {"planned": len(plans), "skipped": len(done), "trained": trained,
            "seconds": time.perf_counter() - t0}
