"""Issue 10 item 6 (anchor functions): the warmup start, the authors' head bias, the embedding
stable rank on used rows, centred fused cosines with mirror pairs apart, runs grouped by the
solution they found, and the new rules on made-up tables (PASS, FAIL, INCONCLUSIVE)."""

import math

import numpy as np
import torch

from biaslab.execute.plan import identity_config
from biaslab.experiments.zhang_anchor.protocol import by_solution, solution_of
from biaslab.measure import anchor as A
from biaslab.models.base import build_model
from biaslab.registry import CLAIMS, load_all
from biaslab.tasks import make_task
from biaslab.train import TrainConfig
from biaslab.train.trainer import lr_multiplier

load_all()


# -- the warmup start -----------------------------------------------------------------------------
def test_warmup_start_ratio_schedule():
    steps = torch.arange(0, 12)
    old = TrainConfig(steps=100, schedule="warmup_cosine", warmup_steps=10, min_lr_ratio=0.04)
    new = old.model_copy(update={"warmup_start_ratio": 0.04})
    # default 0: exactly the old warmup (s + 1) / w
    assert torch.equal(lr_multiplier(old, steps, torch.float64)[:10], (steps[:10].double() + 1) / 10.0)
    m = lr_multiplier(new, steps, torch.float64)
    # linear from peak/25 (step 0 is one step into the ramp) to the peak, then the cosine
    assert math.isclose(float(m[0]), 0.04 + 0.96 * 0.1, rel_tol=1e-12)
    assert math.isclose(float(m[9]), 1.0, rel_tol=1e-12)
    assert torch.allclose(m[1:10] - m[:9], torch.full((9,), 0.096, dtype=torch.float64))
    assert torch.equal(m[10:], lr_multiplier(old, steps, torch.float64)[10:])


def test_warmup_start_ratio_keeps_old_run_ids():
    cfg = {"seed": 1, "train": TrainConfig(steps=10).model_dump()}
    assert "warmup_start_ratio" not in identity_config(cfg)["train"]  # at 0: old ids unchanged
    cfg["train"]["warmup_start_ratio"] = 0.04
    assert identity_config(cfg)["train"]["warmup_start_ratio"] == 0.04


# -- the head bias as the authors build it -----------------------------------------------------------
def test_head_bias_keeps_torch_default_under_gamma():
    task = make_task("anchor", {})
    base = {"d_model": 16, "d_ff": 32, "d_head": 8, "n_layers": 1}
    plain = build_model("decoder", base, task, seed=3)  # no gamma: PyTorch defaults everywhere
    torch_b = build_model("decoder", {**base, "head_bias_init": "torch"}, task, seed=3, gamma=0.8)
    gamma_b = build_model("decoder", base, task, seed=3, gamma=0.8)
    # 'torch': the bias drawn by nn.Linear's default (same seed, same draw order), untouched
    assert torch.equal(torch_b.head_bias, plain.head.bias)
    assert float(torch_b.head_bias.detach().abs().max()) <= 16 ** -0.5
    assert torch_b.head.bias is None and "head.bias" not in dict(torch_b.named_parameters())
    # the weights are gamma-drawn in both, identically (the bias is the only difference)
    assert torch.equal(torch_b.head.weight, gamma_b.head.weight)
    # default 'gamma' (old behaviour): the bias redrawn, with std 16^-0.8 ~ 0.109
    assert not torch.equal(gamma_b.head.bias, plain.head.bias)
    x = task.sample({}, torch.tensor(0), 8, "train")[0]
    _, acts = torch_b(x, acts=True)
    expect = acts["readout"] @ torch_b.head.weight.T + torch_b.head_bias
    assert torch.allclose(torch_b(x), expect, atol=1e-6)


# -- stable rank of the used embedding rows -----------------------------------------------------------
def test_used_embedding_stable_rank_exact():
    task = make_task("anchor", {})
    used = A.input_tokens(task)
    assert used.tolist() == [1, 2, 3, 4] + list(range(20, 100))
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(task.vocab_size, 12, generator=g)  # unused rows: a random init
    u, w = torch.randn(len(used), generator=g), torch.randn(12, generator=g)
    emb[used] = u[:, None] * w[None, :]  # used rows: exactly rank one
    assert math.isclose(float(A.used_embedding_stable_rank(emb, used)), 1.0, rel_tol=1e-5)
    # two orthogonal directions with singular values 3 and 1: (9 + 1) / 9
    e2 = torch.zeros(task.vocab_size, 4)
    e2[used[:2]] = torch.tensor([[3.0, 0, 0, 0], [0, 1.0, 0, 0]])
    assert math.isclose(float(A.used_embedding_stable_rank(e2, used)), 10 / 9, rel_tol=1e-6)
    # the full table (the old measure): its random unused rows lift it well above one
    sv = np.linalg.svd(emb.numpy(), compute_uv=False)
    full = float(A.stable_rank(emb))
    assert math.isclose(full, float((sv ** 2).sum() / sv[0] ** 2), rel_tol=1e-5) and full > 1.5


# -- centred fused cosines, mirror pairs apart --------------------------------------------------------
def test_fused_similarity_centred_and_mirror_split_against_numpy():
    task = make_task("anchor", {})
    keys, pairs = [30, 31, 33], ["1,2", "2,1", "3,3", "2,2", "1,3"]
    x = A.probe_sequences(task, keys, pairs)
    g = torch.Generator().manual_seed(1)
    vecs = torch.randn(len(x), 6, dtype=torch.float64, generator=g) + 2.0  # a common component
    fn = lambda t, acts=False: (None, {"readout": vecs})  # noqa: E731
    out = A.fused_similarity(fn, task, x, act="readout", center=True)
    # independent: numpy, from the (key, pair) grid itself
    grid = [(k, *map(int, p.split(","))) for k in keys for p in pairs]
    shift = {1: 5, 2: 1, 3: -2, 4: -8}
    val = np.array([k + shift[a] + shift[b] for k, a, b in grid])
    v = vecs.numpy() - vecs.numpy().mean(0)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    cos = v @ v.T
    n = len(grid)
    mirror = np.array([[i != j and grid[i][0] == grid[j][0] and grid[i][1] == grid[j][2]
                        and grid[i][2] == grid[j][1] for j in range(n)] for i in range(n)])
    same = (val[:, None] == val[None, :]) & ~np.eye(n, dtype=bool)
    assert mirror.sum() == 6  # (1,2)/(2,1) at each of 3 keys, both orders
    np.testing.assert_allclose(out["same_mirror"], cos[same & mirror].mean(), rtol=1e-10)
    np.testing.assert_allclose(out["same_other"], cos[same & ~mirror].mean(), rtol=1e-10)
    np.testing.assert_allclose(out["different"], cos[val[:, None] != val[None, :]].mean(), rtol=1e-10)
    # uncentred (old column): the common component lifts every cosine
    raw = A.fused_similarity(fn, task, x, act="readout")
    assert float(raw["different"]) > float(out["different"]) + 0.5


# -- solutions and the new rules on made-up tables ----------------------------------------------------
def mrow(gamma, seed, inf=0.0, sym=0.0, seen=1.0, **m):
    return {"gamma": gamma, "seed": seed, "inferential_acc": inf, "symmetric_acc": sym,
            "seen_test_acc": seen, "diverged": 0.0, **m}


def test_solution_of_and_grouping():
    assert solution_of(mrow(0.8, 1, inf=0.95)) == "inferential"
    assert solution_of(mrow(0.5, 1, sym=0.97)) == "symmetric"
    assert solution_of(mrow(0.8, 1, inf=0.4, sym=0.3)) == "other"
    assert solution_of(mrow(0.8, 1, inf=0.95, seen=0.5)) is None  # not valid
    t = [mrow(0.8, 1, inf=0.95, q=1.0), mrow(0.5, 1, sym=0.97, q=2.0), mrow(0.8, 2, q=3.0),
         mrow(0.5, 2, sym=1.0, seen=0.2, q=4.0)]
    assert by_solution(t, "q") == {"inferential": [1.0], "symmetric": [2.0], "other": [3.0]}

