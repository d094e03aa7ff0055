"""The house rules of the layout: every spec field says what it is (train/ included), experiments import no private
name of another module, every registering module is in the catalog; `biaslab spec` and --only;
a table task built from an array instead of a file."""

import ast
import json
import re
import typing
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import BaseModel

from biaslab import catalog
from biaslab.cli import main
from biaslab.errors import InputError
from biaslab.experiments import get_experiment
from biaslab.registry import EXPERIMENTS
from biaslab.spec import describe, resolve
from biaslab.tasks import make_task
from biaslab.tasks.boolean import all_inputs
from biaslab.tasks.table import TableTask

SRC = Path(__file__).resolve().parents[1] / "src" / "biaslab"


def _spec_classes(cls, seen):
    """``cls`` and every pydantic model its fields hold (nested, in lists and mappings)."""
    if cls in seen:
        return
    seen.add(cls)
    for info in cls.model_fields.values():
        todo = [info.annotation]
        while todo:
            a = todo.pop()
            todo += typing.get_args(a)
            if isinstance(a, type) and issubclass(a, BaseModel):
                _spec_classes(a, seen)


def test_every_experiment_spec_field_has_a_description():
    seen: set = set()
    for entry in EXPERIMENTS.entries():
        _spec_classes(entry.obj.Spec, seen)
    missing = [f"{c.__module__}.{c.__name__}.{name}" for c in seen
               if c.__module__.startswith("biaslab")
               for name, info in c.model_fields.items() if not info.description]
    assert not missing, missing


def test_every_spec_row_of_every_cpu_preset_has_a_description():
    missing = [f"{e.name}: {r['field']}" for e in EXPERIMENTS.entries()
               for r in describe(resolve(e.obj.Spec, e.name, "cpu")) if not r["description"]]
    assert not missing, missing


def test_no_experiment_imports_a_private_name():
    bad = []
    for path in (SRC / "experiments").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                bad += [f"{path.relative_to(SRC)}: {node.module}.{a.name}" for a in node.names
                        if a.name.startswith("_") and a.name != "__future__"]
    assert not bad, bad


REGISTERS = re.compile(r"@register_experiment|@register_claim|\b(TASKS|MODELS)\.register\(|"
                       r"\b_register\(\"|MEASURES\.add\(|@register_model\(")


def test_every_registering_module_is_in_the_catalog():
    listed = set(catalog.TASKS + catalog.MODELS + catalog.MEASURES + catalog.EXPERIMENTS)
    registering = {"biaslab." + ".".join(p.relative_to(SRC).with_suffix("").parts)
                   for p in SRC.rglob("*.py") if p.name != "registry.py"
                   and REGISTERS.search(p.read_text())}
    # the modules that define the decorators
    registering -= {"biaslab.experiments.base", "biaslab.experiments.claims", "biaslab.models.base"}
    assert registering <= listed, sorted(registering - listed)


def test_only_keeps_a_sweep_or_grid_values():
    exp = get_experiment("sharpness-scaling")
    both = exp.plan(resolve(exp.Spec, exp.name, "cpu"))
    only_a = exp.plan(resolve(exp.Spec, exp.name, "cpu", only=["sweeps=A"]))
    assert {p.config["sweep"] for p in both} == {"A", "B"}
    assert {p.config["sweep"] for p in only_a} == {"A"}
    assert {p.id for p in only_a} == {p.id for p in both if p.config["sweep"] == "A"}
    narrow = exp.plan(resolve(exp.Spec, exp.name, "cpu", only=["sweeps=A", "sweeps.A.ns=4,8"]))
    assert {p.config["n"] for p in narrow} == {4, 8} and len(narrow) < len(only_a)
    with pytest.raises(InputError, match="sweeps has no C"):
        resolve(exp.Spec, exp.name, "cpu", only=["sweeps=C"])


def test_spec_command_lists_every_field(capsys):
    assert main(["spec", "lowsens-generalization", "--preset", "cpu", "--json"]) == 0
    rows = {r["field"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["train_sizes"]["value"] == [128, 256, 512]
    assert rows["train.steps"]["value"] == 4000
    assert all(r["description"] for r in rows.values())
    assert main(["spec", "lowsens-generalization", "--only", "train_sizes=256", "--json"]) == 0
    rows = {r["field"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["train_sizes"]["value"] == [256]
    assert main(["spec", "lowsens-generalization", "--only", "train_sizes=7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biaslab: error: only")


def test_table_task_from_an_array_equals_the_file(tmp_path):
    table = np.random.default_rng(0).integers(0, 2, 2 ** 5)
    np.save(tmp_path / "t.npy", table)
    from_file = make_task("table", {"n": 5, "path": str(tmp_path / "t.npy")})
    from_array = TableTask.of(2 * table - 1, 5)  # the +-1 scale is read as g = 1 - 2 f
    x = all_inputs(5)
    want = torch.as_tensor(table, dtype=torch.float32)
    assert torch.equal(from_file.target(from_file.make_state(0), x), want)
    assert torch.equal(from_array.target(from_array.make_state(0), x), 1 - want)
    with pytest.raises(InputError, match="table"):
        TableTask.of(np.zeros(6), 5)
