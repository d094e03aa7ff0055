"""Sensitivity measures: exact values of known functions, the bit-flip oracle, sampling, models."""

import math

import pytest
import torch
from torch import nn

from biaslab import rng
from biaslab.errors import InputError
from biaslab.measure.sensitivity import (
    average_sensitivity,
    bitflip_sensitivity,
    closed_form_majority,
    learned_sensitivity,
    learned_table,
    sampled_sensitivity,
)
from biaslab.measure.tokenwise import tokenwise_sensitivity
from biaslab.registry import MEASURES
from biaslab.tasks import make_task
from biaslab.tasks.boolean import all_inputs
from biaslab.train import Member, Stack


def table_of(name: str, params: dict, seed: int = 0) -> torch.Tensor:
    task = make_task(name, params)
    return task.truth_table(task.make_state(seed))


# -- exact values ----------------------------------------------------------------------------------
def test_parity_12_is_exactly_12():
    table = table_of("parity", {"n": 12})
    assert float(average_sensitivity(table)) == 12.0
    assert float(bitflip_sensitivity(table)) == 12.0


def test_majority_9_is_exactly_the_closed_form():
    table = table_of("majority", {"n": 9})
    assert closed_form_majority(9) == 2.4609375
    assert float(average_sensitivity(table)) == 2.4609375
    assert float(bitflip_sensitivity(table)) == 2.4609375


@pytest.mark.parametrize("n", [1, 3, 5, 7, 11, 13])
def test_majority_closed_form_other_n(n):
    exact = float(average_sensitivity(table_of("majority", {"n": n})))
    assert exact == pytest.approx(closed_form_majority(n), abs=1e-12)


@pytest.mark.parametrize("n", [0, 4, -3])
def test_closed_form_majority_rejects_even_n(n):
    with pytest.raises(InputError):
        closed_form_majority(n)


def test_first_is_1():
    assert float(average_sensitivity(table_of("first", {"n": 10}))) == 1.0


def test_sparse_parity_k3_n20_is_3():
    table = table_of("sparse_parity", {"n": 20, "k": 3}, seed=4)
    assert table.shape == (1 << 20,)
    assert float(average_sensitivity(table)) == 3.0


def test_constant_is_0():
    assert float(average_sensitivity(torch.ones(64))) == 0.0


# -- spectral route == brute-force oracle ------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 5, 8, 11])
def test_random_boolean_tables_match_bitflip_oracle(n):
    tables = (rng.bits32(rng.key_of(n), (4, 1 << n)) & 1).double()  # a batch of 4 tables
    spectral = average_sensitivity(tables)
    assert spectral.shape == (4,)
    torch.testing.assert_close(spectral, bitflip_sensitivity(tables), rtol=0, atol=1e-9)
    # a random function has as ~ n/2, nowhere near 0 or n (guards a vacuous comparison)
    if n >= 5:
        assert (spectral > 0.25 * n).all() and (spectral < 0.75 * n).all()


@pytest.mark.parametrize("n", [3, 6, 10])
def test_random_real_tables_match_bitflip_oracle(n):
    tables = rng.normal(rng.key_of(100 + n), (3, 1 << n), torch.float64)
    torch.testing.assert_close(average_sensitivity(tables), bitflip_sensitivity(tables),
                               rtol=0, atol=1e-9)


def test_random_task_matches_oracle_and_pm1_input():
    table = table_of("random", {"n": 9}, seed=3)
    pm1 = 1 - 2 * table  # the same function on the ±1 scale
    torch.testing.assert_close(average_sensitivity(table), bitflip_sensitivity(table),
                               rtol=0, atol=1e-9)
    torch.testing.assert_close(average_sensitivity(pm1), average_sensitivity(table),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("n", [2, 5, 9])
def test_mean_task_real_valued(n):
    # MEAN changes by 1/n under any flip: 1/4 * n * (1/n)^2 = 1/(4n); both routes must agree.
    table = table_of("mean", {"n": n})
    oracle = float(bitflip_sensitivity(table))
    assert oracle == pytest.approx(1 / (4 * n), rel=1e-6)  # the task's table is float32
    assert float(average_sensitivity(table)) == pytest.approx(oracle, abs=1e-9)


def test_degree_task_real_valued_matches_oracle():
    table = table_of("degree", {"n": 8, "degree": 3, "terms": 5}, seed=2)
    torch.testing.assert_close(average_sensitivity(table), bitflip_sensitivity(table),
                               rtol=0, atol=1e-9)


def test_bad_table_length():
    with pytest.raises(InputError):
        average_sensitivity(torch.zeros(12))


# -- Monte-Carlo --------------------------------------------------------------------------------------
def majority_fn(n):
    return lambda x: (2 * x.sum(-1) > n).float()


def test_sampled_sensitivity_ci_covers_majority_15():
    n = 15
    exact = closed_form_majority(n)
    assert float(average_sensitivity(table_of("majority", {"n": n}))) == pytest.approx(exact)
    est = sampled_sensitivity(majority_fn(n), n, samples=3000, key=rng.key_of(0))
    assert float(est["low"]) <= exact <= float(est["high"])
    assert 0 < float(est["stderr"]) < 0.15
    assert float(est["high"] - est["low"]) == pytest.approx(2 * 1.959964 * float(est["stderr"]))
    # one key can be unlucky; over many keys a 95% interval should cover about 95% of the time
    ests = [sampled_sensitivity(majority_fn(n), n, samples=400, key=rng.key_of(100 + s))
            for s in range(60)]
    covered = sum(float(e["low"]) <= exact <= float(e["high"]) for e in ests) / len(ests)
    assert 0.85 <= covered <= 1.0
    grand = sum(float(e["mean"]) for e in ests) / len(ests)
    assert grand == pytest.approx(exact, abs=0.08)  # std of the grand mean ~ 0.025


def test_sampled_sensitivity_parity_has_no_variance_and_chunks_agree():
    n = 40  # too long to tabulate: this is what sampling is for
    parity = lambda x: (x.sum(-1) % 2).float()  # noqa: E731
    est = sampled_sensitivity(parity, n, samples=64, key=rng.key_of(2))
    assert float(est["mean"]) == n and float(est["stderr"]) == 0
    maj = majority_fn(21)
    whole = sampled_sensitivity(maj, 21, samples=50, key=rng.key_of(5))
    parts = sampled_sensitivity(maj, 21, samples=50, key=rng.key_of(5), chunk=7)
    for k in whole:
        torch.testing.assert_close(whole[k], parts[k])


def test_sampled_sensitivity_scales_threshold_and_leading_dims():
    n = 8
    first = lambda x: x[:, 0].float()  # noqa: E731
    assert float(sampled_sensitivity(first, n, 32, rng.key_of(0))["mean"]) == 1.0
    assert float(sampled_sensitivity(first, n, 32, rng.key_of(0), scale="raw")["mean"]) == 0.25
    # a real output thresholded into {0,1}: 3 x0 - 1 > 0.5  <=>  x0 = 1
    real = lambda x: 3 * x[:, 0].float() - 1  # noqa: E731
    assert float(sampled_sensitivity(real, n, 32, rng.key_of(0), threshold=0.5)["mean"]) == 1.0
    # [2, B] outputs, like stack.forward: one estimate per row, [B, 1] squeezed
    two = lambda x: torch.stack([first(x), (x.sum(-1) % 2).float()])  # noqa: E731
    assert sampled_sensitivity(two, n, 32, rng.key_of(0))["mean"].tolist() == [1.0, float(n)]
    col = lambda x: first(x)[:, None]  # noqa: E731
    assert float(sampled_sensitivity(col, n, 32, rng.key_of(0))["mean"]) == 1.0
    with pytest.raises(InputError):
        sampled_sensitivity(first, n, 32, rng.key_of(0), scale="auto")


# -- trained models ------------------------------------------------------------------------------------
class ParityModule(nn.Module):
    def forward(self, x):
        return (x.sum(-1) % 2).float()


def small_stack():
    """A random 3-member MLP stack whose outputs straddle 0.5 on the cube.

    At init each member's output is nearly constant, so a 0.5 threshold would give constant
    tables and make every comparison vacuous; shifting each head bias so the member's median
    output is 0.5 gives balanced tables (and exercises the default threshold).
    """
    task = make_task("parity", {"n": 6})
    stack = Stack("mlp", {"width": 16}, task, [Member(seed=s) for s in range(3)])
    with torch.no_grad():
        median = stack.forward(all_inputs(6)).median(-1).values
    stack.params["head.linear.bias"] = stack.params["head.linear.bias"] + (0.5 - median)[:, None]
    return stack


def test_learned_table_of_a_module():
    n = 7
    table = learned_table(ParityModule(), n, batch=17)  # odd chunking on purpose
    torch.testing.assert_close(table.double(), table_of("parity", {"n": n}).double())
    assert float(learned_sensitivity(ParityModule(), n)) == n


def test_learned_table_of_stack_equals_members():
    stack = small_stack()
    n = 6
    raw = learned_table(stack, n, threshold=None, batch=10)
    assert raw.shape == (3, 1 << n)
    x = all_inputs(n)
    for i in range(stack.M):
        with torch.no_grad():
            member_out = stack.member(i)(x)
        torch.testing.assert_close(raw[i], member_out, rtol=1e-5, atol=1e-6)
        # the default 0.5 threshold; small_stack centres outputs there, so tables are balanced
        member_table = learned_table(stack.member(i), n)
        torch.testing.assert_close(member_table, (member_out > 0.5).float())
        torch.testing.assert_close(learned_table(stack, n)[i], member_table)
        assert 0 < float(member_table.mean()) < 1
    sens = learned_sensitivity(stack, n)
    assert sens.shape == (3,) and (sens > 0).all()
    per_member = [float(learned_sensitivity(stack.member(i), n)) for i in range(3)]
    torch.testing.assert_close(sens, torch.tensor(per_member, dtype=torch.float64))
    # a custom predict is applied per member under vmap
    flipped = learned_table(stack, n, predict=lambda o: (o <= 0.5).float())
    torch.testing.assert_close(flipped, 1 - learned_table(stack, n))
    raw_sens = learned_sensitivity(stack, n, threshold=None)
    torch.testing.assert_close(raw_sens, bitflip_sensitivity(raw, scale="raw"))


# -- token-wise perturbation sensitivity -------------------------------------------------------------
def binary_x(B, L, seed=0):
    return rng.randint(rng.key_of(seed), (B, L), 2)


def test_tokenwise_reads_position_0_exclude_same():
    B, L = 64, 8
    out = tokenwise_sensitivity(lambda x: x[:, 0].float(), binary_x(B, L), 2, rng.key_of(0),
                                draws=2, exclude_same=True)
    expected = torch.zeros(L, dtype=torch.float64)
    expected[0] = 1.0
    torch.testing.assert_close(out["per_position"], expected, rtol=0, atol=0)
    assert float(out["mean"]) == 1 / L


def test_tokenwise_vocab_2_with_replacement_is_half():
    B, L = 4000, 5
    out = tokenwise_sensitivity(lambda x: x[:, 0].float(), binary_x(B, L, 1), 2, rng.key_of(3))
    assert abs(float(out["per_position"][0]) - 0.5) < 0.04  # std 0.008
    assert out["per_position"][1:].abs().sum() == 0


def test_tokenwise_class_outputs_larger_vocab():
    V, B, L = 5, 2000, 4
    x = rng.randint(rng.key_of(9), (B, L), V)
    logits = lambda x: nn.functional.one_hot(x[:, 0], V).float()  # noqa: E731  argmax = token 0
    same = tokenwise_sensitivity(logits, x, V, rng.key_of(1), exclude_same=True)
    assert float(same["per_position"][0]) == 1.0
    paper = tokenwise_sensitivity(logits, x, V, rng.key_of(1), draws=2)
    assert abs(float(paper["per_position"][0]) - (V - 1) / V) < 0.03  # std 0.006
    sub = tokenwise_sensitivity(logits, x, V, rng.key_of(1), positions=[2, 0], exclude_same=True)
    assert sub["per_position"].tolist() == [0.0, 1.0] and sub["positions"].tolist() == [2, 0]


def test_tokenwise_parity_every_position_flips():
    L = 6
    parity = lambda x: (x.sum(-1) % 2).float()  # noqa: E731
    out = tokenwise_sensitivity(parity, binary_x(32, L), 2, rng.key_of(0), exclude_same=True)
    assert float(out["mean"]) == 1.0


def test_tokenwise_stack_equals_member_loop():
    stack = small_stack()
    x = binary_x(40, 6, seed=2)
    both = tokenwise_sensitivity(stack, x, 2, rng.key_of(4), draws=3)
    assert both["mean"].shape == (3,) and both["per_position"].shape == (3, 6)
    assert (both["mean"] > 0).all()  # not vacuous
    for i in range(stack.M):
        one = tokenwise_sensitivity(stack.member(i), x, 2, rng.key_of(4), draws=3)
        torch.testing.assert_close(both["per_position"][i], one["per_position"])
        torch.testing.assert_close(both["mean"][i], one["mean"])
    # a custom predict goes through vmap: the complement labels flip exactly as often
    inv = tokenwise_sensitivity(stack, x, 2, rng.key_of(4), draws=3,
                                predict=lambda o: (o <= 0.5).float())
    torch.testing.assert_close(inv["per_position"], both["per_position"])


def test_tokenwise_rejects_bad_input():
    with pytest.raises(InputError):
        tokenwise_sensitivity(lambda x: x[:, 0].float(), torch.zeros(4, dtype=torch.long), 2,
                              rng.key_of(0))


def test_measures_registered():
    for name in ("average_sensitivity", "sampled_sensitivity", "learned_sensitivity",
                 "tokenwise_sensitivity"):
        assert name in MEASURES


def test_closed_form_majority_value():
    assert closed_form_majority(3) == 1.5
    assert closed_form_majority(15) == pytest.approx(15 * math.comb(14, 7) / 2 ** 14)
