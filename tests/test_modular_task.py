"""The modular-arithmetic task: exact seeded splits, every op's targets, modular inverses."""

import pytest
import torch

from biaslab.errors import InputError
from biaslab.tasks import make_task
from biaslab.tasks.modular import all_pairs, apply_op, is_prime, modular_inverse


def _pairs_set(x):
    return {(int(a), int(b)) for a, b, _ in x.tolist()}


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_split_is_exact_disjoint_and_has_the_fraction(op):
    t = make_task("modular", {"p": 13, "op": op, "train_fraction": 0.3})
    s = t.make_state(7)
    n = 13 * 12 if op == "/" else 13 * 13
    assert t.n_pairs == n and t.n_train == int(0.3 * n) and t.n_test == n - int(0.3 * n)
    train, test = _pairs_set(s["subset"]), _pairs_set(s["test"])
    assert len(train) == t.n_train and len(test) == t.n_test  # no duplicates
    assert not train & test  # no pair in both
    assert train | test == _pairs_set(all_pairs(13, op))  # every pair in one of them
    assert (s["subset"][:, 2] == 13).all() and (s["test"][:, 2] == 13).all()  # "=" token
    if op == "/":
        assert all(b != 0 for _, b in train | test)


def test_reference_sizes():
    t = make_task("modular", {})
    assert (t.p, t.vocab_size, t.seq_len, t.n_outputs) == (113, 114, 3, 113)
    assert (t.n_train, t.n_test) == (3830, 8939)  # the sheet: 30 % of 12,769 pairs


def test_split_is_seeded():
    t = make_task("modular", {"p": 11})
    a, b, c = t.make_state(1), t.make_state(1), t.make_state(2)
    assert torch.equal(a["subset"], b["subset"]) and torch.equal(a["test"], b["test"])
    assert _pairs_set(a["subset"]) != _pairs_set(c["subset"])
    fixed = make_task("modular", {"p": 11, "split_seed": 5})
    assert torch.equal(fixed.make_state(1)["subset"], fixed.make_state(2)["subset"])
    assert torch.equal(fixed.make_state(1)["subset"], t.make_state(5)["subset"])


def test_targets_of_every_op():
    p = 7
    x = all_pairs(p, "+")
    a, b = x[:, 0].tolist(), x[:, 1].tolist()
    for op, f in (("+", lambda u, v: (u + v) % p), ("-", lambda u, v: (u - v) % p),
                  ("*", lambda u, v: (u * v) % p)):
        t = make_task("modular", {"p": p, "op": op})
        assert t.target({}, x).tolist() == [f(u, v) for u, v in zip(a, b)]


def test_division_uses_modular_inverses():
    p = 13
    b = torch.arange(1, p)
    assert modular_inverse(b, p).tolist() == [pow(int(v), -1, p) for v in b]
    t = make_task("modular", {"p": p, "op": "/"})
    x = all_pairs(p, "/")
    y = t.target({}, x)
    # y = a / b  <=>  y * b = a (mod p), the defining property of division in Z_p
    assert torch.equal((y * x[:, 1]) % p, x[:, 0])
    assert y.tolist() == [(int(u) * pow(int(v), -1, p)) % p for u, v, _ in x.tolist()]
    assert apply_op(torch.tensor(3), torch.tensor(5), "/", p) == (3 * 8) % 13  # 5^-1 = 8 mod 13


def test_full_batch_is_the_whole_train_split_in_order():
    t = make_task("modular", {"p": 11, "train_fraction": 0.4})
    s = t.make_state(3)
    x, y = t.sample(s, torch.tensor(123), t.n_train, "train")
    assert torch.equal(x, s["subset"]) and torch.equal(y, t.target(s, s["subset"]))
    x2, _ = t.sample(s, torch.tensor(999), t.n_train, "train")
    assert torch.equal(x, x2)  # deterministic whatever the key
    xt, _ = t.sample(s, torch.tensor(0), t.n_test, "test")
    assert torch.equal(xt, s["test"])
    small, _ = t.sample(s, torch.tensor(1), 17, "train")  # a smaller batch: drawn from the split
    assert small.shape == (17, 3) and _pairs_set(small) <= _pairs_set(s["subset"])


def test_bad_parameters_name_the_field():
    with pytest.raises(InputError, match="prime"):
        make_task("modular", {"p": 12, "op": "/"})
    with pytest.raises(InputError, match="op"):
        make_task("modular", {"op": "%"})
    with pytest.raises(InputError, match="train_fraction"):
        make_task("modular", {"p": 3, "train_fraction": 0.05})
    assert is_prime(113) and not is_prime(1) and not is_prime(91)
