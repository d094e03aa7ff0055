"""Anchor measures against hand-computed values, fake models and a tiny stack."""

import pytest
import torch
import torch.nn.functional as F

import biaslab.models.decoder  # noqa: F401  (registers "decoder")
import biaslab.tasks.anchor  # noqa: F401  (registers "anchor")
from biaslab import rng
from biaslab.measure import anchor as M
from biaslab.tasks import make_task
from biaslab.train import Member, Stack

SMALL = {"d_model": 32, "d_ff": 64, "d_head": 16, "n_layers": 2}


@pytest.fixture(scope="module")
def task():
    return make_task("anchor", {})


def answering(task, target_of):
    """A fake model whose logits are one-hot at ``target_of(x)``."""
    return lambda x: F.one_hot(target_of(x), task.vocab_size).float()


def test_heldout_inferential_and_symmetric(task):
    key = rng.key_of(0)
    r = M.heldout_accuracy(answering(task, task.inferential_target), task, key, batch=512)
    assert r["inferential"] == 1 and r["symmetric"] == 0 and r["other"] == 0
    assert r["hist"][r["offsets"] == 0] == 1 and r["outside"] == 0
    r = M.heldout_accuracy(answering(task, task.symmetric_target), task, key, batch=512)
    assert r["inferential"] == 0 and r["symmetric"] == 1 and r["other"] == 0
    assert r["hist"][r["offsets"] == 4] == 1  # x-6 is +4 from x-10
    r = M.heldout_accuracy(answering(task, lambda x: task.locate(x)["key"] + 30), task, key,
                           batch=512, radius=16)
    assert r["other"] == 1 and r["outside"] == 1 and r["hist"].sum() == 0


def test_heldout_mixed_and_stacked_shapes(task):
    def fn(x):  # member 0 inferential, member 1 symmetric on even rows, key - 7 on odd rows
        inf, sym = task.inferential_target(x), task.symmetric_target(x)
        odd = torch.arange(len(x)) % 2 == 1
        second = torch.where(odd, task.locate(x)["key"] - 7, sym)
        return F.one_hot(torch.stack([inf, second]), task.vocab_size).float()

    r = M.heldout_accuracy(fn, task, rng.key_of(1), batch=400)
    assert torch.equal(r["inferential"], torch.tensor([1.0, 0.0]))
    assert torch.equal(r["symmetric"], torch.tensor([0.0, 0.5]))
    assert torch.equal(r["other"], torch.tensor([0.0, 0.5]))
    assert r["hist"].shape == (2, 33)
    assert r["hist"][1, r["offsets"] == 3] == 0.5 and r["hist"][1, r["offsets"] == 4] == 0.5


def test_seen_accuracy(task):
    r = M.seen_accuracy(answering(task, task.trained_target), task, rng.key_of(2), batch=2000)
    assert r["acc"] == 1
    pp = r["per_pair"]
    assert pp.shape == (4, 4) and torch.isnan(pp[3, 2]) and bool((pp.nan_to_num(1) == 1).all())
    # the inferential answer is wrong exactly on the perturbed pair (3,4): x-10 vs trained x-6
    r = M.seen_accuracy(answering(task, task.inferential_target), task, rng.key_of(2), batch=2000)
    assert r["per_pair"][2, 3] == 0 and r["per_pair"][0, 0] == 1
    x, _ = task.sample({}, M.rng.derive(rng.key_of(2), M.SEEN_STREAM), 2000, "test")
    loc = task.locate(x)
    share_34 = ((loc["a1"] == 3) & (loc["a2"] == 4)).float().mean()
    assert torch.isclose(r["acc"], 1 - share_34)


def test_attention_flow_by_hand():
    L = 9
    to_first = torch.zeros(L, L)
    to_first[:, 0] = 1  # every query attends to position 0
    attn = {"layers.0.attn": to_first[None, None], "layers.1.attn": torch.eye(L)[None, None]}
    r = M.attention_flow(lambda x, acts: (None, attn), torch.zeros(1, L, dtype=torch.long))
    # layer 1 is the identity, so R = 0.5 to_first + 0.5 I
    want = 0.5 * to_first + 0.5 * torch.eye(L)
    assert torch.allclose(r["rollout"][0], want) and r["attn"].shape == (2, 1, 1, L, L)
    assert r["last"][0, 0] == 0.5 and r["last"][0, -1] == 0.5 and r["last"][0, 1:-1].sum() == 0


def test_attention_flow_stack(task):
    stack = Stack("decoder", SMALL, task, [Member(seed=s, gamma=0.5) for s in range(2)])
    x = M.probe_sequences(task, [99], ["4,3"])
    assert x.tolist()[0][3:6] == [99, 4, 3]
    r = M.attention_flow(stack, x)
    assert r["attn"].shape == (2, 2, 1, 1, 9, 9) and r["rollout"].shape == (2, 1, 9, 9)
    assert torch.allclose(r["rollout"].sum(-1), torch.ones(2, 1, 9), atol=1e-5)
    assert float(r["rollout"].triu(1).abs().max()) == 0.0  # causal flow


def test_fused_similarity_by_hand(task):
    x = M.probe_sequences(task, range(30, 41), task.train_pairs)
    assert x.shape == (11 * 15, 9)

    def fn(x, acts):  # last-token vector = one-hot of the composite value
        v = F.one_hot(task.inferential_target(x), task.vocab_size).float()
        h = torch.zeros(len(x), 9, task.vocab_size)
        h[:, -1] = v
        return None, {"layers.0.attn": None, "layers.0.ao": h, "readout": v + 1e-3}

    r = M.fused_similarity(fn, task, x)
    assert r["cos"].shape == (165, 165)
    assert torch.isclose(r["same"], torch.tensor(1.0)) and torch.isclose(r["different"], torch.tensor(0.0))
    assert torch.isclose(r["gap"], torch.tensor(1.0))
    r = M.fused_similarity(fn, task, x, act="readout")
    assert r["same"] > 0.99 and r["different"] < 0.01


def test_fused_similarity_stack(task):
    stack = Stack("decoder", SMALL, task, [Member(seed=s) for s in range(2)])
    x = M.probe_sequences(task, range(30, 34), task.train_pairs)
    r = M.fused_similarity(stack, task, x)
    assert r["cos"].shape == (2, 60, 60) and r["same"].shape == (2,)
    assert torch.allclose(r["cos"].diagonal(dim1=-2, dim2=-1), torch.ones(2, 60), atol=1e-5)


def test_condensation():
    row = torch.randn(16)
    assert M.condensation(row.expand(10, 16)) == 1
    assert M.condensation(torch.eye(8)) == 0
    w = torch.tensor([[1.0, 0.0], [-2.0, 0.0], [0.0, 1.0]])  # one anti-aligned pair of three
    assert M.condensation(w) == 0  # signed, as the paper's "cos > 0.7"
    assert torch.isclose(M.condensation(w, signed=False), torch.tensor(1 / 3))
    w2 = torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0]])  # cos 0.9988 and 0.0499, 0.0
    assert torch.isclose(M.condensation(w2), torch.tensor(1 / 3))
    assert torch.equal(M.condensation(torch.stack([row.expand(4, 16), torch.eye(4, 16)])),
                       torch.tensor([1.0, 0.0]))


def test_stable_rank():
    u, v = torch.randn(7, 1), torch.randn(1, 5)
    assert torch.isclose(M.stable_rank(u @ v), torch.tensor(1.0), atol=1e-5)
    assert torch.isclose(M.stable_rank(torch.eye(6)), torch.tensor(6.0))
    assert torch.allclose(M.stable_rank(torch.stack([torch.diag(torch.tensor([2.0, 1.0])),
                                                     torch.eye(2)])), torch.tensor([1.25, 2.0]))


def test_weight_measures_on_stack(task):
    stack = Stack("decoder", SMALL, task, [Member(seed=s, gamma=g) for s, g in [(0, 0.5), (1, 0.8)]])
    ranks = M.stable_ranks(stack)
    assert "layers.0.attn.q.weight" in ranks and "layers.0.ln1.weight" not in ranks
    assert all(v.shape == (2,) for v in ranks.values())
    member0 = M.stable_ranks(stack.member_state(0))
    assert torch.isclose(member0["token_embed.weight"], ranks["token_embed.weight"][0].cpu())
    assert M.query_condensation(stack.params).shape == (2,)
    q = stack.params["layers.0.attn.q.weight"]
    assert torch.equal(M.query_condensation(stack), torch.stack([M.condensation(w) for w in q]))
    assert M.embedding_order(stack)["rho"].shape == (2, 2)


def test_embedding_order():
    tokens = torch.arange(20, 100)
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(201, 6, generator=g) * 1e-3
    emb[:, 0] = torch.arange(201).float()  # value along one direction
    r = M.embedding_order(emb, tokens)
    assert torch.isclose(r["max"], torch.tensor(1.0)) and torch.isclose(r["rho"][0], torch.tensor(1.0))
    shuffled = emb.clone()
    shuffled[20:100, 0] = shuffled[20:100, 0][torch.randperm(80, generator=g)]
    assert M.embedding_order(shuffled, tokens)["rho"][0] < 0.4
    # batched over members, same answer
    both = M.embedding_order(torch.stack([emb, -emb]), tokens)
    assert torch.allclose(both["max"], torch.ones(2))


def test_stack_heldout_equals_member_loop(task):
    stack = Stack("decoder", SMALL, task, [Member(seed=s, gamma=0.5) for s in range(2)])
    key = rng.key_of(9)
    r = M.heldout_accuracy(stack, task, key, batch=256, radius=200)
    assert r["inferential"].shape == (2,)
    s = M.seen_accuracy(stack, task, key, batch=256)
    for i in range(2):
        one = M.heldout_accuracy(stack.member(i), task, key, batch=256, radius=200)
        assert torch.equal(one["hist"], r["hist"][i])
        assert torch.equal(M.seen_accuracy(stack.member(i), task, key, batch=256)["acc"], s["acc"][i])


def test_registered():
    from biaslab.registry import MEASURES

    for name in ("anchor_heldout", "anchor_seen", "attention_flow", "anchor_fused_similarity",
                 "query_condensation", "stable_rank", "embedding_order"):
        assert name in MEASURES
        assert MEASURES.get(name).lifts_stacks
