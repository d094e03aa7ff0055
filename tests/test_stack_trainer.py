"""The stack trainer: members of a stack follow exactly the trajectory they would alone."""

import math

import pytest
import torch

from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train
from biaslab.train.optim import adamw_init, adamw_step

SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16}


def _train(model, params, task, members, cfg, dtype=torch.float32):
    stack = Stack(model, params, task, members, dtype=dtype)
    result = train(stack, cfg)
    return stack, result


@pytest.mark.parametrize("model,params", [("transformer", SMALL), ("mlp", {"width": 16}),
                                          ("lstm", {"d_embed": 8, "hidden": 8}),
                                          ("cnn", {"d_embed": 8, "channels": 8})])
def test_stack_member_equals_member_alone(model, params):
    task = make_task("parity", {"n": 6})
    members = [Member(seed=3, lr=1e-3), Member(seed=7, lr=3e-3, weight_decay=0.1, clip_norm=0.5),
               Member(seed=11, lr=2e-3, gamma=0.6)]
    cfg = TrainConfig(steps=30, batch=32, eval_every=10, converge="none")
    # float64: vmapping must not change a single number beyond reduction-order rounding.
    stack, res = _train(model, params, task, members, cfg, torch.float64)
    for i, m in enumerate(members):
        alone, res1 = _train(model, params, task, [m], cfg, torch.float64)
        for k in stack.params:
            torch.testing.assert_close(stack.params[k][i], alone.params[k][0], rtol=1e-9, atol=1e-11)
        for h, h1 in zip(res.history, res1.history):
            assert math.isclose(h["train_loss"][i], h1["train_loss"][0], rel_tol=1e-9, abs_tol=1e-12)


def test_stack_trajectory_float32_within_tolerance():
    # In float32 Adam amplifies last-bit differences of batched reductions; the loss
    # trajectories still agree to float tolerance.
    task = make_task("majority", {"n": 7})
    members = [Member(seed=s, lr=1e-3) for s in range(4)]
    cfg = TrainConfig(steps=40, batch=64, eval_every=10, converge="none")
    stack, res = _train("transformer", SMALL, task, members, cfg)
    for i, m in enumerate(members):
        _, res1 = _train("transformer", SMALL, task, [m], cfg)
        for h, h1 in zip(res.history, res1.history):
            assert math.isclose(h["loss"][i], h1["loss"][0], rel_tol=2e-3, abs_tol=1e-5)


def test_functional_adamw_matches_torch_adamw():
    # Two tensors of different shapes: the flat [M, P] update must map back onto each.
    torch.manual_seed(0)
    p = {"w": torch.randn(1, 5, 3), "b": torch.randn(1, 4)}
    grads = [{k: torch.randn_like(v) for k, v in p.items()} for _ in range(5)]
    ref = {k: torch.nn.Parameter(v[0].clone()) for k, v in p.items()}
    opt = torch.optim.AdamW(list(ref.values()), lr=1e-2, weight_decay=0.1)
    params, state = {k: v.clone() for k, v in p.items()}, adamw_init(p)
    one = torch.ones(1)
    for g in grads:
        for k in ref:
            ref[k].grad = g[k][0].clone()
        opt.step()
        params, state, _ = adamw_step(params, g, state, lr=one * 1e-2, weight_decay=one * 0.1,
                                      clip_norm=one * float("inf"), active=one.bool())
    for k in ref:
        assert params[k].shape == p[k].shape
        torch.testing.assert_close(params[k][0], ref[k].detach(), rtol=1e-5, atol=1e-6)


def test_per_member_clipping_does_not_couple_members():
    g = {"w": torch.stack([torch.full((4,), 100.0), torch.full((4,), 1e-3)])}
    p = {"w": torch.zeros(2, 4)}
    state = adamw_init(p)
    clip = torch.tensor([1.0, 1.0])
    _, s, gnorm = adamw_step(p, g, state, lr=torch.ones(2), weight_decay=torch.zeros(2),
                             clip_norm=clip, active=torch.ones(2, dtype=torch.bool))
    assert torch.allclose(gnorm, torch.tensor([200.0, 2e-3]))
    # member 0 clipped to norm 1; member 1 untouched by member 0's huge gradient
    assert torch.allclose(s.exp_avg[0].norm() / 0.1, torch.tensor(1.0), atol=1e-4)
    assert torch.allclose(s.exp_avg[1], 0.1 * g["w"][1])


def test_diverged_member_is_frozen_and_others_continue():
    task = make_task("parity", {"n": 5})
    members = [Member(seed=0, lr=1e-3), Member(seed=1, lr=1e9)]  # the second explodes
    stack = Stack("mlp", {"width": 16}, task, members)
    res = train(stack, TrainConfig(steps=60, batch=32, eval_every=20, converge="none"))
    assert not bool(res.diverged[0])
    assert bool(res.diverged[1])
    assert all(torch.isfinite(v[0]).all() for v in stack.params.values())
    assert all(math.isfinite(h["loss"][0]) for h in res.history)


def test_converged_members_stop_and_training_ends_early():
    task = make_task("first", {"n": 4})
    stack = Stack("mlp", {"width": 32}, task, [Member(seed=s, lr=1e-2) for s in range(3)])
    res = train(stack, TrainConfig(steps=2000, batch=64, eval_every=25, converge="acc",
                                   converge_acc=1.0))
    assert bool(res.converged.all())
    assert res.steps_run < 2000
    assert (res.converge_step > 0).all()


def test_after_convergence_trains_a_fixed_number_of_steps_on():
    """Each member is frozen ``after_convergence`` steps after its own convergence step: its
    parameters equal those of a run stopped at that step, and training ends once all are done."""
    task = make_task("first", {"n": 4})
    members = [Member(seed=s, lr=1e-2) for s in range(3)]
    cfg = dict(steps=3000, batch=64, eval_every=25, converge="acc", converge_acc=1.0)
    stop, res0 = _train("mlp", {"width": 32}, task, members, TrainConfig(**cfg))
    on, res = _train("mlp", {"width": 32}, task, members,
                     TrainConfig(**cfg, after_convergence=100))
    assert torch.equal(res.converge_step, res0.converge_step)
    assert res.steps_run == int(res0.converge_step.max()) + 100
    from biaslab.experiments.outcomes import train_metrics

    for i, c in enumerate(res0.converge_step.tolist()):
        # the stored step count is where the member was frozen, not where it converged
        assert train_metrics(res, TrainConfig(**cfg, after_convergence=100), i)["steps"] == c + 100
        ref, _ = _train("mlp", {"width": 32}, task, [members[i]],
                        TrainConfig(**{**cfg, "converge": "none", "steps": c + 100}))
        for k in on.params:
            assert torch.allclose(on.params[k][i], ref.params[k][0], atol=1e-6), k
        # and it moved on from where the stop-at-convergence run froze it
        assert any(not torch.equal(on.params[k][i], stop.params[k][i]) for k in on.params)


def test_after_convergence_unset_keeps_old_run_ids():
    from biaslab.execute.plan import run_id, identity_config
    old = {"task": "parity", "train": {"steps": 10}}
    new = {"task": "parity", "train": {"steps": 10, "after_convergence": None}}
    assert run_id("e", identity_config(old)) == run_id("e", identity_config(new))
    set_ = {"task": "parity", "train": {"steps": 10, "after_convergence": 500}}
    assert run_id("e", identity_config(set_)) != run_id("e", identity_config(old))


def test_member_returns_plain_module_with_same_outputs():
    task = make_task("majority", {"n": 7})
    stack = Stack("transformer", SMALL, task, [Member(seed=s) for s in range(3)])
    x = torch.randint(0, 2, (9, 7))
    out = stack.forward(x)
    for i in range(3):
        torch.testing.assert_close(stack.member(i)(x), out[i])


def test_same_seed_same_init_different_seed_different_init():
    task = make_task("parity", {"n": 4})
    a = Stack("mlp", {"width": 8}, task, [Member(seed=1), Member(seed=1), Member(seed=2)])
    w = a.params["hidden.0.weight"]
    assert torch.equal(w[0], w[1]) and not torch.equal(w[0], w[2])


def test_gamma_init_sets_weight_std():
    task = make_task("parity", {"n": 8})
    stack = Stack("mlp", {"width": 512}, task, [Member(seed=0, gamma=0.5), Member(seed=0, gamma=1.0)])
    w = stack.params["hidden.1.weight"]  # d_in = 512
    assert abs(w[0].std().item() - 512 ** -0.5) / 512 ** -0.5 < 0.02
    assert abs(w[1].std().item() - 512 ** -1.0) / 512 ** -1.0 < 0.02


def test_compaction_changes_no_result():
    """Dropping finished members from the stack must not change anyone's trajectory."""
    task = make_task("first", {"n": 5})
    members = [Member(seed=s, lr=lr) for s, lr in [(0, 3e-2), (1, 3e-3), (2, 1e-2), (3, 1e-3)]]
    cfg = TrainConfig(steps=400, batch=32, eval_every=10, converge="acc", converge_acc=1.0)
    a = Stack("mlp", {"width": 16}, task, members, dtype=torch.float64)
    ra = train(a, cfg, compact_below=1.01)  # compact at every boundary where someone finished
    b = Stack("mlp", {"width": 16}, task, members, dtype=torch.float64)
    rb = train(b, cfg, compact_below=0.0)  # never compact
    assert torch.equal(ra.converge_step, rb.converge_step)
    assert len(set(ra.converge_step.tolist())) > 1  # members finished at different times
    for k in a.params:
        torch.testing.assert_close(a.params[k], b.params[k], rtol=1e-9, atol=1e-12)


def test_step_is_compiled_once_per_shape():
    from biaslab.train import trainer

    task = make_task("parity", {"n": 5})
    cfg = TrainConfig(steps=2, batch=8, eval_every=1, converge="none")
    s1 = Stack("mlp", {"width": 8}, task, [Member(seed=0)])
    s2 = Stack("mlp", {"width": 8}, task, [Member(seed=5, lr=0.1)])
    assert trainer.make_step(s1, cfg) is trainer.make_step(s2, cfg)
    s3 = Stack("mlp", {"width": 16}, task, [Member(seed=0)])
    assert trainer.make_step(s1, cfg) is not trainer.make_step(s3, cfg)
