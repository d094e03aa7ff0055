"""What every command shares: the argument parser that turns usage errors into one line, output
as text or JSON, the threads / workers / store options, and resolving an experiment's spec."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import InputError

# The store `make demo` writes, so that the README's tour finds the demo's runs.
DEFAULT_STORE = os.environ.get("BIASLAB_STORE", "runs/demo.sqlite")


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one line and exit code 2 like every other bad input."""

    def error(self, message):
        raise InputError("arguments", message, f"see `{self.prog} --help`")


def emit(obj, as_json: bool, human) -> None:
    """Print ``obj`` as JSON (``--json``) or through ``human`` (text for people)."""
    if as_json:
        print(json.dumps(obj, indent=None if isinstance(obj, list) else 2, default=_jsonable))
    else:
        human(obj)


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def threads_arg(sp) -> None:
    sp.add_argument("--threads", type=int, default=int(os.environ.get("BIASLAB_THREADS", 1)),
                    help="CPU intra-op threads (default 1: the lab's models are small, and "
                         "extra OpenMP threads cost more than they give, badly so on a busy machine)")


def parallel_args(sp) -> None:
    sp.add_argument("--yes", action="store_true",
                    help="train a plan even when it is far larger than its preset's")
    sp.add_argument("--workers", type=int, default=1,
                    help="CPU: train this many stacks at once in worker processes")
    sp.add_argument("--max-members", type=int, help="largest stack (default: one stack per group)")
    from ..execute.executors import add_executor_arguments

    add_executor_arguments(sp)


def store_arg(sp) -> None:
    sp.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")


def spec_args(sp, preset_default: str | None = "cpu") -> None:
    """--preset, --spec FILE and --only FIELD=NAMES: how a command picks an experiment's spec."""
    sp.add_argument("--preset", default=preset_default, help="cpu, gpu or paper (default cpu)")
    sp.add_argument("--spec", help="YAML file with spec values (applied over the preset)")
    sp.add_argument("--only", action="append", default=[], metavar="FIELD=NAMES",
                    help="keep only these entries of a sweep or grid axis of the resolved spec, "
                         "e.g. --only sweeps=A or --only ns=4,8 (repeatable)")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _clamped(flag: str, n: int) -> int:
    """``n`` of a per-core option, at most this machine's cores (more only oversubscribes it:
    ``--threads 10000`` drove a 2-core machine to a load average in the thousands)."""
    if n <= 0:
        raise InputError(flag, f"{n} is not positive", "an integer >= 1")
    cores = usable_cores()
    if n > cores:
        WARNINGS.append(f"biaslab: warning: --{flag} {n} is more than this machine's {cores} "
                        f"cores; using {cores}")
        return cores
    return n


#: Warnings said once every input is checked (bad input ends in exactly one line).
WARNINGS: list[str] = []


def say_warnings() -> None:
    while WARNINGS:
        print(WARNINGS.pop(0), file=sys.stderr, flush=True)


def set_threads(n: int) -> None:
    """How a command that computes sets up its process: intra-op threads, and glibc's malloc
    thresholds (``train/allocator.py``: buffers reused across steps, not page-faulted anew)."""
    import torch

    from ..train.allocator import tune_malloc

    torch.set_num_threads(_clamped("threads", n))
    tune_malloc()


def check_parallel(args) -> None:
    args.workers = _clamped("workers", args.workers)
    if args.max_members is not None and args.max_members <= 0:
        raise InputError("max-members", f"{args.max_members} is not positive", "an integer >= 1")


def spec_and_experiment(name, preset, spec_file, overrides, only=()):
    """The experiment and its resolved spec; plans it once, so bad models, tasks and sizes fail
    here, before any file is touched."""
    from ..experiments import get_experiment
    from ..spec import resolve

    exp = get_experiment(name)
    spec = resolve(exp.Spec, name, preset, spec_file, overrides, only=only)
    check_plan(exp, spec)
    return exp, spec


def check_plan(exp, spec) -> list:
    """Plan ``spec`` and refuse what cannot be meant before anything trains: non-finite numbers,
    seeds outside the generator's range, a run that cannot fit in memory, and a list that holds
    a value twice (it would train the same run twice and store it once)."""
    from ..limits import check_run, check_values

    check_values(spec.model_dump())
    plans = exp.plan(spec)
    seen: dict[str, object] = {}
    for p in plans:
        if p.id in seen:
            raise InputError(_repeated_field(spec.model_dump()) or "spec",
                             "holds a value twice, so the plan has the same run twice",
                             "distinct values in every seed list and grid axis")
        seen[p.id] = p
    for p in plans:
        check_run(p.config)
    return plans


def _repeated_field(values, path: str = "") -> str | None:
    """The first list of plain values (a seed list, a grid axis) that holds a value twice."""
    if isinstance(values, dict):
        for k, v in values.items():
            found = _repeated_field(v, f"{path}.{k}" if path else str(k))
            if found:
                return found
    elif isinstance(values, list):
        plain = [json.dumps(v, sort_keys=True) for v in values if not isinstance(v, (dict, list))]
        if len(plain) != len(set(plain)):
            return path
        for v in values:
            found = _repeated_field(v, path)
            if found:
                return found
    return None
