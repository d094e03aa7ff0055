"""LayerNorm blow-up against a hand computation; parameter norm and stable rank."""

import copy

import pytest
import torch

from biaslab import rng
from biaslab.measure import norms as N
from biaslab.measure.lift import over_stack
from biaslab.models import POSITION_PREFIX, build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack

CFG = {"d_model": 8, "n_heads": 2, "n_layers": 2, "d_ff": 8}  # post-LN, the default


@pytest.fixture(scope="module")
def task():
    return make_task("parity", {"n": 5})


@pytest.fixture(scope="module")
def model(task):
    return build_model("transformer", CFG, task, seed=0).double()


@pytest.fixture(scope="module")
def x(task):
    return task.sample({}, rng.key_of(3), 16)[0]


def inv_std(z):
    """1 / unbiased std over the last dim, written out."""
    d = z.shape[-1]
    mu = z.sum(-1, keepdim=True) / d
    return 1.0 / torch.sqrt(((z - mu) ** 2).sum(-1) / (d - 1))


def hand_blowup(model, x, reduce):
    """Re-run the post-LN forward from the model's modules and reduce by hand."""
    with torch.no_grad():
        L = x.shape[1]
        pos = model.pos_embed(torch.arange(L)).expand(len(x), -1, -1)
        h = torch.cat([model.token_embed(x), pos], -1)  # concatenated embeddings
        factors = []
        for i, layer in enumerate(model.layers):
            last = i == len(model.layers) - 1
            z1 = h + layer.attn(h)[0]
            h = layer.ln1(z1)
            z2 = h + layer.ff2(torch.relu(layer.ff1(h)))
            h = layer.ln2(z2)
            for z in (z1, z2):
                v = inv_std(z)  # [B, L]
                if last:
                    v = v[:, -1:]
                factors.append(v.max(-1).values if reduce == "max" else v.mean(-1))
        # Sanity: the hand forward reproduces the model's output.
        torch.testing.assert_close(model.head(h[:, -1]), model(x))
        per_example = torch.stack(factors).prod(0)
        return per_example.mean(), [f.mean() for f in factors]


@pytest.mark.parametrize("reduce", ["max", "mean"])
def test_blowup_matches_hand_computation(model, x, reduce):
    out = N.layernorm_blowup(model, x, reduce=reduce)
    blow, factors = hand_blowup(model, x, reduce)
    torch.testing.assert_close(out["blowup"], blow)
    assert list(out["per_ln"]) == ["layers.0.ln1_in", "layers.0.ln2_in", "layers.1.ln1_in",
                                   "layers.1.ln2_in"]
    torch.testing.assert_close(torch.stack(list(out["per_ln"].values())), torch.stack(factors))


def test_blowup_scales_inversely_with_ln_input(task, x):
    # Reparametrise so the first LayerNorm input is scaled by c and nothing else changes:
    # embeddings x c, query/key weights / c (same attention), value and output biases x c.
    # Then the first factor is exactly 1/c times larger and the others are unchanged -- a check
    # independent of the hand forward above.
    # A negligible LayerNorm epsilon, so that the reparametrisation is exact.
    model = build_model("transformer", {**CFG, "ln_eps": 1e-30}, task, seed=0).double()
    c = 0.1
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in scaled.named_parameters():
            if name.startswith(("token_embed", "pos_embed", "layers.0.attn.v.bias",
                                "layers.0.attn.out.bias")):
                p.mul_(c)
            elif name in ("layers.0.attn.q.weight", "layers.0.attn.k.weight"):
                p.div_(c)
    torch.testing.assert_close(scaled(x), model(x))
    a, b = N.layernorm_blowup(model, x), N.layernorm_blowup(scaled, x)
    for name in a["per_ln"]:
        factor = 1 / c if name == "layers.0.ln1_in" else 1.0
        torch.testing.assert_close(b["per_ln"][name], factor * a["per_ln"][name])
    torch.testing.assert_close(b["blowup"], a["blowup"] / c)


def test_blowup_needs_layernorm(task, x):
    bare = build_model("transformer", {**CFG, "norm": "none"}, task, seed=0)
    with pytest.raises(ValueError, match="LayerNorm"):
        N.layernorm_blowup(bare, x)


def test_parameter_norm_excludes_positions(model):
    params = dict(model.named_parameters())
    full = torch.sqrt(sum(p.detach().pow(2).sum() for p in params.values()))
    no_pos = torch.sqrt(sum(p.detach().pow(2).sum() for n, p in params.items()
                            if not n.startswith(POSITION_PREFIX)))
    assert not torch.isclose(full, no_pos)
    torch.testing.assert_close(N.parameter_norm(model), no_pos)
    torch.testing.assert_close(N.parameter_norm(model, exclude=()), full)
    torch.testing.assert_close(N.parameter_norm({n: p.detach() for n, p in params.items()}),
                               no_pos)


def test_stable_rank():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(7, generator=g), torch.randn(5, generator=g)
    torch.testing.assert_close(N.stable_rank(torch.outer(u, v)), torch.tensor(1.0))
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    torch.testing.assert_close(N.stable_rank(3 * q), torch.tensor(6.0, dtype=torch.float64))
    # Batched over leading dims, and between 1 and the rank for a generic matrix.
    W = torch.randn(2, 3, 4, 5, generator=g)
    sr = N.stable_rank(W)
    assert sr.shape == (2, 3)
    torch.testing.assert_close(sr[1, 2], N.stable_rank(W[1, 2]))
    assert ((sr >= 1) & (sr <= 4)).all()


def test_stable_ranks_of_model(model):
    ranks = N.stable_ranks(model)
    two_d = [n for n, p in model.named_parameters() if p.dim() == 2]
    assert list(ranks) == two_d
    assert "pos_embed.weight" in ranks and "layers.0.ln1.weight" not in ranks
    assert "pos_embed.weight" not in N.stable_ranks(model, exclude=(POSITION_PREFIX,))


def test_stacked_equal_per_member(task, x):
    st = Stack("transformer", CFG, task, [Member(seed=s) for s in range(3)])
    st.params = {k: v.double() for k, v in st.params.items()}
    mods = [st.member(i).double() for i in range(3)]
    keys = rng.derive(rng.key_of(5), torch.arange(3))
    xs = torch.vmap(lambda k: task.sample({}, k, 16)[0])(keys)
    for xx, per in [(x, [x] * 3), (xs, list(xs))]:  # shared and per-member inputs
        for reduce in ["max", "mean"]:
            out = N.layernorm_blowup(st, xx, reduce=reduce)
            ref = [N.layernorm_blowup(m, per[i], reduce=reduce) for i, m in enumerate(mods)]
            assert out["blowup"].shape == (3,)
            torch.testing.assert_close(out["blowup"], torch.stack([r["blowup"] for r in ref]))
            for name in ref[0]["per_ln"]:
                torch.testing.assert_close(out["per_ln"][name],
                                           torch.stack([r["per_ln"][name] for r in ref]))
    torch.testing.assert_close(N.parameter_norm(st),
                               torch.stack([N.parameter_norm(m) for m in mods]))
    torch.testing.assert_close(over_stack(N.parameter_norm, st.params, exclude=()),
                               torch.stack([N.parameter_norm(m, exclude=()) for m in mods]))
    sr = N.stable_ranks(st)
    ref = [N.stable_ranks(m) for m in mods]
    assert list(sr) == list(ref[0])
    for name in sr:
        torch.testing.assert_close(sr[name], torch.stack([r[name] for r in ref]))


def test_registered():
    from biaslab.registry import MEASURES

    for name in ["layernorm_blowup", "parameter_norm", "stable_rank"]:
        assert name in MEASURES
        assert MEASURES.get(name).lifts_stacks
