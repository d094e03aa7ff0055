"""What `run` and `reproduce` are about to do, said before any training: the plan's run count,
what the store already holds, and an estimate of the cost; a plan far larger than its preset
(an override that multiplied a grid) waits for ``--yes``.

The time estimate is the store's own record: the mean seconds per finished run of the same
experiment (each run's share of its stack's time), times the runs left, over the workers. With
no such record, the cost is given in member-steps (runs x training steps), which is what grows
when a grid grows.
"""

from __future__ import annotations

import os
import sys

from ..errors import InputError

#: A plan more than this many times its preset's run count, or its member-steps (training
#: steps summed over runs), asks for --yes.
FAR_LARGER = 4


def with_dependencies(items) -> list:
    """(experiment, spec) pairs with the experiments they depend on, each once, dependencies first."""
    out, seen = [], set()

    def add(exp, spec):
        for dep, dep_spec in exp.dependencies(spec):
            add(dep, dep_spec)
        key = (exp.name, spec.model_dump_json())
        if key not in seen:
            seen.add(key)
            out.append((exp, spec))
    for exp, spec in items:
        add(exp, spec)
    return out


def _steps(config: dict) -> int:
    train = config.get("train")
    steps = train.get("steps") if isinstance(train, dict) else config.get("steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else 0


def _store_record(path: str, ids: list[str]) -> tuple[set, dict]:
    """(ids already finished, experiment -> mean seconds per finished run) of an existing store,
    read without writing; nothing for a store that does not exist yet."""
    from ..store import Store

    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return set(), {}
    with Store(path, readonly=True) as store:
        done = store.finished(ids)
        means = dict(store.conn.execute(
            "SELECT experiment, AVG(seconds) FROM runs WHERE status='done' AND seconds > 0 "
            "GROUP BY experiment"))
    return done, means


def plan_line(items, store_path: str, workers: int = 1, baseline: tuple | None = None,
              preset: str | None = None, yes: bool = False) -> str:
    """The plan of ``items`` ((experiment, spec) pairs) in one line, for the command to print
    once its other options are checked; refuses a plan more than FAR_LARGER times
    ``baseline`` (its preset's (runs, member-steps)) in either unless ``yes``."""
    items = with_dependencies(items)
    plans = [(exp, p) for exp, spec in items for p in exp.plan(spec)]
    done, means = _store_record(store_path, [p.id for _, p in plans])
    todo = [(exp, p) for exp, p in plans if p.id not in done]
    member_steps = sum(_steps(p.config) for _, p in todo)
    timed = [means[exp.name] for exp, _ in todo if exp.name in means]
    if todo and len(timed) == len(todo):
        cost = f"about {sum(timed) / max(workers, 1) / 60:.1f} min by this store's timings"
    else:
        cost = f"{member_steps:,} member-steps" + (" (no timings in this store yet)" if todo else "")
    names = ", ".join(dict.fromkeys(exp.name for exp, _ in items))
    line = (f"plan: {len(plans)} runs of {names}; {len(done)} already in {store_path}, "
            f"{len(todo)} to train ({cost})")
    runs0, steps0 = baseline or (0, 0)
    steps = sum(_steps(p.config) for _, p in plans)
    grown = [f"{len(plans)} runs, {len(plans) / runs0:.0f}x the {runs0} of preset {preset}"
             if runs0 and len(plans) > FAR_LARGER * runs0 else "",
             f"{steps:,} member-steps, {steps / steps0:.0f}x the {steps0:,} of preset {preset}"
             if steps0 and steps > FAR_LARGER * steps0 else ""]
    grown = [g for g in grown if g]
    if grown and not yes and not _confirmed(line):
        raise InputError("yes", f"the plan has {'; '.join(grown)} ({len(todo)} runs to train): an "
                         "override or spec file multiplied it; pass --yes to train it", "--yes")
    return line


def preset_size(exp, preset: str | None, times: int = 1) -> tuple[int, int] | None:
    """(runs, member-steps) of ``exp``'s preset as shipped (with its dependencies), ``times``
    over: the yardstick of 'far larger'; None without a preset."""
    from ..spec import resolve

    if preset is None:
        return None
    spec = resolve(exp.Spec, exp.name, preset)
    plans = [p for e, s in with_dependencies([(exp, spec)]) for p in e.plan(s)]
    return times * len(plans), times * sum(_steps(p.config) for p in plans)


def total(sizes) -> tuple[int, int]:
    sizes = [s for s in sizes if s]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes)


def _confirmed(line: str) -> bool:
    """Ask at a terminal; anywhere else (a script, CI) the answer is no: pass --yes."""
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        return False
    print(f"{line}\nfar larger than its preset: train it all? [y/N] ", end="", file=sys.stderr,
          flush=True)
    try:
        return input().strip().lower() in ("y", "yes")
    except EOFError:
        return False
