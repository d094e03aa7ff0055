"""House rules of planning (issue 21): one learning-rate precedence in every experiment (an
entry's lr, else its model's ``lr``, else the spec's), and one stack, one shared config (plans of
a group agree on every field that is not a member field, or planning fails loudly)."""

import pytest

from biaslab.execute.plan import RunPlan, shared_config, stacks_of
from biaslab.experiments.common import planned_lr
from biaslab.registry import EXPERIMENTS
from biaslab.spec import resolve

# a dependency's spec inside an experiment's spec: its lr knobs plan the dependency's runs
DEPENDENCY_FIELDS = {"source"}
SPEC_LR, MODEL_LR = 0.0321, 0.0123


def _lr_knobs(tree, path=()):
    """(path, value) of every learning-rate field of a spec dump: ``lr`` (float, or None where
    it falls back), ``parity_lr`` and ``lrs`` (a grid of learning rates)."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        if path == () and key in DEPENDENCY_FIELDS:
            continue
        if key in ("lr", "parity_lr", "lrs") and (value is None or isinstance(value, (float, list))):
            yield path + (key,), value
        elif isinstance(value, (dict, list)):
            yield from _lr_knobs(value, path + (key,))


def _set(tree, path, value):
    for key in path[:-1]:
        tree = tree[key]
    tree[path[-1]] = value


def _planned(exp, dump):
    plans = exp.plan(exp.Spec(**dump))
    list(stacks_of(plans))  # every group agrees on its shared config
    return {p.id: p.config["lr"] for p in plans}


@pytest.mark.parametrize("name", EXPERIMENTS.names())
def test_model_lr_beats_the_spec_lr_in_every_experiment(name):
    exp = EXPERIMENTS.get(name)()
    dump = resolve(exp.Spec, name, "cpu").model_dump()
    knobs = list(_lr_knobs(dump))
    assert knobs, f"{name} has no learning-rate field"
    for path, value in knobs:  # the spec's own lr (or lr grid) everywhere
        if value is not None:
            _set(dump, path, [SPEC_LR] * len(value) if isinstance(value, list) else SPEC_LR)
    base = _planned(exp, dump)
    assert set(base.values()) == {SPEC_LR}
    for path, value in knobs:  # then each model's / entry's lr alone, over the spec's
        if value is not None:
            continue
        _set(dump, path, MODEL_LR)
        now = _planned(exp, dump)
        _set(dump, path, None)
        changed = [lr for rid, lr in now.items() if rid not in base]
        assert changed, f"{name}: {'.'.join(map(str, path))}={MODEL_LR} changed no run"
        assert set(changed) == {MODEL_LR}, (name, path, sorted(set(changed)))
        assert all(lr == SPEC_LR for rid, lr in now.items() if rid in base), (name, path)


def test_planned_lr_precedence():
    assert planned_lr(1e-3) == 1e-3
    assert planned_lr(1e-3, 2e-3) == 2e-3
    assert planned_lr(1e-3, 2e-3, entry_lr=3e-3) == 3e-3
    assert planned_lr(1e-3, None, entry_lr=3e-3) == 3e-3


def test_a_group_whose_plans_disagree_on_a_shared_field_fails_loudly():
    agree = [RunPlan({"seed": s, "lr": 1e-3, "n": 8}, ("g",), "e") for s in (1, 2)]
    assert shared_config(agree) is agree[0].config
    assert len(list(stacks_of(agree, 1))) == 2
    apart = agree + [RunPlan({"seed": 3, "lr": 1e-3, "n": 9}, ("g",), "e")]
    with pytest.raises(ValueError, match=r"differ in \['n'\]"):
        list(stacks_of(apart))
    own = [RunPlan({"seed": 1, "n": n}, ("g",), "e", member_fields=("n",)) for n in (8, 9)]
    assert shared_config(own) is own[0].config
