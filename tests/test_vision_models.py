"""Image models: shapes, stacked forward = member forward, the embedding protocol, and the
token-wise measure on a stack against the per-member loop (patch and embedding noise)."""

import pytest
import torch

from biaslab import rng
from biaslab.errors import InputError
from biaslab.measure.tokenwise import (EmbeddingNoise, PatchNoise, ScatteredPixelNoise,
                                       tokenwise_flip_sensitivity)
from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack

TINY = {
    "vit": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 32},
    "simple_vit": {"dim": 16, "depth": 1, "heads": 2, "dim_head": 8, "mlp_dim": 32},
    "resnet18": {"width": 4, "blocks": [1, 1]},
    "convmixer": {"dim": 8, "depth": 2},
    "image_mlp": {"width": 32},
    "image_cnn": {"channels": 4, "hidden": 16},
}


def task(**kw):
    return make_task("synthetic_images", {"size": 8, "classes": 4, "train_size": 64, **kw})


def images(t, n=6):
    st = t.make_state(0)
    return t.training_set(st, "cpu", n)


@pytest.mark.parametrize("name", sorted(TINY))
def test_stack_forward_equals_each_member(name):
    t = task()
    x, _ = images(t)
    stack = Stack(name, TINY[name], t, [Member(seed=s) for s in (0, 1)])
    out = stack.forward(x)
    assert out.shape == (2, 6, 4)
    for i in range(2):
        torch.testing.assert_close(out[i], stack.member(i)(x), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(out[0], out[1])  # members differ


@pytest.mark.parametrize("name", ["vit", "simple_vit"])
def test_vits_follow_the_embedding_protocol(name):
    t = task()
    x, _ = images(t)
    m = build_model(name, TINY[name], t, seed=0)
    e = m.embed(x)
    assert e.shape == (6, 4 + (name == "vit"), 16)  # 2x2 patches (+ class token)
    torch.testing.assert_close(m.forward_embedded(e), m(x))
    out, acts = m(x, acts=True)
    assert acts["layers.0.attn"].shape == (6, 2, e.shape[1], e.shape[1])


def test_locality_attention_masks_the_diagonal():
    t = task()
    x, _ = images(t)
    _, acts = build_model("vit", TINY["vit"], t, seed=0)(x, acts=True)
    assert acts["layers.0.attn"].diagonal(dim1=-2, dim2=-1).abs().max() == 0


@pytest.mark.parametrize("kind", ["patch", "pixels", "embedding"])
def test_tokenwise_on_a_stack_equals_member_loop(kind):
    t = task(noise=1.0)
    x, _ = images(t, 12)
    stack = Stack("vit", TINY["vit"], t, [Member(seed=s) for s in (0, 1, 2)])
    pert = {"patch": PatchNoise(2.0, 4), "pixels": ScatteredPixelNoise(2.0, 16, sets=3),
            "embedding": EmbeddingNoise(3.0)}[kind]
    both = tokenwise_flip_sensitivity(stack, x, pert, rng.key_of(1), draws=2, chunk_rows=40)
    assert both["mean"].shape == (3,)
    assert float(both["mean"].max()) > 0  # not vacuous
    for i in range(3):
        one = tokenwise_flip_sensitivity(stack.member(i), x, pert, rng.key_of(1), draws=2)
        torch.testing.assert_close(both["per_position"][i], one["per_position"])


def test_bad_shapes_are_input_errors():
    with pytest.raises(InputError):
        build_model("vit", {"patch": 3}, task(), seed=0)
    with pytest.raises(InputError):
        build_model("simple_vit", {"dim": 18}, task(), seed=0)
    with pytest.raises(InputError):
        build_model("image_cnn", {"n_layers": 5}, task(), seed=0)
    with pytest.raises(InputError):  # an image model on a token task
        build_model("vit", {}, make_task("parity", {"n": 4}), seed=0)


def test_gamma_init_reaches_2d_convolutions():
    # std = d_in^-gamma with d_in = in_channels / groups * kernel area (depthwise: the kernel)
    m = build_model("convmixer", {"dim": 64, "depth": 1}, task(), seed=0, gamma=0.5)
    dw, pw = m.blocks[0].depthwise.weight.detach(), m.blocks[0].pointwise.weight.detach()
    assert abs(float(dw.std()) - 9 ** -0.5) < 0.04
    assert abs(float(pw.std()) - 64 ** -0.5) < 0.01
