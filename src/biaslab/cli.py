"""The `biaslab` command line. Human output by default, ``--json`` for machines.

Bad input of any kind ends in one line on stderr naming the field and the accepted values, with
exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import sys

from .errors import InputError

DEFAULT_STORE = os.environ.get("BIASLAB_STORE", "biaslab.sqlite")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors become one line and exit code 2 like every other bad input."""

    def error(self, message):
        raise InputError("arguments", message, f"see `{self.prog} --help`")


def _emit(obj, as_json: bool, human) -> None:
    if as_json:
        print(json.dumps(obj, indent=None if isinstance(obj, list) else 2, default=_jsonable))
    else:
        human(obj)


def _jsonable(v):
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


# -- list ------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from .registry import CLAIMS, EXPERIMENTS, MEASURES, MODELS, TASKS, load_all

    load_all()
    data = {kind: [{"name": e.name, "description": e.description} for e in reg.entries()]
            for kind, reg in [("tasks", TASKS), ("models", MODELS), ("measures", MEASURES),
                              ("experiments", EXPERIMENTS), ("claims", CLAIMS)]}

    def human(d):
        for kind, entries in d.items():
            print(f"{kind}:")
            width = max((len(e["name"]) for e in entries), default=0)
            for e in entries:
                print(f"  {e['name']:<{width}}  {e['description']}")
    _emit(data, args.json, human)
    return 0


# -- sample ----------------------------------------------------------------------------------
def cmd_sample(args) -> int:
    from . import rng
    from .spec import parse_overrides
    from .tasks import make_task

    if args.count <= 0:
        raise InputError("count", f"{args.count} is not positive", "an integer >= 1")
    task = make_task(args.task, parse_overrides(args.params, "task"))
    task.check_split(args.split)
    state = task.make_state(args.seed)
    x, y = task.sample(state, rng.key_of(args.seed), args.count, args.split)
    rows = [{"input": xi, "target": yi} for xi, yi in zip(x.tolist(), _targets(y, task))]

    describe = getattr(task, "describe_example", None)  # tasks with a readable form (linalg)

    def human(rs):
        for i, r in enumerate(rs):
            if describe is not None:
                print(describe(x[i], y[i]), end="\n\n")
            else:
                print(" ".join(map(str, r["input"])), "->", r["target"])
    _emit(rows, args.json, human)
    return 0


def _targets(y, task):
    vals = y.tolist()
    if task.target_kind == "binary":
        return [int(v) for v in vals]
    return vals


# -- measure ---------------------------------------------------------------------------------
def _load_table(path: str):
    import numpy as np
    import torch

    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("table", f"{path} does not exist", "a .npy file") from None
    except (ValueError, OSError) as exc:
        raise InputError("table", f"{path} is not a readable .npy array ({exc})", "a .npy file") from None
    if arr.ndim != 1:
        raise InputError("table", f"shape {arr.shape} is not one-dimensional", "a 1-D array of length 2^n")
    size = arr.shape[0]
    if size < 2 or size & (size - 1):
        raise InputError("table", f"length {size} is not a power of two", "2^n entries, n >= 1")
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
        raise InputError("table", f"dtype {arr.dtype} is not numeric", "values in {0,1} or {-1,+1}")
    values = set(np.unique(arr).tolist())
    if not (values <= {0, 1} or values <= {-1, 1}):
        bad = sorted(values - {0, 1, -1})[:3]
        raise InputError("table", f"values {bad} are not Boolean", "values in {0,1} or {-1,+1}")
    return torch.as_tensor(arr.astype("float64")), int(math.log2(size))


def cmd_measure(args) -> int:
    from .measure.fourier import degree_profile, fourier_degree
    from .measure.sensitivity import average_sensitivity, sampled_sensitivity
    from .spec import parse_overrides
    from .tasks import make_task
    from .tasks.boolean import MAX_TABLE_N, BooleanTask
    from . import rng

    if args.table and args.task:
        raise InputError("table", "give a TASK or --table FILE, not both", "one of them")
    if args.table:
        if args.params:
            raise InputError("table", "key=value parameters apply to a task, not a table", "none")
        table, n = _load_table(args.table)
        result = {"source": args.table, "n": n}
    else:
        if not args.task:
            raise InputError("task", "missing", "a Boolean task name or --table FILE")
        task = make_task(args.task, parse_overrides(args.params, "task"))
        if not isinstance(task, BooleanTask):
            raise InputError("task", f"{args.task} is not a Boolean task",
                             "parity, sparse_parity, majority, first, mean, random, degree, junta")
        n = task.n
        state = task.make_state(args.seed)
        result = {"task": args.task, **task.params.model_dump(exclude_none=True)}
        if n > MAX_TABLE_N:
            if args.what != "sensitivity":
                raise InputError("n", f"{n} too large for an exact spectrum", f"n <= {MAX_TABLE_N}")
            est = sampled_sensitivity(lambda x: task.target(state, x), n, args.samples,
                                      rng.key_of(args.seed))
            result.update({"average_sensitivity": float(est["mean"]), "exact": False,
                           "stderr": float(est["stderr"]), "ci95": [float(est["low"]), float(est["high"])],
                           "samples": args.samples})
            return _print_measure(result, args)
        table = task.truth_table(state).double()
    if args.what == "sensitivity":
        result.update({"average_sensitivity": float(average_sensitivity(table)), "exact": True})
    else:
        prof = degree_profile(table)
        result.update({"degree_profile": [float(v) for v in prof], "degree": int(fourier_degree(table))})
    return _print_measure(result, args)


def _print_measure(result, args) -> int:
    def human(r):
        for k, v in r.items():
            if k == "degree_profile":
                print("weight by degree:")
                for d, w in enumerate(v):
                    print(f"  {d:>3}  {w:.6g}  {'#' * int(round(40 * w))}")
            else:
                print(f"{k}: {v}")
    _emit(result, args.json, human)
    return 0


# -- run / reproduce -------------------------------------------------------------------------
def _spec_and_experiment(name, preset, spec_file, overrides):
    from .experiments import get_experiment
    from .registry import load_all
    from .spec import resolve

    load_all()
    exp = get_experiment(name)
    spec = resolve(exp.Spec, name, preset, spec_file, overrides)
    exp.plan(spec)  # validates models, tasks and sizes before any file is touched
    return exp, spec


def _set_threads(n: int) -> None:
    import torch

    if n <= 0:
        raise InputError("threads", f"{n} is not positive", "an integer >= 1")
    torch.set_num_threads(n)


def _check_parallel(args) -> None:
    if args.workers <= 0:
        raise InputError("workers", f"{args.workers} is not positive", "an integer >= 1")
    if args.max_members is not None and args.max_members <= 0:
        raise InputError("max-members", f"{args.max_members} is not positive", "an integer >= 1")


def cmd_run(args) -> int:
    from .execute import run_experiment
    from .execute.executors import open_executor
    from .store import Store

    _set_threads(args.threads)
    exp, spec = _spec_and_experiment(args.experiment, args.preset, args.spec, args.overrides)
    _check_parallel(args)
    with open_executor(args) as (device, pool), Store(args.store) as store:
        summary = run_experiment(exp, spec, store, device, progress=not args.quiet,
                                 max_members=args.max_members, workers=args.workers, pool=pool)
    _emit(summary, args.json, lambda s: print(
        f"{exp.name}: trained {s['trained']}, skipped {s['skipped']} finished, "
        f"{s['seconds']:.0f}s; store {args.store}"))
    return 0


def cmd_reproduce(args) -> int:
    from .execute import run_experiment
    from .execute.executors import open_executor
    from .registry import CLAIMS, load_all
    from .store import Store

    load_all()
    _set_threads(args.threads)
    _check_parallel(args)
    if args.all == bool(args.claims):
        raise InputError("claims", "name claims or pass --all (not both)", ", ".join(CLAIMS.names()))
    claims = [CLAIMS.get(c) for c in (CLAIMS.names() if args.all else args.claims)]
    preset = args.preset or "cpu"
    plans = {}
    for claim in claims:
        if claim.experiment not in plans:
            plans[claim.experiment] = _spec_and_experiment(claim.experiment, preset, None, args.overrides)
    results = []
    with open_executor(args) as (device, pool), Store(args.store) as store:
        for name, (exp, spec) in plans.items():
            run_experiment(exp, spec, store, device, progress=not args.quiet,
                           max_members=args.max_members, workers=args.workers, pool=pool)
        for claim in claims:
            exp, spec = plans[claim.experiment]
            ids = {p.id for p in exp.plan(spec)}
            table = [r for r in store.table(claim.experiment) if r["run_id"] in ids]
            v = claim.check(table)
            store.save_verdict(claim.name, claim.experiment, v.status, v.summary, v.numbers)
            results.append({"claim": claim.name, "experiment": claim.experiment, "preset": preset,
                            "status": v.status, "summary": v.summary, "numbers": v.numbers,
                            "statement": claim.statement, "paper": claim.paper})
        if args.report:
            from .report.html import write_report

            page = write_report(store, args.report)
            print(f"report: {page}", file=sys.stderr)

    def human(rs):
        for r in rs:
            print(f"[{r['status']}] {r['claim']} (preset {r['preset']})")
            print(f"    claim:    {r['statement']}")
            print(f"    measured: {r['summary']}")
            print(f"    paper:    {r['paper']}")
    _emit(results, args.json, human)
    return 0


# -- runs / report / export --------------------------------------------------------------------
def cmd_runs(args) -> int:
    from .store import Store

    with Store(args.store, create=False) as store:
        runs = store.runs(args.experiment)
    rows = [{"id": r["id"], "experiment": r["experiment"], "status": r["status"],
             "seconds": r["seconds"], "metrics": r["metrics"]} for r in runs]

    def human(rs):
        if not rs:
            print("(no runs)")
        for r in rs:
            keys = [k for k in ("fitted", "as_learned", "as_random", "sharpness", "acc",
                                "inferential_acc", "symmetric_acc") if k in r["metrics"]]
            shown = " ".join(f"{k}={r['metrics'][k]:.4g}" for k in keys if r["metrics"][k] is not None)
            print(f"{r['id']}  {r['experiment']:<28} {r['status']:<8} {shown}")
    _emit(rows, args.json, human)
    return 0


def cmd_report(args) -> int:
    from .report.html import write_report
    from .store import Store

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError("out", f"{args.out} is a file", "a folder (created if missing)")
    with Store(args.store, create=False) as store:
        page = write_report(store, args.out)
    print(f"report written to {page}")
    return 0


def cmd_export(args) -> int:
    from .store import Store

    if os.path.isdir(args.out):
        raise InputError("out", f"{args.out} is a folder", "a .csv or .parquet file path")
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise InputError("out", f"the folder of {args.out} does not exist", "a path in an existing folder")
    with Store(args.store, create=False) as store:
        path = store.export(args.out, args.experiment)
    print(f"exported to {path}")
    return 0


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="biaslab", description="A laboratory for the inductive biases of neural networks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("list", help="registered tasks, models, measures, experiments and claims")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("sample", help="draw examples from a task")
    s.add_argument("task", help="task name (see `biaslab list`)")
    s.add_argument("params", nargs="*", help="task parameters as key=value, e.g. n=12")
    s.add_argument("--split", default="train", help="train or test")
    s.add_argument("--count", type=int, default=8, help="number of examples")
    s.add_argument("--seed", type=int, default=0, help="seed of the task state and the draw")
    s.add_argument("--json", action="store_true", help="a JSON list of {input, target}")
    s.set_defaults(fn=cmd_sample)

    s = sub.add_parser("measure", help="measure a Boolean function: sensitivity or fourier")
    s.add_argument("what", choices=["sensitivity", "fourier"], help="which measure")
    s.add_argument("task", nargs="?", help="Boolean task name")
    s.add_argument("params", nargs="*", help="task parameters as key=value")
    s.add_argument("--table", help=".npy truth table of length 2^n, values in {0,1} or {-1,+1}, "
                                   "bit i of the index = input i")
    s.add_argument("--seed", type=int, default=0, help="seed of random targets")
    s.add_argument("--samples", type=int, default=20000, help="Monte-Carlo samples when n > 24")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    s.set_defaults(fn=cmd_measure)

    def threads_arg(sp):
        sp.add_argument("--threads", type=int, default=int(os.environ.get("BIASLAB_THREADS", 1)),
                        help="CPU intra-op threads (default 1: the lab's models are small, and "
                             "extra OpenMP threads cost more than they give, badly so on a busy machine)")

    def parallel_args(sp):
        sp.add_argument("--workers", type=int, default=1,
                        help="CPU: train this many stacks at once in worker processes")
        sp.add_argument("--max-members", type=int, help="largest stack (default: one stack per group)")
        from .execute.executors import add_executor_arguments

        add_executor_arguments(sp)

    def store_arg(sp):
        sp.add_argument("--store", default=DEFAULT_STORE, help=f"SQLite store (default {DEFAULT_STORE})")

    s = sub.add_parser("run", help="run an experiment (finished runs are skipped)")
    s.add_argument("experiment", help="experiment name (see `biaslab list`)")
    s.add_argument("overrides", nargs="*", help="spec overrides as dotted key=value")
    s.add_argument("--preset", default="cpu", help="cpu, gpu or paper (default cpu)")
    s.add_argument("--spec", help="YAML file with spec values (applied over the preset)")
    store_arg(s)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    threads_arg(s)
    parallel_args(s)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("reproduce", help="run what claims need, then check them")
    s.add_argument("claims", nargs="*", help="claim names (see `biaslab list`)")
    s.add_argument("--all", action="store_true", help="every registered claim")
    s.add_argument("--preset", default="cpu", help="cpu, gpu or paper (default cpu)")
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   help="spec override key=value applied to every experiment (repeatable)")
    store_arg(s)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    threads_arg(s)
    parallel_args(s)
    s.add_argument("--report", help="also write the HTML report to this folder")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_reproduce)

    s = sub.add_parser("runs", help="what the store holds")
    store_arg(s)
    s.add_argument("--experiment", help="only this experiment")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_runs)

    s = sub.add_parser("report", help="write one HTML page with every figure and the claims table")
    store_arg(s)
    s.add_argument("--out", default="report", help="output folder (default ./report)")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("export", help="export finished runs to CSV (or Parquet with pyarrow)")
    store_arg(s)
    s.add_argument("--out", required=True, help="a .csv or .parquet path")
    s.add_argument("--experiment", help="only this experiment")
    s.set_defaults(fn=cmd_export)

    from .doctor import add_doctor_parser

    add_doctor_parser(sub)
    return p


def _one_line(message) -> str:
    """An error message on one line, whatever the input it quotes holds (newlines escaped)."""
    return str(message).replace("\r", "\\r").replace("\n", "\\n")


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        # key=value words may come after options (`run exp --preset cpu n=3`); argparse
        # leaves those over, so hand them to the command's key=value list.
        target = next((a for a in ("overrides", "params") if hasattr(args, a)), None)
        rest = [w for w in extra if not (target and "=" in w and not w.startswith("-"))]
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if target:
            setattr(args, target, list(getattr(args, target) or []) + [w for w in extra if w not in rest])
        return args.fn(args)
    except InputError as exc:
        print(f"biaslab: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("biaslab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` and closed early: not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (OSError, sqlite3.Error) as exc:
        # A full disk, a failed write, a lost mount: the store's transactions leave every run
        # either whole or absent, so say what failed and that rerunning resumes.
        what = f"{exc.strerror}: {exc.filename}" if getattr(exc, "strerror", None) else str(exc)
        print(f"biaslab: error: I/O failed ({_one_line(what)}); runs finished before it are kept "
              "in the store: fix the cause and rerun the same command to resume", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
