"""`biaslab study FILE.yaml`: a grid of registered tasks x models x training settings, trained as
stacks into the store (resumable), its claims checked, its report page written."""

from __future__ import annotations

from .common import check_parallel, emit, parallel_args, set_threads, store_arg, threads_arg


def add_study_parser(sub) -> None:
    s = sub.add_parser("study", help="run a study file: tasks x models x settings x measures, "
                       "with its claims and a report page")
    s.add_argument("file", help="a study YAML file (see examples/ and docs/studies.md)")
    store_arg(s)
    s.add_argument("--report", help="folder of the study's page (default report/study-NAME)")
    s.add_argument("--device", default="auto", help="auto, cpu or cuda")
    threads_arg(s)
    parallel_args(s)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.add_argument("--json", action="store_true", help="the summary and verdicts as JSON")
    s.set_defaults(fn=cmd_study)


def cmd_study(args) -> int:
    from ..execute import run_experiment
    from ..execute.executors import open_executor
    from ..experiments.claims import check_claims
    from ..store import Store
    from ..study.claims import study_claims
    from ..study.experiment import Study
    from ..study.report import write_study_page
    from ..study.checks import load_study

    set_threads(args.threads)
    spec = load_study(args.file)  # every check of the file, before anything is written
    check_parallel(args)
    exp = Study(spec)
    ids = {p.id for p in exp.plan(spec)}
    claims = study_claims(spec)
    with open_executor(args) as (device, pool), Store(args.store) as store:
        summary = run_experiment(exp, spec, store, device, progress=not args.quiet,
                                 max_members=args.max_members, workers=args.workers, pool=pool)
        checked = check_claims(store, claims, {exp.name: ids}) if claims else []
        table = [r for r in store.table(exp.name) if r["run_id"] in ids]
    page = write_study_page(spec, table, checked, args.report or f"report/study-{spec.name}")
    result = {"study": spec.name, "question": spec.question, **summary, "store": args.store,
              "page": str(page), "claims": [c.as_dict() for c in checked]}

    def human(r):
        print(f"study {r['study']}: {r['question']}")
        print(f"  trained {r['trained']}, skipped {r['skipped']} finished, {r['seconds']:.0f}s; "
              f"store {r['store']}; page {r['page']}")
        for c in r["claims"]:
            print(f"  {c['status']:<12} {c['claim']}: {c['summary']}")

    emit(result, args.json, human)
    return 0
