"""Commands that train, check and read the store: run, reproduce, runs, report, export."""

from __future__ import annotations

import os
import sys

from ..errors import InputError
from .common import check_parallel, emit, say_warnings, set_threads, spec_and_experiment
from .plan_notice import plan_line, preset_size, total


def cmd_run(args) -> int:
    from ..execute import run_experiment
    from ..execute.executors import open_executor
    from ..store import Store

    set_threads(args.threads)
    exp, spec = spec_and_experiment(args.experiment, args.preset, args.spec, args.overrides,
                                    args.only)
    check_parallel(args)
    line = plan_line([(exp, spec)], args.store, args.workers, preset_size(exp, args.preset),
                     args.preset, getattr(args, "yes", False))
    with open_executor(args) as (device, pool), Store(args.store) as store:
        say_warnings()
        print(line, file=sys.stderr, flush=True)
        summary = run_experiment(exp, spec, store, device, progress=not args.quiet,
                                 max_members=args.max_members, workers=args.workers, pool=pool)
        if getattr(args, "log", None) == "tensorboard":
            from ..report.tensorboard import write_curves

            n = write_curves(store, exp.name, [p.id for p in exp.plan(spec)], args.log_dir)
            print(f"tensorboard: curves of {n} runs in {args.log_dir}", file=sys.stderr)
    emit(summary, args.json, lambda s: print(
        f"{exp.name}: trained {s['trained']}, skipped {s['skipped']} finished, "
        f"{s['seconds']:.0f}s; store {args.store}"))
    return 0


def cmd_reproduce(args) -> int:
    """Run what the claims need under one preset, check them on exactly those runs (the one
    claim path: ``experiments.claims.check_claims``, which stores each verdict), print the
    verdicts, and with --report write the page that shows the same stored verdicts."""
    from ..execute.batch import run_experiments
    from ..execute.executors import open_executor
    from ..experiments.claims import check_claims, replicate_statuses
    from ..experiments.provenance import replicate_spec
    from ..registry import CLAIMS, EXPERIMENTS
    from ..store import Store

    set_threads(args.threads)
    check_parallel(args)
    experiments = getattr(args, "experiment", [])
    if sum((args.all, bool(args.claims), bool(experiments))) != 1:
        raise InputError("claims", "name claims, or pass --all, or --experiment NAME (one of them)",
                         ", ".join(CLAIMS.names()))
    names = list(args.claims)
    for e in experiments:
        EXPERIMENTS.get(e)  # an unknown experiment ends in one line naming the accepted ones
        mine = [n for n in CLAIMS.names() if CLAIMS.get(n).experiment == e]
        if not mine:
            raise InputError("experiment", f"{e} has no claims; experiments with claims",
                             ", ".join(sorted({CLAIMS.get(n).experiment for n in CLAIMS.names()})))
        names += mine
    claims = [CLAIMS.get(c) for c in (CLAIMS.names() if args.all else dict.fromkeys(names))]
    preset = args.preset or "cpu"
    reps = getattr(args, "replicates", 1) or 1
    if reps < 1:
        raise InputError("replicates", f"{reps} is not positive", "an integer >= 1 (1: no reruns)")
    plans = {}
    for claim in claims:
        if claim.experiment not in plans:
            plans[claim.experiment] = spec_and_experiment(claim.experiment, preset, None,
                                                          args.overrides)
    # replicate k trains every experiment on its k-th disjoint seed set (provenance.replicate_spec)
    replicas = [{name: (exp, replicate_spec(spec, k)) for name, (exp, spec) in plans.items()}
                for k in range(reps)]
    todo = [pair for rep in replicas for pair in rep.values()]
    baseline = total(preset_size(exp, preset, reps) for exp, _ in plans.values())
    line = plan_line(todo, args.store, args.workers, baseline, preset, getattr(args, "yes", False))
    with open_executor(args) as (device, pool), Store(args.store) as store:
        say_warnings()
        print(line, file=sys.stderr, flush=True)
        finished = []

        def done(exp, s):  # one line per experiment as it completes: where a long --all is
            finished.append(exp.name)
            print(f"[{len(finished)}/{len(todo)}] {exp.name}: trained {s['trained']}, skipped "
                  f"{s['skipped']} finished, done at {s['seconds']:.0f}s", file=sys.stderr)

        run_experiments(todo, store, device, progress=not args.quiet,
                        max_members=args.max_members, workers=args.workers, pool=pool,
                        on_done=done)
        run_ids = [{name: {p.id for p in exp.plan(spec)} for name, (exp, spec) in rep.items()}
                   for rep in replicas]
        others = replicate_statuses(store, claims, run_ids[1:]) if reps > 1 else None
        specs = {name: spec for name, (_, spec) in plans.items()}
        results = [c.as_dict() for c in check_claims(store, claims, run_ids[0], preset, specs, others)]
        if args.report:
            from ..report.html import write_report

            page = write_report(store, args.report)
            print(f"report: {page}", file=sys.stderr)

    def human(rs):
        for r in rs:
            kind = " (observation: not counted)" if r["kind"] == "observation" else ""
            stable = f", {r['stability']} over {len(r['replicates'])} seed sets " \
                     f"({' '.join(r['replicates'])})" if r.get("replicates") else ""
            print(f"[{r['status']}] {r['claim']}{kind} (preset {r['preset']}, {r['runs']} runs{stable})")
            print(f"    claim:    {r['statement']}")
            print(f"    measured: {r['summary']}")
            if r["bars"]:
                print("    bars:     " + "; ".join(f"{b['what']} {b['value']} ({b['source']})"
                                                  for b in r["bars"]))
            print(f"    paper:    {r['paper']}")
            if r["scale"]:
                print(f"    scale:    {', '.join(r['scale'])}")
    emit(results, args.json, human)
    return 0


# -- runs / report / export --------------------------------------------------------------------
def cmd_runs(args) -> int:
    from ..store import Store

    from ..store.query import filter_runs, parse_where

    where = parse_where(getattr(args, "where", []))
    with Store(args.store, readonly=True) as store:
        runs = filter_runs(store.runs(args.experiment, getattr(args, "status", None)), where)
    rows = [{"id": r["id"], "experiment": r["experiment"], "status": r["status"],
             "seconds": r["seconds"], "config": r["config"], "metrics": r["metrics"],
             **({"error": r["error"]} if r.get("error") else {})} for r in runs]

    def human(rs):
        if not rs:
            print("(no runs)")
        for r in rs:
            keys = [k for k in ("fitted", "as_learned", "as_random", "sharpness", "acc",
                                "inferential_acc", "symmetric_acc") if k in r["metrics"]]
            shown = " ".join(f"{k}={r['metrics'][k]:.4g}" for k in keys if r["metrics"][k] is not None)
            print(f"{r['id']}  {r['experiment']:<28} {r['status']:<8} {shown or r.get('error', '')}")
    emit(rows, args.json, human)
    return 0


def cmd_report(args) -> int:
    from ..report.html import write_report
    from ..store import Store

    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError("out", f"{args.out} is a file", "a folder (created if missing)")
    with Store(args.store, readonly=True) as store:
        page = write_report(store, args.out)
    print(f"report written to {page}")
    if getattr(args, "open", False):
        open_in_browser(page)
    return 0


def open_in_browser(page) -> bool:
    """Open ``page`` in the user's web browser when one is available; say so when none is (a
    server without a display): the report is written either way."""
    import webbrowser
    from pathlib import Path

    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        browser = None
    if browser is None or not browser.open(Path(page).resolve().as_uri()):
        print(f"no web browser available here: open {page} yourself", file=sys.stderr)
        return False
    return True


def cmd_export(args) -> int:
    from ..store import Store

    from ..store.export import check_out

    if os.path.isdir(args.out):
        raise InputError("out", f"{args.out} is a folder", "a .csv or .parquet file path")
    check_out(args.out)
    if not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise InputError("out", f"the folder of {args.out} does not exist", "a path in an existing folder")
    with Store(args.store, readonly=True) as store:
        path = store.export(args.out, args.experiment)
    print(f"exported to {path}")
    return 0


