"""The house rules as tests (issue 21): a module imports only from its own floor or below, no import
cycle (lazy imports inside functions included), no source file over 400 lines, and a smoke run of
every registered experiment: a tiny version of its cpu preset is planned, trained, stored, and its
claims are checked and stored."""

import ast
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from biaslab.execute.local import run_experiment
from biaslab.experiments.claims import check_claims
from biaslab.registry import CLAIMS, EXPERIMENTS
from biaslab.spec import resolve
from biaslab.store import Store

SRC = Path(__file__).resolve().parents[1] / "src" / "biaslab"
MAX_LINES = 400

# The floors of the house, ground floor first: a room (a top-level module or package of biaslab)
# imports only rooms on its own floor or below. "biaslab" is the package root (its __version__).
FLOORS = [
    {"biaslab", "errors", "rng", "catalog"},
    {"registry", "spec"},
    {"tasks", "models"},
    {"train"},
    {"measure", "store", "plots", "hf"},  # hf: measures of Hugging Face models
    {"execute", "limits"},  # limits: sizes checked before a command allocates (cli uses it)
    {"experiments"},
    {"report", "doctor", "study"},  # study: a user study, reported like an experiment
    {"cli", "__main__"},
]
FLOOR_OF = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str) -> set[str]:
    """The biaslab modules ``name`` imports anywhere in its file (in functions too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            candidates = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        else:
            continue
        found |= {c for c in candidates if c in MODULES and c != name}
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _room(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_room_has_a_floor():
    assert {_room(m) for m in MODULES} <= set(FLOOR_OF), {_room(m) for m in MODULES} - set(FLOOR_OF)


def test_a_module_imports_only_from_its_floor_or_below():
    up = [f"{m} (floor {FLOOR_OF[_room(m)]}) imports {t} (floor {FLOOR_OF[_room(t)]})"
          for m, targets in GRAPH.items() for t in targets if FLOOR_OF[_room(t)] > FLOOR_OF[_room(m)]]
    assert not up, up


def test_no_import_cycles_lazy_imports_included():
    cycles, state = [], {}  # state: 1 = on the current path, 2 = finished

    def visit(name, path):
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


# -- smoke: every registered experiment, end to end, on a tiny version of its cpu preset ---------
TINY_TRAIN = {"steps": 2, "epochs": 2, "eval_every": 1}


def _tiny_steps(tree: dict) -> None:
    for key, value in tree.items():
        if key in TINY_TRAIN and isinstance(value, int) and not isinstance(value, bool):
            tree[key] = TINY_TRAIN[key]
        elif isinstance(value, dict):
            _tiny_steps(value)


def _axes(tree: dict, path=()):
    """Paths of the grid axes and seed lists of a spec dump (lists of plain values)."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _axes(value, path + (key,))
        elif isinstance(value, list) and len(value) > 1 and not isinstance(value[0], dict):
            yield path + (key,)


def tiny_spec(exp):
    """The cpu preset with 2 training steps and every grid axis cut to its first value, where the
    spec still validates (a spec may need two values, or one long test length)."""
    values = resolve(exp.Spec, exp.name, "cpu").model_dump()
    _tiny_steps(values)
    for path in list(_axes(values)):
        node = values
        for key in path[:-1]:
            node = node[key]
        whole = node[path[-1]]
        node[path[-1]] = whole[:1]
        try:
            exp.Spec(**values)
        except ValidationError:
            node[path[-1]] = whole
    return exp.Spec(**values)


@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_smoke_every_experiment_stores_runs_and_checks_its_claims(name, tmp_path):
    torch.set_num_threads(1)
    exp = EXPERIMENTS.get(name)()
    spec = tiny_spec(exp)
    claims = [CLAIMS.get(c) for c in CLAIMS.names() if CLAIMS.get(c).experiment == name]
    with Store(tmp_path / "s.sqlite") as store:
        summary = run_experiment(exp, spec, store, "cpu", progress=False, log=lambda msg: None)
        planned = {p.id for p in exp.plan(spec)}
        assert summary["trained"] == len(planned) > 0
        assert {r["run_id"] for r in store.table(name)} == planned
        checked = check_claims(store, claims, {name: planned}, "tiny")
        stored = {v["claim"]: v["status"] for v in store.verdicts()}
    assert [c.claim.name for c in checked] == [c.name for c in claims]
    assert all(stored[c.name] in ("PASS", "FAIL", "INCONCLUSIVE") for c in claims)
