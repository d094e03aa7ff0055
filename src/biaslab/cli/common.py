"""What every command shares: the argument parser that turns usage errors into one line, output
as text or JSON, the threads / workers / store options, and resolving an experiment's spec."""

from __future__ import annotations

import argparse
import json
import os

from ..errors import InputError

DEFAULT_STORE = os.environ.get("BIASLAB_STORE", "biaslab.sqlite")


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


def set_threads(n: int) -> None:
    import torch

    if n <= 0:
        raise InputError("threads", f"{n} is not positive", "an integer >= 1")
    torch.set_num_threads(n)


def check_parallel(args) -> None:
    if args.workers <= 0:
        raise InputError("workers", f"{args.workers} is not positive", "an integer >= 1")
    if args.max_members is not None and args.max_members <= 0:
        raise InputError("max-members", f"{args.max_members} is not positive", "an integer >= 1")


def spec_and_experiment(name, preset, spec_file, overrides, only=()):
    """The experiment and its resolved spec; plans it once, so bad models, tasks and sizes fail
    here, before any file is touched."""
    from ..experiments import get_experiment
    from ..spec import resolve

    exp = get_experiment(name)
    spec = resolve(exp.Spec, name, preset, spec_file, overrides, only=only)
    exp.plan(spec)
    return exp, spec
