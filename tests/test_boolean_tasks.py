"""Boolean tasks: targets, truth tables, subsets, and validation."""

import pytest
import torch
from torch.func import vmap

from biaslab import rng
from biaslab.errors import InputError
from biaslab.registry import TASKS
from biaslab.tasks import make_task
from biaslab.tasks.boolean import all_inputs, index_of


def test_registry_names():
    for name in ["parity", "sparse_parity", "majority", "first", "mean", "random", "degree", "junta"]:
        assert name in TASKS


def test_index_roundtrip_little_endian():
    x = all_inputs(5)
    assert torch.equal(index_of(x), torch.arange(32))
    assert x[1].tolist() == [1, 0, 0, 0, 0]  # bit 0 of index 1 is input 0


@pytest.mark.parametrize("name,params,fn", [
    ("parity", {"n": 7}, lambda x: x.sum(-1) % 2),
    ("majority", {"n": 6}, lambda x: (x.sum(-1) > 3).long()),  # ties -> 0
    ("first", {"n": 5}, lambda x: x[:, 0]),
    ("sparse_parity", {"n": 8, "positions": [1, 4, 6]}, lambda x: (x[:, 1] + x[:, 4] + x[:, 6]) % 2),
])
def test_targets_match_definition(name, params, fn):
    task = make_task(name, params)
    state = task.make_state(0)
    x, y = task.sample(state, rng.key_of(3), 500)
    assert x.shape == (500, params["n"]) and set(x.unique().tolist()) <= {0, 1}
    assert torch.equal(y.long(), fn(x))


def test_subset_is_distinct_fixed_and_train_only():
    task = make_task("random", {"n": 8, "train_size": 40, "subset_seed": 2, "function_seed": 1})
    state = task.make_state(0)
    assert index_of(state["subset"]).unique().numel() == 40
    x, _ = task.sample(state, rng.key_of(1), 2000, "train")
    assert set(index_of(x).tolist()) <= set(index_of(state["subset"]).tolist())
    xt, _ = task.sample(state, rng.key_of(1), 2000, "test")
    assert index_of(xt).unique().numel() > 200  # uniform over the cube
    again = task.make_state(0)
    assert torch.equal(again["subset"], state["subset"]) and torch.equal(again["table"], state["table"])


def test_seeds_change_functions():
    t1 = make_task("random", {"n": 6, "function_seed": 1})
    t2 = make_task("random", {"n": 6, "function_seed": 2})
    assert not torch.equal(t1.truth_table(t1.make_state(0)), t2.truth_table(t2.make_state(0)))


def test_junta_depends_on_k_bits_only():
    task = make_task("junta", {"n": 9, "k": 3})
    state = task.make_state(4)
    table = task.truth_table(state)
    x = all_inputs(9)
    relevant = set(state["positions"].tolist())
    for i in range(9):
        flipped = table[index_of(x ^ (torch.arange(9) == i).long())]
        assert bool((flipped != table).any()) == (i in relevant) or i in relevant


def test_sampling_vmaps_over_members():
    task = make_task("sparse_parity", {"n": 10, "k": 2})
    states = [task.make_state(s) for s in range(3)]
    stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]}
    keys = torch.tensor([5, 6, 7])
    xb, yb = vmap(lambda s, k: task.sample(s, k, 16))(stacked, keys)
    for i in range(3):
        x, y = task.sample(states[i], keys[i], 16)
        assert torch.equal(xb[i], x) and torch.equal(yb[i], y)


@pytest.mark.parametrize("name,params,field", [
    ("parity", {"n": 0}, "parity.n"),
    ("parity", {"n": "abc"}, "parity.n"),
    ("parity", {"n": 4, "bogus": 1}, "parity.bogus"),
    ("sparse_parity", {"n": 4, "k": 9}, "sparse_parity"),
    ("random", {"n": 30}, "n"),
    ("random", {"n": 3, "train_size": 9}, "random"),
])
def test_bad_params_name_the_field(name, params, field):
    with pytest.raises(InputError) as e:
        make_task(name, params)
    assert str(e.value).startswith(field)


def test_unknown_task_lists_accepted():
    with pytest.raises(InputError) as e:
        make_task("nope", {})
    assert "parity" in str(e.value) and "unknown task" in str(e.value)
