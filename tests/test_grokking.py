"""The grokking model, its measures (sensitivity, Fourier share), the phase rules and the experiment."""

import math

import numpy as np
import pytest
import torch

from biaslab import rng
from biaslab.errors import InputError
from biaslab.measure.grokking import (embedding_noise_flips, fourier_share,
                                      frequency_energy, key_frequencies,
                                      token_replacement_flips)
from biaslab.measure.tokenwise import EMBED_STREAM, TOKEN_STREAM, EmbeddingNoise, tokenwise_flip_sensitivity
from biaslab.models import build_model
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train

TINY = {"d_model": 8, "n_heads": 2, "d_ff": 16}
LOUD = {**TINY, "gamma": 0.5}  # larger weights: unit noise flips some labels of an untrained model


def _task(p=5, frac=0.6):
    return make_task("modular", {"p": p, "train_fraction": frac})


# -- the model ------------------------------------------------------------------------------------
def test_reference_model_shape_and_init():
    t = make_task("modular", {})
    m = build_model("grokking", {}, t, seed=42)
    # 114*128 + 3*128 + 4*(128*128+128) + (128*512+512) + (512*128+128) + (128*113+113)
    assert sum(p.numel() for p in m.parameters()) == 227_313  # the sheet's "about 0.23M"
    assert torch.count_nonzero(m.pos_embed) == 0  # zero-initialised positions
    assert torch.count_nonzero(m.attn.q.bias) == 0 and torch.count_nonzero(m.attn.out.bias) == 0
    bound = math.sqrt(6 / (4 * 128))  # xavier over the fused [3d, d] in-projection
    assert m.attn.v.weight.abs().max() <= bound and m.attn.v.weight.abs().max() > 0.9 * bound
    norm = torch.sqrt(sum(p.pow(2).sum() for p in m.parameters()))
    assert 115 < norm < 130  # dominated by the N(0,1) token embedding, sqrt(114*128) = 121


def test_forward_is_forward_embedded_of_embed_and_has_no_residual():
    t = _task()
    m = build_model("grokking", TINY, t, seed=0)
    x = t.make_state(0)["subset"]
    out = m(x)
    assert torch.equal(out, m.forward_embedded(m.embed(x)))
    _, acts = m(x, acts=True)
    # no residual: the read-out is fc2(relu(fc1(attention output at "=")))
    expect = m.fc2(torch.relu(m.fc1(acts["attn_out"][:, -1])))
    assert torch.allclose(acts["readout"], expect)
    assert not hasattr(m, "ln") and not any(isinstance(mod, torch.nn.LayerNorm) for mod in m.modules())


def test_stack_member_follows_its_alone_trajectory():
    t = _task()
    cfg = TrainConfig(steps=6, batch=t.n_train, loss="ce", eval_every=3, converge="none",
                      stop_on_converge=False)
    members = [Member(seed=s, lr=1e-2, weight_decay=1.0) for s in (3, 4)]
    stack = Stack("grokking", TINY, t, members, dtype=torch.float64)
    train(stack, cfg)
    for i, m in enumerate(members):
        alone = Stack("grokking", TINY, t, [m], dtype=torch.float64)
        train(alone, cfg)
        for k in stack.params:
            assert torch.allclose(stack.params[k][i], alone.params[k][0], atol=1e-10), k


# -- sensitivity ------------------------------------------------------------------------------------
def _brute_force_embedding_flips(module, x, sigma, key):
    """Example by example: draw the reference's noise for a and b, add it, compare argmaxes."""
    B, D = x.shape[0], module.token_embed.embedding_dim
    k = rng.derive(torch.as_tensor(key), EMBED_STREAM, 0)
    z = rng.normal(k, (B, 1, 2, D)) * sigma  # [example, slot, position in {a, b}, dim]
    flips = 0
    with torch.no_grad():
        for b in range(B):
            e = module.token_embed(x[b]) + module.pos_embed
            noisy = e.clone()
            noisy[0] += z[b, 0, 0]
            noisy[1] += z[b, 0, 1]
            clean = module.forward_embedded(e[None]).argmax(-1)
            flips += int(module.forward_embedded(noisy[None]).argmax(-1) != clean)
    return flips / B


def test_embedding_sensitivity_equals_a_brute_force_loop():
    t = _task(p=7, frac=0.5)
    stack = Stack("grokking", LOUD, t, [Member(seed=s) for s in (0, 1, 2)])
    x = stack.task_states["subset"]  # each member its own split: [M, B, 3]
    got = embedding_noise_flips(stack, x, sigma=1.0, key=11)
    want = [_brute_force_embedding_flips(stack.member(i), x[i], 1.0, 11) for i in range(3)]
    assert got.tolist() == pytest.approx(want)
    assert 0 < max(want) < 1  # the noise is large enough to flip some labels, not all


def test_embedding_sensitivity_agrees_with_the_shared_measure():
    t = _task(p=7, frac=0.5)
    stack = Stack("grokking", LOUD, t, [Member(seed=s) for s in (0, 1)])
    x = stack.task_states["subset"][0]
    mine = embedding_noise_flips(stack, x.expand(2, -1, -1), sigma=0.7, key=5)
    shared = tokenwise_flip_sensitivity(stack, x, EmbeddingNoise(0.7), key=5, positions=[[0, 1]])
    assert mine.double().tolist() == pytest.approx(shared["mean"].tolist())


def test_token_replacement_sensitivity_equals_a_brute_force_loop():
    t = _task(p=7, frac=0.5)
    stack = Stack("grokking", LOUD, t, [Member(seed=s) for s in (0, 1)])
    x = stack.task_states["subset"]
    got = token_replacement_flips(stack, x, t.vocab_size, key=3)
    B = x.shape[1]
    new = rng.randint(rng.derive(torch.tensor(3), TOKEN_STREAM, 0), (B, 1, 2), t.vocab_size)
    for i in range(2):
        m = stack.member(i)
        flips = 0
        for b in range(B):
            xb = x[i, b].clone()
            y0 = m(xb[None]).argmax(-1)
            xb[0], xb[1] = new[b, 0, 0], new[b, 0, 1]
            flips += int(m(xb[None]).argmax(-1) != y0)
        assert got[i].item() == pytest.approx(flips / B)
    assert got.max() > 0


# -- Fourier share ------------------------------------------------------------------------------------
def test_fourier_share_of_a_pure_frequency_is_one():
    p, d, k = 13, 6, 4
    a = torch.arange(p, dtype=torch.float64)[:, None]
    c = torch.randn(1, d, dtype=torch.float64)
    cosine = torch.cos(2 * math.pi * k * a / p) * c
    assert fourier_share(cosine, top_k=1).item() == pytest.approx(1.0, abs=1e-6)
    assert key_frequencies(cosine, top_k=1).item() == k
    phase = torch.cos(2 * math.pi * k * a / p + torch.rand(1, d, dtype=torch.float64) * 6)
    assert fourier_share(phase, top_k=1).item() == pytest.approx(1.0, abs=1e-6)
    # two frequencies with amplitudes 2 and 1: the top one holds 4/5 of the energy
    two = 2 * torch.cos(2 * math.pi * 2 * a / p) * c + torch.sin(2 * math.pi * 5 * a / p) * c
    assert fourier_share(two, top_k=1).item() == pytest.approx(0.8, abs=1e-6)
    assert fourier_share(two, top_k=2).item() == pytest.approx(1.0, abs=1e-6)


def test_fourier_energy_is_parseval_and_random_embeddings_spread():
    g = torch.Generator().manual_seed(0)
    for p in (12, 13):  # even p has an unpaired Nyquist frequency
        e = torch.randn(p, 32, generator=g, dtype=torch.float64)
        assert frequency_energy(e).sum().item() == pytest.approx(p * e.pow(2).sum().item(), rel=1e-6)
    e = torch.randn(3, 113, 64, generator=g)
    share = fourier_share(e, top_k=5)
    assert share.shape == (3,) and (share < 0.2).all()  # ~5/56 for an isotropic embedding


# -- phase rules on made-up curves -------------------------------------------------------------------
def _curves(sens_shape="falls", groks=True, wnorm_falls=True):
    e = np.arange(10, 5001, 10, dtype=float)
    train_acc = np.where(e >= 200, 1.0, e / 200 * 0.9)
    test_acc = np.full_like(e, 0.3)
    if groks:
        test_acc = np.where(e >= 3500, 1.0, np.where(e >= 3000, 0.3 + (e - 3000) / 700, 0.3))
    if sens_shape == "falls":  # peak ~9 % at 600, then a steady fall to ~1 %
        sens = np.where(e < 600, 0.03 + 0.06 * e / 600, 0.09 * np.exp(-(e - 600) / 800))
    else:  # rises through the plateau
        sens = 0.01 + 0.08 * e / e[-1]
    wn = 60 - 20 * e / e[-1] if wnorm_falls else 40 + 20 * e / e[-1]
    return e, train_acc, test_acc, sens, wn


def test_rules_pass_on_a_reference_like_run():
    from biaslab.experiments.vasudeva.grokking_phases import analyse_run

    r = analyse_run(*_curves())
    assert r["t_fit"] == 200 and r["t_jump"] == 3140 and r["qualifies"] == 1.0
    assert r["t_rise"] == 3070 and 570 <= r["t_peak"] <= 630  # the smoothed peak
    assert (r["rule1"], r["rule2"], r["rule3"]) == (1.0, 1.0, 1.0)
    assert r["sens_end"] < r["sens_start"] and r["sens_rho"] < 0


def test_rules_fail_when_sensitivity_rises_or_weight_norm_grows():
    from biaslab.experiments.vasudeva.grokking_phases import analyse_run

    r = analyse_run(*_curves(sens_shape="rises", wnorm_falls=False))
    assert r["qualifies"] == 1.0
    assert (r["rule1"], r["rule2"], r["rule3"]) == (0.0, 0.0, 0.0)


def test_rules_are_inconclusive_without_grokking_and_judge_over_runs():
    from biaslab.experiments.vasudeva.grokking_phases import analyse_run, verdict_over_runs

    never = analyse_run(*_curves(groks=False))
    assert never["qualifies"] == 0.0 and math.isnan(never["rule1"]) and "groks" in never["reason"]
    good, bad = analyse_run(*_curves()), analyse_run(*_curves(sens_shape="rises"))
    assert verdict_over_runs([good, good, good, never], "rule1")[0] == "PASS"
    assert verdict_over_runs([bad, bad, good], "rule1")[0] == "FAIL"
    assert verdict_over_runs([good, good, bad], "rule1")[0] == "INCONCLUSIVE"  # mixed
    assert verdict_over_runs([good, good, never], "rule1")[0] == "INCONCLUSIVE"  # < 3 grokked


def test_rules_pass_the_authors_curve_shape():
    """The reference notebook's curve (sheet §5): an early spike and dip (~3 % at 500), a rise
    to ~9 % at 3000, a fall below 1 % by the jump near 10,000: every rule must PASS it."""
    from claim_tables.vasudeva import authors_curves
    from biaslab.experiments.vasudeva.grokking_phases import analyse_run

    e, train_acc, test_acc, sens, wn = authors_curves()
    assert abs(sens[e == 500][0] - 0.03) < 0.005 and abs(sens[e > 500].max() - 0.09) < 0.005
    r = analyse_run(e, train_acc, test_acc, sens, wn)
    assert r["qualifies"] == 1.0 and 2800 <= r["t_peak"] <= 3200, r
    assert (r["rule1"], r["rule2"], r["rule3"]) == (1.0, 1.0, 1.0), r


# -- the experiment -----------------------------------------------------------------------------------
def test_experiment_runs_a_tiny_stack_and_draws(tmp_path):
    from biaslab.experiments.vasudeva.figures.grokking import grokking_figure
    from biaslab.experiments.vasudeva.grokking_sensitivity import (CURVES, GrokkingSensitivity,
                                                                   GrokkingSpec)

    exp = GrokkingSensitivity()
    spec = GrokkingSpec(p=5, train_fraction=0.6, seeds=[0, 1], epochs=12, measure_every=3,
                        write_every=2, sharpness_every=2, fourier_top_k=1,
                        model={"name": "grokking", "params": TINY})
    plans = exp.plan(spec)
    assert [p.config["seed"] for p in plans] == [0, 1] and len({p.group for p in plans}) == 1
    assert plans[0].config["train"]["batch"] == 15  # full batch: 60 % of 25 pairs
    outs = exp.run_group(spec, plans, torch.device("cpu"))
    c = outs[0].arrays["curves"]
    assert c.shape == (4, len(CURVES)) and c[:, 0].tolist() == [3, 6, 9, 12]
    col = dict(zip(CURVES, c.T))
    assert np.isfinite(col["sharpness"]).tolist() == [True, False, True, False]
    assert ((col["sensitivity"] >= 0) & (col["sensitivity"] <= 1)).all()
    assert (col["weight_norm"] > 0).all() and ((col["test_acc"] >= 0) & (col["test_acc"] <= 1)).all()
    files = {}
    for o in outs:
        path = tmp_path / f"{o.plan.id}.npy"
        np.save(path, o.arrays["curves"])
        files[o.plan.id] = {"curves": str(path)}
    table = [{"run_id": o.plan.id, **o.plan.config, **o.metrics} for o in outs]
    fig = grokking_figure(table, files)
    assert len(fig.axes) == 5


def test_bad_spec_names_the_field():
    from biaslab.experiments.vasudeva.grokking_sensitivity import GrokkingSensitivity, GrokkingSpec

    exp = GrokkingSensitivity()
    with pytest.raises(InputError, match="sensitivity_kind"):
        exp.plan(GrokkingSpec(p=5, epochs=2, model={"name": "transformer"}))
    with pytest.raises(InputError, match="prime"):
        exp.plan(GrokkingSpec(p=6, op="/", epochs=2))
    ok = exp.plan(GrokkingSpec(p=5, epochs=2, model={"name": "transformer"},
                               sensitivity_kind="replacement"))
    assert len(ok) == 3


def test_the_lab_transformer_runs_with_token_replacement():
    from biaslab.experiments.vasudeva.grokking_sensitivity import CURVES, GrokkingSensitivity, GrokkingSpec

    exp = GrokkingSensitivity()
    spec = GrokkingSpec(p=5, train_fraction=0.6, seeds=[0, 1], epochs=4, measure_every=2,
                        sharpness_every=1, fourier_top_k=1, sensitivity_kind="replacement",
                        model={"name": "transformer",
                               "params": {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}})
    outs = exp.run_group(spec, exp.plan(spec), torch.device("cpu"))
    col = dict(zip(CURVES, outs[1].arrays["curves"].T))
    assert col["epoch"].tolist() == [2, 4]
    assert np.isfinite(col["sensitivity"]).all() and np.isfinite(col["fourier_share"]).all()
