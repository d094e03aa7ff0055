"""Fourier measures against independent oracles: a dense Hadamard matrix, Parseval, known spectra."""

import itertools

import pytest
import torch

from biaslab import rng
from biaslab.errors import InputError
from biaslab.measure.fourier import (
    degree_profile,
    fourier_degree,
    fourier_spectrum,
    fwht,
    is_boolean_table,
    to_pm1,
)
from biaslab.registry import MEASURES
from biaslab.tasks import make_task


def dense_hadamard(n: int) -> torch.Tensor:
    """H[S, x] = (-1)^popcount(x & S), built entry by entry (no butterfly)."""
    L = 1 << n
    H = torch.empty(L, L, dtype=torch.float64)
    for s, x in itertools.product(range(L), range(L)):
        H[s, x] = (-1) ** bin(s & x).count("1")
    return H


def random_pm1(seed: int, shape) -> torch.Tensor:
    bits = rng.randint(rng.key_of(seed), shape, 2)
    return (1 - 2 * bits).to(torch.float64)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6])
def test_fwht_matches_dense_hadamard(n):
    values = rng.normal(rng.key_of(n), (3, 1 << n), torch.float64)
    expected = values @ dense_hadamard(n).T / (1 << n)
    torch.testing.assert_close(fwht(values), expected, rtol=0, atol=1e-12)


def test_fwht_leading_batch_dims_and_integer_input():
    values = rng.randint(rng.key_of(7), (2, 3, 16), 5)  # int64
    out = fwht(values)
    assert out.dtype == torch.float64 and out.shape == (2, 3, 16)
    for i, j in itertools.product(range(2), range(3)):
        torch.testing.assert_close(out[i, j], fwht(values[i, j]))


def test_fwht_is_its_own_inverse_up_to_scale():
    values = rng.normal(rng.key_of(3), (64,), torch.float64)
    torch.testing.assert_close(fwht(fwht(values)) * 64, values, rtol=0, atol=1e-12)


@pytest.mark.parametrize("length", [0, 1, 3, 6, 12])
def test_fwht_rejects_non_power_of_two(length):
    with pytest.raises(InputError) as err:
        fwht(torch.zeros(length))
    assert err.value.field == "table"


def test_to_pm1_conventions():
    zero_one = torch.tensor([0.0, 1.0, 1.0, 0.0])
    torch.testing.assert_close(to_pm1(zero_one), torch.tensor([1.0, -1.0, -1.0, 1.0],
                                                              dtype=torch.float64))
    pm1 = torch.tensor([-1.0, 1.0, 1.0, -1.0])
    torch.testing.assert_close(to_pm1(pm1), pm1.double())
    real = torch.tensor([0.25, 0.5, 0.5, 0.75])
    assert to_pm1(real).dtype == torch.float64
    torch.testing.assert_close(to_pm1(real), real.double())
    torch.testing.assert_close(to_pm1(zero_one, scale="raw"), zero_one.double())
    assert is_boolean_table(zero_one) and is_boolean_table(pm1) and not is_boolean_table(real)
    with pytest.raises(InputError):
        to_pm1(zero_one, scale="nope")


@pytest.mark.parametrize("n", [1, 4, 9])
def test_parseval_for_pm1_tables(n):
    tables = random_pm1(n, (5, 1 << n))
    total = fourier_spectrum(tables).square().sum(-1)
    torch.testing.assert_close(total, torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(degree_profile(tables).sum(-1), total)


def test_parity_spectrum_is_a_single_character():
    n = 8
    task = make_task("parity", {"n": n})
    coef = fourier_spectrum(task.truth_table(task.make_state(0)))
    expected = torch.zeros(1 << n, dtype=torch.float64)
    expected[-1] = 1.0  # g = 1 - 2 PARITY = chi_[n]
    torch.testing.assert_close(coef, expected, rtol=0, atol=0)
    profile = degree_profile(task.truth_table(task.make_state(0)))
    assert profile[n] == 1.0 and profile[:n].abs().sum() == 0
    assert fourier_degree(task.truth_table(task.make_state(0))) == n


def test_first_and_sparse_parity_degrees():
    first = make_task("first", {"n": 6})
    assert fourier_degree(first.truth_table(first.make_state(0))) == 1
    # little-endian: input 0 is bit 0 of the index, so FIRST = (1 - chi_{0}) / 2 lives at S = 1
    coef = fourier_spectrum(first.truth_table({}))
    assert coef.nonzero().flatten().tolist() == [1] and coef[1] == 1.0
    sp = make_task("sparse_parity", {"n": 10, "k": 4})
    table = sp.truth_table(sp.make_state(5))
    assert fourier_degree(table) == 4
    assert degree_profile(table)[4] == 1.0


@pytest.mark.parametrize("d", [0, 1, 2, 3, 5])
def test_degree_task_has_exact_degree(d):
    task = make_task("degree", {"n": 7, "degree": d, "terms": 3})
    table = task.truth_table(task.make_state(11))
    assert not is_boolean_table(table) or d == 0  # real-valued (constant when d = 0)
    assert int(fourier_degree(table, scale="raw")) == d
    profile = degree_profile(table, scale="raw")
    torch.testing.assert_close(profile.sum() - profile[d], torch.zeros((), dtype=torch.float64),
                               rtol=0, atol=1e-12)


def test_fourier_degree_batched_and_zero_function():
    n = 5
    parity = make_task("parity", {"n": n})
    first = make_task("first", {"n": n})
    tables = torch.stack([parity.truth_table({}), first.truth_table({})])
    assert fourier_degree(tables).tolist() == [n, 1]
    assert int(fourier_degree(torch.zeros(8), scale="raw")) == 0


def test_majority_profile_only_odd_degrees():
    # MAJORITY is an odd function on the ±1 scale: all weight sits on odd |S|.
    task = make_task("majority", {"n": 7})
    profile = degree_profile(task.truth_table({}))
    assert profile[0::2].abs().max() < 1e-15
    assert abs(float(profile.sum()) - 1.0) < 1e-12


def test_measures_registered():
    for name in ("fourier_spectrum", "degree_profile"):
        assert name in MEASURES
