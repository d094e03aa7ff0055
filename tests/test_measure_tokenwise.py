"""Token-wise flip sensitivity against a brute-force Python loop, for every perturbation kind.

Exact checks rebuild the measure's own draws (counter-based keys, as documented) and perturb one
example, one slot, one draw at a time by plain indexing; sampling checks draw independent torch
noise and compare within a few standard errors.
"""

import math

import pytest
import torch
from torch import nn

from biaslab import rng
from biaslab.errors import InputError
from biaslab.measure.tokenwise import (EMBED_STREAM, PATCH_STREAM, EmbeddingNoise, PatchNoise,
                                       ScatteredPixelNoise, TokenReplacement, flip_rate_stderr,
                                       tokenwise_flip_sensitivity, tokenwise_sensitivity)
from biaslab.registry import MEASURES


class TinySeq(nn.Module):
    """Embedding + positions -> tanh -> flatten -> 3 classes; implements the embedding protocol."""

    def __init__(self, V=5, L=6, D=8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.tok = nn.Parameter(torch.randn(V, D, generator=g))
        self.pos = nn.Parameter(0.1 * torch.randn(L, D, generator=g))
        self.w = nn.Parameter(torch.randn(L * D, 3, generator=g))

    def embed(self, x):
        return self.tok[x] + self.pos

    def forward_embedded(self, e):
        return torch.tanh(e).flatten(1) @ self.w

    def forward(self, x):
        return self.forward_embedded(self.embed(x))


class TinyImage(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.lin = nn.Linear(4 * 64, 3)

    def forward(self, x):
        return self.lin(torch.relu(self.conv(x)).flatten(1))


def labels(model, x):
    return model(x).argmax(-1)


# -- brute force ----------------------------------------------------------------------------------
def loop_replacement(model, x, V, key, draws, exclude_same):
    B, L = x.shape
    rate = torch.zeros(L, dtype=torch.float64)
    for d in range(draws):
        k = rng.derive(key, 0x70CE, d)
        bits = rng.randint(k, (B, L, 1), V, low=1 if exclude_same else 0)
        for b in range(B):
            for i in range(L):
                xx = x[b:b + 1].clone()
                new = int(bits[b, i, 0])
                xx[0, i] = (xx[0, i] + new) % V if exclude_same else new
                rate[i] += float(labels(model, xx) != labels(model, x[b:b + 1]))
    return rate / (B * draws)


def loop_embedding(model, x, sigma, key, draws, groups, noise=None):
    e = model.embed(x)
    B, T, D = e.shape
    rate = torch.zeros(len(groups), dtype=torch.float64)
    for d in range(draws):
        z = None if noise else rng.normal(rng.derive(key, EMBED_STREAM, d),
                                          (B, len(groups), len(groups[0]), D))
        for b in range(B):
            clean = model.forward_embedded(e[b:b + 1]).argmax(-1)
            for j, group in enumerate(groups):
                ee = e[b:b + 1].clone()
                for slot, t in enumerate(group):
                    ee[0, t] += sigma * (z[b, j, slot] if noise is None else torch.randn(D))
                rate[j] += float(model.forward_embedded(ee).argmax(-1) != clean)
    return rate / (B * draws)


def loop_patches(model, x, sigma, p, key, draws, noise=None):
    B, C, H, W = x.shape
    gw = W // p
    P = (H // p) * gw
    rate = torch.zeros(P, dtype=torch.float64)
    for d in range(draws):
        z = None if noise else rng.normal(rng.derive(key, PATCH_STREAM, d), (B, P, 1, C, p, p))
        for b in range(B):
            clean = labels(model, x[b:b + 1])
            for j in range(P):
                r, c = divmod(j, gw)
                xx = x[b:b + 1].clone()
                add = z[b, j, 0] if noise is None else torch.randn(C, p, p)
                xx[0, :, r * p:(r + 1) * p, c * p:(c + 1) * p] += sigma * add
                rate[j] += float(labels(model, xx) != clean)
    return rate / (B * draws)


# -- exact: same draws -----------------------------------------------------------------------------
@pytest.mark.parametrize("exclude_same", [False, True])
def test_replacement_matches_loop_and_old_measure(exclude_same):
    model, V = TinySeq(), 5
    x = rng.randint(rng.key_of(1), (12, 6), V)
    key = rng.key_of(7)
    out = tokenwise_flip_sensitivity(model, x, TokenReplacement(V, exclude_same), key, draws=2,
                                     chunk_rows=25)
    expected = loop_replacement(model, x, V, key, 2, exclude_same)
    torch.testing.assert_close(out["per_position"], expected)
    assert float(out["mean"]) > 0  # not vacuous
    old = tokenwise_sensitivity(model, x, V, key, draws=2, exclude_same=exclude_same)
    torch.testing.assert_close(out["per_position"], old["per_position"])


def test_embedding_noise_matches_loop_single_and_grouped():
    model = TinySeq()
    x = rng.randint(rng.key_of(2), (10, 6), 5)
    key = rng.key_of(3)
    out = tokenwise_flip_sensitivity(model, x, EmbeddingNoise(1.5), key, draws=2, chunk_rows=30)
    groups = [[t] for t in range(6)]
    torch.testing.assert_close(out["per_position"], loop_embedding(model, x, 1.5, key, 2, groups))
    assert float(out["mean"]) > 0
    pair = tokenwise_flip_sensitivity(model, x, EmbeddingNoise(1.5), key, draws=2,
                                      positions=[[0, 1], [4, 5]])
    assert pair["positions"].tolist() == [[0, 1], [4, 5]]
    torch.testing.assert_close(pair["per_position"],
                               loop_embedding(model, x, 1.5, key, 2, [[0, 1], [4, 5]]))


def test_patch_noise_matches_loop():
    model = TinyImage()
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    key = rng.key_of(5)
    out = tokenwise_flip_sensitivity(model, x, PatchNoise(1.0, 4), key, draws=2, chunk_rows=7)
    torch.testing.assert_close(out["per_position"], loop_patches(model, x, 1.0, 4, key, 2))
    assert float(out["mean"]) > 0


def test_scattered_pixels_touch_exactly_the_chosen_pixels():
    # a model that reports whether pixel (r, c) moved: the flip rate of each set is 1 exactly
    # when the set covers that pixel, and the noise reaches every channel
    x = torch.zeros(3, 2, 4, 4)
    sets = 40
    hits = []
    for r, c in [(0, 0), (3, 2)]:
        watch = lambda im, r=r, c=c: (im[:, 1, r, c] != 0).float()  # noqa: E731
        out = tokenwise_flip_sensitivity(watch, x, ScatteredPixelNoise(1.0, pixels=4, sets=sets),
                                         rng.key_of(0), predict=lambda o: o)
        hits.append(out["per_position"])
    # 4 of 16 pixels per set: about a quarter of the sets cover a given pixel
    for h in hits:
        assert set(h.tolist()) <= {0.0, 1.0}
        assert 0.1 < float(h.mean()) < 0.45


# -- within sampling error: independent noise --------------------------------------------------------
def test_noise_kinds_agree_with_independent_draws():
    torch.manual_seed(0)
    model = TinySeq(seed=4)
    x = rng.randint(rng.key_of(4), (60, 6), 5)
    out = tokenwise_flip_sensitivity(model, x, EmbeddingNoise(1.0), rng.key_of(8), draws=4)
    brute = loop_embedding(model, x, 1.0, None, 4, [[t] for t in range(6)], noise="torch")
    n = 60 * 4 * 6
    se = math.sqrt(max(float(brute.mean()) * (1 - float(brute.mean())), 0.01) / n)
    assert abs(float(out["mean"]) - float(brute.mean())) < 4 * math.sqrt(2) * se
    assert float(flip_rate_stderr(out)) > 0

    image = TinyImage(seed=1)
    xi = torch.randn(30, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = tokenwise_flip_sensitivity(image, xi, PatchNoise(1.0, 4), rng.key_of(9), draws=4)
    brute = loop_patches(image, xi, 1.0, 4, None, 4, noise="torch")
    n = 30 * 4 * 4
    se = math.sqrt(max(float(brute.mean()) * (1 - float(brute.mean())), 0.01) / n)
    assert abs(float(out["mean"]) - float(brute.mean())) < 4 * math.sqrt(2) * se


# -- masks, errors, registration -------------------------------------------------------------------
def test_mask_skips_padding_positions():
    # label = (x0 + x3) mod V: with exclude_same, positions 0 and 3 always flip, others never
    V = 5
    model = lambda x: nn.functional.one_hot((x[:, 0] + x[:, 3]) % V, V).float()  # noqa: E731
    x = rng.randint(rng.key_of(1), (8, 6), V)
    mask = torch.ones(8, 6, dtype=torch.bool)
    mask[:4, :2] = False  # the first four examples have two pad tokens in front
    out = tokenwise_flip_sensitivity(model, x, TokenReplacement(V, True), rng.key_of(2),
                                     mask=mask, draws=2)
    assert out["per_position"].tolist() == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert out["per_example"].tolist() == [0.25] * 4 + [2 / 6] * 4
    assert float(out["mean"]) == pytest.approx((0.25 + 2 / 6) / 2)


def test_bad_input_is_one_clear_error():
    model = TinySeq()
    x = rng.randint(rng.key_of(1), (4, 6), 5)
    with pytest.raises(InputError):
        tokenwise_flip_sensitivity(model, x, TokenReplacement(5), rng.key_of(0), draws=0)
    with pytest.raises(InputError):
        tokenwise_flip_sensitivity(model, x, TokenReplacement(5), rng.key_of(0), positions=[9])
    with pytest.raises(InputError):
        tokenwise_flip_sensitivity(model, x, TokenReplacement(5), rng.key_of(0),
                                   positions=[[0], [1, 2]])
    with pytest.raises(InputError):  # no embed/forward_embedded
        tokenwise_flip_sensitivity(TinyImage(), torch.zeros(2, 3, 8, 8), EmbeddingNoise(1.0),
                                   rng.key_of(0))
    with pytest.raises(InputError):  # patch does not divide 8
        tokenwise_flip_sensitivity(TinyImage(), torch.zeros(2, 3, 8, 8), PatchNoise(1.0, 3),
                                   rng.key_of(0))
    assert "tokenwise_flip_sensitivity" in MEASURES


def test_replacement_on_a_stack_equals_member_loop():
    from biaslab.tasks import make_task
    from biaslab.train import Member, Stack

    task = make_task("parity", {"n": 6})
    stack = Stack("transformer", {"d_model": 16, "d_ff": 16, "n_layers": 1}, task,
                  [Member(seed=s) for s in (0, 1, 2)])
    x = rng.randint(rng.key_of(3), (20, 6), 2)
    pert = TokenReplacement(2, exclude_same=True)
    sign = lambda o: (o > 0).float()  # noqa: E731  (untrained outputs sit near 0, not 0.5)
    both = tokenwise_flip_sensitivity(stack, x, pert, rng.key_of(4), draws=2, chunk_rows=30,
                                      positions=[[0, 1], [2, 3]], predict=sign)
    assert both["per_position"].shape == (3, 2) and float(both["mean"].max()) > 0
    for i in range(3):
        member = stack.member(i)
        one = tokenwise_flip_sensitivity(member, x, pert, rng.key_of(4), draws=2,
                                         positions=[[0, 1], [2, 3]], predict=sign)
        torch.testing.assert_close(both["per_position"][i], one["per_position"])
        # brute force: flip bits 0 and 1 together, then bits 2 and 3 (exclude_same on 2 tokens = flip)
        clean = member(x) > 0
        for j, cols in enumerate(([0, 1], [2, 3])):
            xx = x.clone()
            xx[:, cols] ^= 1
            rate = ((member(xx) > 0) != clean).double().mean()
            torch.testing.assert_close(both["per_position"][i, j], rate)
