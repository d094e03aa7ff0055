"""The LAWT encoder-decoder, its decoding and the sequence loss, on a toy copy/reverse task."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch
from pydantic import Field

from biaslab import rng
from biaslab.models import build_model
from biaslab.models.decoding import (beam_decode, greedy_decode, module_parts, stack_beam,
                                     stack_greedy)
from biaslab.tasks.base import Task, TaskParams
from biaslab.train import TrainConfig
from biaslab.train.losses import get_loss
from biaslab.train.stack import Member, Stack
from biaslab.train.trainer import train

EOS, PAD, DIGIT0 = 0, 1, 2


class ToyParams(TaskParams):
    n: int = Field(default=4, gt=0)
    reverse: bool = False


class ToySeq(Task):
    """Copy (or reverse) n digits: encoder [d_1..d_n], decoder [EOS t_1..t_n pad...],
    target [t_1..t_n EOS]; the layout of the linalg tasks (pad 1, eos 0)."""

    Params: ClassVar = ToyParams
    target_kind: ClassVar[str] = "sequence"
    pad_id, eos_id = PAD, EOS

    @property
    def vocab_size(self):
        return DIGIT0 + 10

    @property
    def encoder_len(self):
        return self.params.n + 1  # one pad column, so key masking is exercised

    @property
    def decoder_len(self):
        return self.params.n + 1

    @property
    def seq_len(self):
        return self.encoder_len + self.decoder_len

    @property
    def n_outputs(self):
        return self.vocab_size

    def sample(self, state, key, batch, split="train"):
        n = self.params.n
        digits = rng.randint(rng.derive(key, 3), (batch, n), 10) + DIGIT0
        target = digits.flip(-1) if self.params.reverse else digits
        pad = torch.full((batch, 1), PAD, dtype=torch.long, device=digits.device)
        eos = torch.full((batch, 1), EOS, dtype=torch.long, device=digits.device)
        x = torch.cat([digits, pad, eos, target], 1)
        y = torch.cat([target, eos], 1)
        return x, y

    def correct(self, logits, y):
        return ((logits.argmax(-1) == y) | (y == PAD)).all(-1)


TINY = {"d_model": 16, "n_heads": 2, "n_enc_layers": 1, "n_dec_layers": 2}


def tiny(seed=0, **kw):
    return build_model("lawt", {**TINY, **kw}, ToySeq.from_dict({}), seed=seed).eval()


def batch(n=6, seed=1):
    return ToySeq.from_dict({}).sample({}, rng.key_of(seed), n)


def test_forward_shapes_and_tied_projection():
    model = tiny()
    x, y = batch()
    logits, acts = model(x, acts=True)
    assert logits.shape == (6, 5, 12)
    assert acts["memory"].shape == (6, 5, 16) and acts["readout"].shape == (6, 5, 16)
    names = dict(model.named_parameters())
    assert "proj.weight" not in names and "out_bias" in names
    # the logits are the decoder readout times the decoder embedding (plus the bias)
    expect = acts["readout"] @ model.dec_embed.weight.T + model.out_bias
    assert torch.allclose(logits, expect, atol=1e-5)
    logits.sum().backward()
    assert model.dec_embed.weight.grad[PAD].abs().sum() > 0  # not a decoder input: via the projection
    assert torch.all(model.enc_embed.weight[PAD] == 0)


def test_causal_mask_and_encoder_pad_ignored():
    model = tiny()
    x, _ = batch()
    base = model(x)
    later = x.clone()
    later[:, -1] = (later[:, -1] + 1 - DIGIT0) % 10 + DIGIT0  # change the last decoder token
    out = model(later)
    assert torch.allclose(out[:, :-1], base[:, :-1], atol=1e-6)
    assert not torch.allclose(out[:, -1], base[:, -1])
    # the encoder's pad column is a masked key: its embedding cannot reach the outputs
    with torch.no_grad():
        model.enc_embed.weight[PAD] += 3.0
    assert torch.allclose(model(x), base, atol=1e-5)


def test_parallel_cross_option_changes_the_block():
    x, _ = batch()
    a, b = tiny(parallel_cross=False), tiny(parallel_cross=True)
    assert not torch.allclose(a(x), b(x))


def naive_greedy(model, xe, dec_len):
    """One sequence at a time, the whole decoder recomputed at every step."""
    rows = []
    for i in range(xe.shape[0]):
        seq = [EOS]
        out = []
        for t in range(dec_len):
            full = torch.tensor([list(xe[i]) + seq + [PAD] * (dec_len - len(seq))])
            tok = int(model(full)[0, t].argmax())
            out.append(tok)
            if tok == EOS:
                break
            seq.append(tok)
        rows.append(out + [PAD] * (dec_len - len(out)))
    return torch.tensor(rows)


def test_greedy_equals_naive_and_beam1():
    model = tiny(seed=3)
    x, _ = batch(8)
    xe = x[:, :5]
    with torch.no_grad():
        g = greedy_decode(module_parts(model), xe, 5)
        assert torch.equal(g, naive_greedy(model, xe, 5))
        assert torch.equal(beam_decode(module_parts(model), xe, 5, beam=1), g)
        b3 = beam_decode(module_parts(model), xe, 5, beam=3)
    assert b3.shape == g.shape


def test_beam_finds_a_sequence_at_least_as_likely_as_greedy():
    model = tiny(seed=5)
    x, _ = batch(8)
    xe = x[:, :5]

    def logprob(tokens):
        dec = torch.cat([torch.full((8, 1), EOS), tokens[:, :-1]], 1)
        lp = model(torch.cat([xe, dec], 1)).log_softmax(-1).gather(-1, tokens[..., None])[..., 0]
        stop = (tokens == EOS).long().cumsum(-1)
        live = (stop == 0) | ((stop == 1) & (tokens == EOS))  # up to and including <eos>
        return (lp * live).sum(-1)
    with torch.no_grad():
        g = greedy_decode(module_parts(model), xe, 5)
        b = beam_decode(module_parts(model), xe, 5, beam=4, length_penalty=0.0)
        assert torch.all(logprob(b) >= logprob(g) - 1e-5)


def test_stack_member_equals_model_alone():
    task = ToySeq.from_dict({})
    stack = Stack("lawt", TINY, task, [Member(seed=0), Member(seed=7)])
    x, _ = batch(5)
    alone = build_model("lawt", TINY, task, seed=7).eval()
    with torch.no_grad():
        out = stack.forward(x)
        assert torch.allclose(out[1], alone(x), atol=1e-5)
        assert torch.allclose(stack.member(1)(x), alone(x), atol=1e-5)
        g = stack_greedy(stack, x[:, :5], 5)
        assert torch.equal(g[1], greedy_decode(module_parts(alone), x[:, :5], 5))
        assert torch.equal(stack_beam(stack, x[:, :5], 5, beam=1), g)


def test_members_decoded_in_a_loop_give_the_vmapped_tokens():
    """How the members are mapped changes the cost, not the tokens: a plain loop (the CPU rule;
    greedy stops once every sequence has ended) and one vmap over the stack agree, greedy and
    beam, and the early stop leaves the positions after <eos> as <pad>."""
    task = ToySeq.from_dict({})
    stack = Stack("lawt", TINY, task, [Member(seed=3), Member(seed=5), Member(seed=8)])
    xe = batch(12, seed=6)[0][:, :5]
    with torch.no_grad():
        stack.params["out_bias"][1, EOS] = 50.0  # member 1 ends every sequence at once
        looped, vmapped = stack_greedy(stack, xe, 5, chunk=1), stack_greedy(stack, xe, 5, chunk=None)
        assert torch.equal(looped, vmapped)
        assert (looped[1, :, 0] == EOS).all() and (looped[1, :, 1:] == stack.base.pad_id).all()
        assert torch.equal(stack_beam(stack, xe, 5, beam=2, chunk=1),
                           stack_beam(stack, xe, 5, beam=2, chunk=None))


@pytest.mark.parametrize("parallel_cross", [False, True])
def test_cached_decoding_gives_the_uncached_tokens(parallel_cross):
    """The key/value cache changes the cost, not the tokens: greedy and beam, a module and a
    stack member, both decoder forms."""
    task = ToySeq.from_dict({})
    model = tiny(seed=11, parallel_cross=parallel_cross)
    xe = batch(16, seed=4)[0][:, :5]
    parts = module_parts(model)
    stack = Stack("lawt", {**TINY, "parallel_cross": parallel_cross}, task,
                  [Member(seed=2), Member(seed=9)])
    with torch.no_grad():
        assert torch.equal(greedy_decode(parts, xe, 5), greedy_decode(parts, xe, 5, cached=False))
        assert torch.equal(beam_decode(parts, xe, 5, beam=3),
                           beam_decode(parts, xe, 5, beam=3, cached=False))
        assert torch.equal(stack_greedy(stack, xe, 5), stack_greedy(stack, xe, 5, cached=False))
        assert torch.equal(stack_beam(stack, xe, 5, beam=3),
                           stack_beam(stack, xe, 5, beam=3, cached=False))
        # the step's logits are the full forward's, position by position
        tokens = greedy_decode(parts, xe, 5)
        dec = torch.cat([torch.full((16, 1), EOS), tokens[:, :-1]], 1)
        full = model(torch.cat([xe, dec], 1))
        memory = model(xe, part="encode")
        ckv, cache = model(memory, part="cross_kv"), [None, None]
        for t in range(5):
            logits, cache = model(dec[:, t:t + 1], part="decode_step", t=t, cross_kv=ckv,
                                  src_keep=xe != PAD, cache=cache)
            assert torch.allclose(logits[:, 0], full[:, t], atol=1e-5)


def test_ce_seq_ignores_pad_and_matches_cross_entropy():
    logits = torch.randn(3, 4, 7)
    y = torch.tensor([[2, 3, 0, 1], [4, 0, 1, 1], [5, 6, 2, 0]])
    loss = get_loss("ce_seq")
    ref = torch.nn.functional.cross_entropy(logits.reshape(-1, 7), y.reshape(-1), ignore_index=PAD)
    assert torch.allclose(loss.fn(logits, y), ref, atol=1e-6)
    assert torch.equal(loss.predict(logits), logits)


def test_learns_toy_copy_quickly():
    torch.manual_seed(0)
    task = ToySeq.from_dict({"n": 3})
    stack = Stack("lawt", {"d_model": 32, "n_heads": 2, "n_enc_layers": 1, "n_dec_layers": 1},
                  task, [Member(seed=0, lr=3e-3)])
    cfg = TrainConfig(steps=300, batch=64, loss="ce_seq", eval_every=50, eval_batch=256,
                      converge="acc", converge_acc=0.99)
    train(stack, cfg)
    x, y = task.sample({}, rng.key_of(99), 256)
    with torch.no_grad():
        pred = stack_greedy(stack, x[:, :task.encoder_len], task.decoder_len)[0]
    assert ((pred == y) | (y == PAD)).all(-1).float().mean() >= 0.95


@pytest.mark.parametrize("bad", [{"d_model": 30, "n_heads": 8}, {"max_len": 2}])
def test_bad_config_is_an_input_error(bad):
    from biaslab.errors import InputError

    with pytest.raises(InputError):
        build_model("lawt", {**TINY, **bad}, ToySeq.from_dict({}), seed=0)
