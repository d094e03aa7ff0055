"""Text models: shapes, stack member == the model alone, the embedding protocol
(forward == forward_embedded(embed(x))), padding, and what each variant promises."""

import pytest
import torch

from biaslab import rng
from biaslab.measure.tokenwise import EmbeddingNoise, tokenwise_flip_sensitivity
from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.tasks.tokenizer import PAD
from biaslab.train import Member, Stack

TINY = {
    "roberta": {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32},
    "roberta_relu": {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32, "attention": "relu"},
    "roberta_ln": {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32, "embed_at": "layernorm"},
    "gpt2": {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 32},
    "text_lstm": {"d_embed": 8, "hidden": 16, "n_layers": 2},
}


def model_name(key):
    return "roberta" if key.startswith("roberta") else key


@pytest.fixture(scope="module")
def pairs():
    task = make_task("pair_topics", {"min_words": 2, "max_words": 6})
    x, y = task.sample({}, rng.key_of(0), 12)
    return task, x, y


@pytest.mark.parametrize("key", list(TINY))
def test_shapes_and_embedding_protocol(pairs, key):
    task, x, _ = pairs
    m = build_model(model_name(key), TINY[key], task, seed=0)
    out, acts = m(x, acts=True)
    assert out.shape == (12, 2) and acts["readout"].shape[0] == 12
    e = m.embed(x)
    assert e.shape[:2] == x.shape
    assert (e[x == PAD] == 0).all() and (e[x != PAD].abs().amax(-1) > 0).all()
    assert torch.equal(m.forward_embedded(e), out)


@pytest.mark.parametrize("key", list(TINY))
def test_padding_does_not_change_the_output(pairs, key):
    """Positions count from each row's first real token, so more or fewer pads change nothing."""
    task, x, _ = pairs
    m = build_model(model_name(key), TINY[key], task, seed=1)
    padded = x[(x[:, :3] == PAD).all(1)]  # rows with at least 3 pads
    assert len(padded) >= 4
    assert torch.allclose(m(padded[:, 3:]), m(padded), atol=1e-5)
    wider = torch.cat([torch.zeros(12, 3, dtype=x.dtype), x], 1)
    assert torch.allclose(m(wider), m(x), atol=1e-5)


@pytest.mark.parametrize("key", list(TINY))
def test_stack_member_equals_model_alone(pairs, key):
    task, x, _ = pairs
    stack = Stack(model_name(key), TINY[key], task, [Member(seed=3), Member(seed=4)])
    out = stack.forward(x)
    for i, seed in enumerate((3, 4)):
        alone = build_model(model_name(key), TINY[key], task, seed=seed)
        assert torch.allclose(out[i], alone(x), atol=1e-5)
        assert torch.allclose(stack.member(i)(x), alone(x), atol=1e-5)


def test_relu_attention_is_unnormalised_and_ignores_padding(pairs):
    task, x, _ = pairs
    m = build_model("roberta", TINY["roberta_relu"], task, seed=0)
    _, acts = m(x, acts=True)
    pattern = acts["layers.0.attn"]  # [B, H, T, T]
    pads = (x == PAD)[:, None, None, :].expand_as(pattern)
    assert (pattern[pads] == 0).all() and (pattern >= 0).all()
    rows = pattern.sum(-1)[(x != PAD)[:, None, :].expand(-1, 2, -1)]
    assert not torch.allclose(rows, torch.ones_like(rows))  # not a softmax
    soft = build_model("roberta", TINY["roberta"], task, seed=0)
    _, sacts = soft(x, acts=True)
    srows = sacts["layers.0.attn"].sum(-1)[(x != PAD)[:, None, :].expand(-1, 2, -1)]
    assert torch.allclose(srows, torch.ones_like(srows), atol=1e-5)


def test_gpt2_is_causal(pairs):
    task, x, _ = pairs
    m = build_model("gpt2", TINY["gpt2"], task, seed=0)
    _, acts = m(x, acts=True)
    real_queries = (x != PAD)[:, None, :, None]  # padded queries see no key at all: ignore them
    assert ((acts["layers.1.attn"].triu(1) * real_queries) == 0).all()


@pytest.mark.parametrize("key", ["text_lstm", "roberta", "gpt2"])
def test_every_parameter_gets_a_gradient(pairs, key):
    """The reference trained only the LSTM cell (quirk 4); here embedding, LayerNorm and head learn."""
    task, x, y = pairs
    m = build_model(model_name(key), TINY[key], task, seed=0)
    torch.nn.functional.cross_entropy(m(x), y).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_one_layer_attention_is_value_then_linear():
    task = make_task("vocab_features", {"seq_len": 8})
    m = build_model("one_layer_attention", {"d_model": 8}, task, seed=0)
    x, _ = task.sample({}, rng.key_of(0), 5)
    out, acts = m(x, acts=True)
    manual = (acts["attn"] @ (m.token_embed(x) @ m.v.weight.T)).mean(1) @ m.head.linear.weight.T \
        + m.head.linear.bias
    assert torch.allclose(out, manual, atol=1e-6)
    assert torch.equal(m.forward_embedded(m.embed(x)), out)


def test_embedding_noise_on_a_stack_equals_each_member_alone(pairs):
    task, x, _ = pairs
    stack = Stack("text_lstm", TINY["text_lstm"], task, [Member(seed=0), Member(seed=1)])
    noise, key = EmbeddingNoise(sigma=3.0), rng.key_of(5)
    together = tokenwise_flip_sensitivity(stack, x, noise, key, draws=2, mask=x != PAD)
    for i in range(2):
        alone = tokenwise_flip_sensitivity(stack.member(i), x, noise, key, draws=2, mask=x != PAD)
        assert torch.allclose(together["per_position"][i].nan_to_num(-1),
                              alone["per_position"].nan_to_num(-1))
        assert torch.allclose(together["mean"][i], alone["mean"])


def test_roberta_embed_boundary_changes_where_noise_goes_not_the_function(pairs):
    task, x, _ = pairs
    word = build_model("roberta", TINY["roberta"], task, seed=2)
    normed = build_model("roberta", TINY["roberta_ln"], task, seed=2)
    assert torch.equal(word(x), normed(x))
    assert torch.equal(word.embed(x), word.token_embed(x) * (x != PAD)[..., None])
    e = normed.embed(x)[x != PAD]
    assert torch.allclose(e.mean(-1), torch.zeros_like(e[:, 0]), atol=1e-5)  # after LayerNorm
