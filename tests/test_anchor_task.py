"""Generator invariants of the anchor task on thousands of samples per split."""

import pytest
import torch
from torch.func import vmap

from biaslab import rng
from biaslab.errors import InputError
from biaslab.tasks.anchor import AnchorTask

SHIFT = {1: 5, 2: 1, 3: -2, 4: -8}
N = 4000


def task(**kw):
    return AnchorTask.from_dict(kw, prefix="anchor")


def decode(x):
    """Independent decoder: plain Python over rows (the oracle of the vectorized code)."""
    out = []
    for row in x.tolist():
        idx = [i for i, t in enumerate(row) if t in SHIFT]
        out.append((row, idx))
    return out


@pytest.mark.parametrize("split", ["train", "test"])
def test_invariants(split):
    t = task()
    x, y = t.sample({}, rng.key_of(1), N, split)
    assert x.shape == (N, 9) and x.dtype == torch.int64 and y.shape == (N,)
    pairs = set()
    for (row, idx), target in zip(decode(x), y.tolist()):
        # exactly one adjacent anchor pair, and nothing else from the anchor set
        assert len(idx) == 2 and idx[1] == idx[0] + 1
        pos = idx[0] - 1
        assert 0 <= pos <= 6
        key, a1, a2 = row[pos], row[idx[0]], row[idx[1]]
        assert all(20 <= v <= 99 for i, v in enumerate(row) if i not in idx)
        # key/position split with m = n - 2 = 7
        assert (key % 7 != pos) if split == "train" else (key % 7 == pos)
        expected = key - 6 if (a1, a2) == (3, 4) else key + SHIFT[a1] + SHIFT[a2]
        assert target == expected
        assert 4 <= target <= 109
        pairs.add((a1, a2))
    assert (4, 3) not in pairs
    assert len(pairs) == 15  # every training pair occurs


def test_targets_and_readings():
    t = task()
    x, y = t.sample_pair(rng.key_of(2), 500, (4, 3))
    key = t.locate(x)["key"]
    assert torch.equal(y, key - 10) and torch.equal(t.inferential_target(x), key - 10)
    assert torch.equal(t.symmetric_target(x), key - 6)
    assert bool(((key % 7) != t.locate(x)["pos"]).all())  # train keys by default
    x, y = t.sample({}, rng.key_of(3), 500, "pair:3,4:test")
    loc = t.locate(x)
    assert torch.equal(y, loc["key"] - 6) and bool(((loc["key"] % 7) == loc["pos"]).all())
    assert torch.equal(t.inferential_target(x), loc["key"] - 10)


def test_deterministic_and_vmappable():
    t = task()
    keys = torch.stack([rng.key_of(s) for s in (5, 6, 7)])
    for split in ("train", "test", "pair:4,3"):
        a = t.sample({}, keys[0], 64, split)
        b = t.sample({}, keys[0], 64, split)
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        vx, vy = vmap(lambda k: t.sample({}, k, 64, split))(keys)
        for i in range(3):
            x, y = t.sample({}, keys[i], 64, split)
            assert torch.equal(vx[i], x) and torch.equal(vy[i], y)
    assert not torch.equal(t.sample({}, keys[0], 64)[0], t.sample({}, keys[1], 64)[0])


def test_configurable():
    t = task(anchors={"1": 3, "2": 7}, held_out=[[1, 2]], perturbed={"2,1": 0}, seq_len=6,
             item_min=10, item_max=40, modulus=3, vocab=60)
    x, y = t.sample({}, rng.key_of(0), 2000, "train")
    loc = t.locate(x)
    assert x.shape == (2000, 6)
    pairs = set(zip(loc["a1"].tolist(), loc["a2"].tolist()))
    assert pairs == {(1, 1), (2, 2), (2, 1)}
    expect = loc["key"] + torch.tensor([0, 3, 7])[loc["a1"]] + torch.tensor([0, 3, 7])[loc["a2"]]
    expect = torch.where((loc["a1"] == 2) & (loc["a2"] == 1), loc["key"], expect)
    assert torch.equal(y, expect)
    assert bool(((loc["key"] % 3) != loc["pos"]).all())


def test_bad_params_and_splits():
    for bad in ({"vocab": 100}, {"held_out": ["4,5"]}, {"perturbed": {"4,3": 0}},
                {"anchors": {"25": 1}}, {"foo": 1}):
        with pytest.raises(InputError):
            task(**bad)
    with pytest.raises(InputError):
        task().sample({}, rng.key_of(0), 4, "pair:4,9")
    with pytest.raises(InputError):
        task().check_split("valid")


def test_registered_defaults():
    from biaslab.registry import TASKS

    # the package import is the lead's to add; register by importing the module
    assert "anchor" in TASKS
    t = TASKS.get("anchor").from_dict({}, prefix="anchor")
    assert t.vocab_size == t.n_outputs == 201 and t.seq_len == 9 and t.target_kind == "classes"


def test_fixed_training_set_is_drawn_once_and_batches_come_from_it():
    """Issue 22 item 6: ``train_size`` N fixes N training sequences per member (from its seed,
    or ``data_seed``); every train batch is drawn from them, test and held-out splits stay fresh."""
    task = AnchorTask.from_dict({"train_size": 50})
    s1, s2 = task.make_state(1), task.make_state(2)
    assert s1["train_set"].shape == (50, 9) and not torch.equal(s1["train_set"], s2["train_set"])
    assert torch.equal(s1["train_set"], task.make_state(1)["train_set"])  # drawn from the seed
    same = AnchorTask.from_dict({"train_size": 50, "data_seed": 7})
    assert torch.equal(same.make_state(1)["train_set"], same.make_state(2)["train_set"])
    states = {"train_set": torch.stack([s1["train_set"], s2["train_set"]])}
    xs, ys = vmap(lambda s, k: task.sample(s, k, 200))(states, torch.tensor([3, 4]))
    for x, y, s in zip(xs, ys, (s1, s2)):
        assert (x[:, None, :] == s["train_set"][None]).all(-1).any(-1).all()  # every row from the set
        assert torch.equal(y, task.trained_target(x))
    assert len({tuple(r) for r in xs[0].tolist()}) <= 50
    xt, _ = task.sample(s1, torch.tensor(5), 200, "test")  # test keys: fresh, never in the set
    assert not (xt[:, None, :] == s1["train_set"][None]).all(-1).any()
