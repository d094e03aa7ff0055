"""The `biaslab` command line. Human output by default, ``--json`` for machines.

Bad input of any kind ends in one line on stderr naming the field and the accepted values, with
exit code 2, before anything is written. Commands live in ``explore.py`` (list, sample, measure,
spec) and ``experiments.py`` (run, reproduce, runs, report, export); ``common.py`` holds what
they share.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from ..errors import InputError, RunsFailed
from .common import DEFAULT_STORE, WARNINGS, Parser, parallel_args, spec_args, store_arg, threads_arg
from .experiments import cmd_export, cmd_report, cmd_reproduce, cmd_run, cmd_runs
from .explore import cmd_list, cmd_sample, cmd_spec
from .hf import add_model_measure_args, cmd_measure_any
from .study import add_study_parser
from ..hf import MEASURES as MODEL_MEASURES
from .results import cmd_results

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="biaslab", description="A laboratory for the inductive biases of neural networks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

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

    s = sub.add_parser("measure", help="measure a Boolean function (sensitivity, fourier) or a Hugging Face model "
                       "(tokenwise, weight-noise, blowup, all) with --model-dir")
    s.add_argument("what", choices=["sensitivity", "fourier", *MODEL_MEASURES], help="which measure")
    s.add_argument("task", nargs="?", help="Boolean task name")
    s.add_argument("params", nargs="*", help="task parameters as key=value")
    s.add_argument("--table", help=".npy truth table of length 2^n, values in {0,1} or {-1,+1}, "
                                   "bit i of the index = input i")
    s.add_argument("--seed", type=int, default=0, help="seed of random targets / of the model measures' draws")
    s.add_argument("--samples", type=int, default=20000, help="Monte-Carlo samples when n > 24")
    s.add_argument("--json", action="store_true", help="machine-readable output")
    add_model_measure_args(s)
    s.set_defaults(fn=cmd_measure_any)

    s = sub.add_parser("run", help="run an experiment (finished runs are skipped)")
    s.add_argument("experiment", help="experiment name (see `biaslab list`)")
    s.add_argument("overrides", nargs="*", help="spec overrides as dotted key=value")
    spec_args(s)
    store_arg(s)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    threads_arg(s)
    parallel_args(s)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--log", choices=["tensorboard"], help="also write the runs' curves to this sink "
                   "(the store stays the record)")
    s.add_argument("--log-dir", default="tensorboard", help="folder of --log tensorboard (default ./tensorboard)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_run)

    s = sub.add_parser("spec", help="every field of an experiment's resolved spec, with its meaning")
    s.add_argument("experiment", help="experiment name (see `biaslab list`)")
    s.add_argument("overrides", nargs="*", help="spec overrides as dotted key=value")
    spec_args(s)
    s.add_argument("--json", action="store_true", help="a JSON list of {field, value, description}")
    s.set_defaults(fn=cmd_spec)

    s = sub.add_parser("reproduce", help="run what claims need, then check them")
    s.add_argument("claims", nargs="*", help="claim names (see `biaslab list`)")
    s.add_argument("--all", action="store_true", help="every registered claim")
    s.add_argument("--experiment", action="append", default=[], metavar="NAME",
                   help="every claim of this experiment (repeatable)")
    s.add_argument("--preset", default="cpu", help="cpu, gpu or paper (default cpu)")
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   help="spec override key=value applied to every experiment (repeatable)")
    store_arg(s)
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    threads_arg(s)
    parallel_args(s)
    s.add_argument("--report", help="also write the HTML report to this folder")
    s.add_argument("--replicates", type=int, default=1, metavar="K",
                   help="rerun the claims on K disjoint seed sets (the preset's and K-1 shifted "
                        "ones) and say whether each verdict is stable or seed-dependent")
    s.add_argument("--quiet", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_reproduce)

    s = sub.add_parser("results", help="the stored verdicts as markdown tables, with provenance and cost")
    store_arg(s)
    s.add_argument("--preset", help="only verdicts checked under this preset")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_results)

    s = sub.add_parser("runs", help="what the store holds")
    store_arg(s)
    s.add_argument("--experiment", help="only this experiment")
    s.add_argument("--status", choices=["done", "running", "failed"],
                   help="only runs in this state (running: started, not finished; failed: crashed, "
                        "with its error)")
    s.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                   help="only runs whose config has KEY=VALUE (dotted keys, repeatable)")
    s.add_argument("--json", action="store_true", help="a JSON list of runs with config and final metrics")
    s.set_defaults(fn=cmd_runs)

    s = sub.add_parser("report", help="write the report folder: claims table, a page per experiment")
    store_arg(s)
    s.add_argument("--out", default="report", help="output folder (default ./report)")
    s.add_argument("--open", action="store_true", help="open the report in a web browser, if one is available")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("export", help="export finished runs to CSV (or Parquet with pyarrow)")
    store_arg(s)
    s.add_argument("--out", required=True, help="a .csv or .parquet path")
    s.add_argument("--experiment", help="only this experiment")
    s.set_defaults(fn=cmd_export)

    add_study_parser(sub)

    from ..doctor import add_doctor_parser

    add_doctor_parser(sub)
    return p


MAX_MESSAGE = 400


def _one_line(message) -> str:
    """An error message on one line, whatever the input it quotes holds: newlines escaped, and
    a long echoed input cut in the middle (its start and the accepted values at the end stay)."""
    text = str(message).replace("\r", "\\r").replace("\n", "\\n")
    if len(text) > MAX_MESSAGE:
        head, tail = text[:MAX_MESSAGE - 150], text[-120:]
        text = f"{head} ...[{len(text) - len(head) - len(tail)} characters cut]... {tail}"
    return text


def main(argv: list[str] | None = None) -> int:
    args = None
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
        WARNINGS.clear()  # bad input ends in exactly one line
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
    except RunsFailed as exc:
        print(f"biaslab: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError):
            return _io_failed(exc)
        # A damaged store (a truncated or overwritten file): rerunning cannot repair it.
        store = getattr(args, "store", None) or "the store"
        print("biaslab: error: " + _one_line(
            f"store: {store} is damaged ({exc}); rerunning cannot repair it (accepted: an intact "
            f"store; `biaslab doctor --store {store}` says what can be saved)"), file=sys.stderr)
        return 2
    except OSError as exc:
        return _io_failed(exc)


def _io_failed(exc) -> int:
    # A full disk, a failed write, a lost mount: the store's transactions leave every run
    # either whole or absent, so say what failed and that rerunning resumes.
    what = f"{exc.strerror}: {exc.filename}" if getattr(exc, "strerror", None) else str(exc)
    print(f"biaslab: error: I/O failed ({_one_line(what)}); runs finished before it are kept "
          "in the store: fix the cause and rerun the same command to resume", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
