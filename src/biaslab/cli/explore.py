"""Commands that look at the lab without training: list, sample, measure, spec."""

from __future__ import annotations

import math

from ..errors import InputError
from .common import emit


# -- list ------------------------------------------------------------------------------------
def cmd_list(args) -> int:
    from ..registry import CLAIMS, EXPERIMENTS, MEASURES, MODELS, TASKS

    data = {kind: [{"name": e.name, "description": e.description} for e in reg.entries()]
            for kind, reg in [("tasks", TASKS), ("models", MODELS), ("measures", MEASURES),
                              ("experiments", EXPERIMENTS)]}
    for kind in ("claim", "observation"):  # each with its statistic, comparison and sourced bars
        data[kind + "s"] = [{**c.as_dict(), "description": c.statement}
                            for c in map(CLAIMS.get, CLAIMS.names()) if c.kind == kind]

    def human(d):
        for kind, entries in d.items():
            print(f"{kind}:" if kind != "observations" else "observations (true by construction, "
                  "never counted in verdict totals):")
            width = max((len(e["name"]) for e in entries), default=0)
            for e in entries:
                print(f"  {e['name']:<{width}}  {e['description']}")
                for b in e.get("bars", []):
                    print(f"  {'':<{width}}    bar: {b['what']} {b['value']} -- {b['source']}")
    emit(data, args.json, human)
    return 0


# -- sample ----------------------------------------------------------------------------------
def cmd_sample(args) -> int:
    from .. import rng
    from ..spec import parse_overrides
    from ..tasks import make_task

    from ..limits import check_sample, check_seed, check_values

    if args.count <= 0:
        raise InputError("count", f"{args.count} is not positive", "an integer >= 1")
    check_seed("seed", args.seed)
    params = parse_overrides(args.params, "task")
    check_values(params)
    task = make_task(args.task, params)
    task.check_split(args.split)
    check_sample(task, args.count)
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
    emit(rows, args.json, human)
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
    from ..measure.fourier import degree_profile, fourier_degree
    from ..measure.sensitivity import average_sensitivity, sampled_sensitivity
    from ..spec import parse_overrides
    from ..tasks import make_task
    from ..tasks.boolean import MAX_TABLE_N, BooleanTask
    from .. import rng
    from ..limits import check_sampled_sensitivity, check_seed, check_values

    check_seed("seed", args.seed)
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
        params = parse_overrides(args.params, "task")
        check_values(params)
        task = make_task(args.task, params)
        if not isinstance(task, BooleanTask):
            raise InputError("task", f"{args.task} is not a Boolean task",
                             "parity, sparse_parity, majority, first, mean, random, degree, junta")
        n = task.n
        state = task.make_state(args.seed)
        result = {"task": args.task, **task.params.model_dump(exclude_none=True)}
        if n > MAX_TABLE_N:
            if args.what != "sensitivity":
                raise InputError("n", f"{n} too large for an exact spectrum", f"n <= {MAX_TABLE_N}")
            if args.samples < 2:
                raise InputError("samples", f"{args.samples} is too few for a standard error", ">= 2")
            check_sampled_sensitivity(n, args.samples)
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
    emit(result, args.json, human)
    return 0




# -- spec ------------------------------------------------------------------------------------
def cmd_spec(args) -> int:
    """Every field of an experiment's resolved spec: its value and what it means."""
    from ..spec import describe
    from .common import spec_and_experiment

    exp, spec = spec_and_experiment(args.experiment, args.preset, args.spec, args.overrides,
                                    args.only)
    rows = [{k: r[k] for k in ("field", "value", "description")} for r in describe(spec)]

    def human(rs):
        print(f"{exp.name} (preset {args.preset or 'none'}): {exp.description}")
        width = max(len(r["field"]) for r in rs)
        for r in rs:
            value = "" if r["value"] is None and r["field"] in groups else repr(r["value"])
            text = f"  {r['field']:<{width}}  {value}"
            print(f"{text}  # {r['description']}" if r["description"] else text)

    groups = {r["field"] for r in describe(spec) if r["group"]}
    emit(rows, args.json, human)
    return 0
