"""The decoder-only transformer: shapes, causality, gamma init, stacking under vmap."""

import math

import pytest
import torch

import biaslab.models.decoder  # noqa: F401  (registers "decoder")
import biaslab.tasks.anchor  # noqa: F401  (registers "anchor")
from biaslab import rng
from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack

SMALL = {"d_model": 32, "d_ff": 64, "d_head": 16, "n_layers": 2}


@pytest.fixture(scope="module")
def task():
    return make_task("anchor", {})


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_shapes_and_acts(task, norm):
    m = build_model("decoder", {**SMALL, "norm": norm, "n_heads": 2}, task, seed=0)
    x, _ = task.sample({}, rng.key_of(0), 5)
    with torch.no_grad():
        out, acts = m(x, acts=True)
    assert out.shape == (5, 201)
    assert acts["embed"].shape == (5, 9, 32) and acts["readout"].shape == (5, 32)
    for i in range(2):
        assert acts[f"layers.{i}.attn"].shape == (5, 2, 9, 9)
        for name in ("ao", "out", "ln1_in", "ln2_in"):
            assert acts[f"layers.{i}.{name}"].shape == (5, 9, 32)
    # causal: no attention above the diagonal, rows sum to one
    a = acts["layers.0.attn"]
    assert float(a.triu(1).abs().max()) == 0.0
    assert torch.allclose(a.sum(-1), torch.ones(5, 2, 9))
    if norm == "post":  # X_ao is the output of LN1: zero mean per token
        assert acts["layers.0.ao"].mean(-1).abs().max() < 1e-5


def test_no_biases_by_default(task):
    m = build_model("decoder", SMALL, task, seed=0)
    biases = [n for n, _ in m.named_parameters() if n.endswith("bias") and ".ln" not in n]
    assert biases == ["head.bias"]


def test_causal(task):
    m = build_model("decoder", SMALL, task, seed=1)
    x, _ = task.sample({}, rng.key_of(1), 8)
    x2 = x.clone()
    x2[:, 6] = (x2[:, 6] + 1 - 20) % 80 + 20  # change token 6 only
    _, a = m(x, acts=True)
    _, b = m(x2, acts=True)
    for name in ("embed", "layers.0.out", "layers.1.out"):
        assert torch.allclose(a[name][:, :6], b[name][:, :6], atol=1e-6)
        assert not torch.allclose(a[name][:, 6:], b[name][:, 6:])


@pytest.mark.parametrize("gamma", [0.5, 0.8])
def test_gamma_init_std(task, gamma):
    cfg = {"d_model": 48, "d_ff": 96, "d_head": 24, "d_value": 20, "n_heads": 2, "n_layers": 2}
    m = build_model("decoder", cfg, task, seed=3, gamma=gamma)
    # d_in per the paper's table, written out independently of models.init.fan_in
    d_in = {"token_embed.weight": 48, "pos_embed.weight": 48, "head.weight": 48,
            "head.bias": 48}
    for i in range(2):
        d_in.update({f"layers.{i}.attn.q.weight": 48, f"layers.{i}.attn.k.weight": 48,
                     f"layers.{i}.attn.v.weight": 48, f"layers.{i}.attn.out.weight": 2 * 20,
                     f"layers.{i}.ff1.weight": 48, f"layers.{i}.ff2.weight": 96})
    seen = set()
    for name, p in m.named_parameters():
        if ".ln" in name:  # LayerNorm keeps gain 1, bias 0
            assert torch.all(p == (1.0 if name.endswith("weight") else 0.0))
            continue
        want = d_in[name] ** -gamma
        n = p.numel()
        # std of a sample std of n normals is ~ want / sqrt(2n); allow 5 of those (and >= 5%)
        tol = max(5 / math.sqrt(2 * n), 0.05) if n > 200 else 0.5
        assert abs(p.std().item() / want - 1) < tol, (name, p.std().item(), want)
        seen.add(name)
    assert seen == set(d_in)


def test_stack_vmap_matches_members(task):
    stack = Stack("decoder", SMALL, task, [Member(seed=s, gamma=0.6) for s in range(2)])
    x, _ = task.sample({}, rng.key_of(4), 6)
    out, acts = stack.forward(x, acts=True)
    assert out.shape == (2, 6, 201) and acts["layers.1.attn"].shape == (2, 6, 1, 9, 9)
    for i in range(2):
        assert torch.allclose(out[i], stack.member(i)(x), atol=1e-5)
    assert not torch.allclose(out[0], out[1])


def test_max_pos_checked(task):
    from biaslab.errors import InputError

    with pytest.raises(InputError):
        build_model("decoder", {**SMALL, "max_pos": 8}, task, seed=0)
