"""Issue 9 item 4 and 7, issue 16: parameter roles, Stack.map, evaluation batches from the task,
float64 end to end, and the fast measures against their plain definitions."""

import pytest
import torch

from biaslab import rng
from biaslab.measure import landscape as L
from biaslab.measure.fourier import degree_profile, fourier_spectrum, subset_sizes
from biaslab.measure.sensitivity import average_sensitivity, bitflip_sensitivity, learned_table
from biaslab.models import build_model, parameter_roles
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train
from biaslab.train.members import CPU_FORWARD_LOOP_ABOVE_BYTES, CPU_LOOP_ABOVE_BYTES, resolve_chunk
from biaslab.train.optim import adamw_init

SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 2, "d_ff": 16}


def test_roles_point_at_the_modules_that_play_them():
    task = make_task("parity", {"n": 6})
    model = build_model("transformer", SMALL, task, seed=0)
    roles = parameter_roles(model)
    params = dict(model.named_parameters())
    assert params[roles.token_embedding] is model.token_embed.weight
    assert [params[k] for k in roles.position_embeddings] == [model.pos_embed.weight]
    for i, layer in enumerate(model.layers):
        assert params[roles.query(i)] is layer.attn.q.weight
        assert params[roles.key(i)] is layer.attn.k.weight
        assert params[roles.value(i)] is layer.attn.v.weight
    norms = {id(p) for m in model.modules() if isinstance(m, torch.nn.LayerNorm)
             for p in m.parameters()}
    assert {id(params[k]) for k in roles.layer_norms} == norms
    assert params[roles.readout_weight] is model.head.linear.weight
    with pytest.raises(KeyError, match="attention layer 2"):
        roles.query(2)
    # a Stack's roles are keys of its stacked params; a model without attention has none
    stack = Stack("transformer", SMALL, task, [Member(seed=0)])
    assert stack.roles == roles and set(roles.readout) <= set(stack.params)
    mlp = parameter_roles(build_model("mlp", {}, task, seed=0))
    assert mlp.queries == () and mlp.position_embeddings == () and mlp.readout_weight


def test_seq2seq_roles_name_both_position_tables():
    task = make_task("parity", {"n": 6})
    roles = parameter_roles(build_model("seq2seq", {}, task, seed=0))
    names = dict(build_model("seq2seq", {}, task, seed=0).named_parameters())
    assert len(roles.position_embeddings) == 2 and all(k in names for k in roles.position_embeddings)


def test_stack_map_forms_agree_with_shared_and_mapped_arguments():
    torch.manual_seed(0)
    task = make_task("parity", {"n": 6})
    stack = Stack("transformer", SMALL, task, [Member(seed=s) for s in range(6)], dtype=torch.float64)
    x_shared = torch.randint(0, 2, (9, 6))
    x_own = torch.randint(0, 2, (6, 9, 6))

    def fn(p, b, xs, xo):
        out, acts = stack.apply(p, b, xs, acts=True)
        return {"shared": out, "own": stack.apply(p, b, xo), "embed": acts["embed"].sum()}

    ref = stack.map(fn, stack.params, stack.buffers, x_shared, x_own, in_dims=(0, 0, None, 0),
                    chunk=None)
    for chunk in (1, 2, 3, "auto"):
        got = stack.map(fn, stack.params, stack.buffers, x_shared, x_own, in_dims=(0, 0, None, 0),
                        chunk=chunk)
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-12, atol=1e-12)
    for i in range(6):  # and against each member as a plain module
        torch.testing.assert_close(ref["own"][i], stack.member(i)(x_own[i]), rtol=1e-12, atol=1e-12)


def test_chunk_rule_loops_large_members_on_a_cpu():
    cpu = torch.device("cpu")
    for backward, limit in ((False, CPU_FORWARD_LOOP_ABOVE_BYTES), (True, CPU_LOOP_ABOVE_BYTES)):
        assert resolve_chunk(cpu, 8, "auto", lambda: limit + 1, backward=backward) == 1
        assert resolve_chunk(cpu, 8, "auto", lambda: limit, backward=backward) is None
    assert resolve_chunk(torch.device("meta"), 8, "auto", lambda: 10**9) is None
    assert resolve_chunk(cpu, 8, 3, lambda: 0) == 2 and resolve_chunk(cpu, 8, None, None) is None


def test_trainer_evaluates_a_fixed_training_subset_whole():
    task = make_task("parity", {"n": 6, "train_size": 20})
    state = task.make_state(3)
    x, y = task.evaluation_batch(state, rng.key_of(0), 512, "train")
    assert torch.equal(x, state["subset"]) and torch.equal(y, task.target(state, x))
    x, _ = task.evaluation_batch(state, rng.key_of(0), 512, "test")
    assert x.shape == (512, 6)


def _hand_adamw(stack, cfg, steps):
    """The same training written out in float64 with a hand-rolled AdamW (the oracle)."""
    model = stack.member(0)
    params = dict(model.named_parameters())
    m = {k: torch.zeros_like(p) for k, p in params.items()}
    v = {k: torch.zeros_like(p) for k, p in params.items()}
    lr, wd = stack.members[0].lr, stack.members[0].weight_decay
    losses = []
    for step in range(steps):
        key = rng.derive(stack.seed_keys, step)[0]
        x, y = stack.task.sample({k: t[0] for k, t in stack.task_states.items()}, key, cfg.batch)
        loss = (model(x) - y).pow(2).mean()
        grads = torch.autograd.grad(loss, list(params.values()))
        losses.append(loss.item())
        with torch.no_grad():
            t = step + 1
            for (k, p), g in zip(params.items(), grads):
                m[k] = cfg.beta1 * m[k] + (1 - cfg.beta1) * g
                v[k] = cfg.beta2 * v[k] + (1 - cfg.beta2) * g * g
                denom = (v[k] / (1 - cfg.beta2 ** t)).sqrt() + cfg.eps
                p.mul_(1 - lr * wd).sub_(lr / (1 - cfg.beta1 ** t) * m[k] / denom)
    return params, losses


def test_float64_stack_keeps_float64_optimizer_arithmetic_and_losses():
    task = make_task("parity", {"n": 5})
    stack = Stack("mlp", {"width": 8}, task, [Member(seed=4, lr=3e-3, weight_decay=0.1)],
                  dtype=torch.float64)
    cfg = TrainConfig(steps=6, batch=16, eval_every=1, converge="none", stop_on_converge=False)
    assert stack.hyper("lr").dtype == torch.float64
    assert adamw_init(stack.params).t.dtype == torch.float64
    want, losses = _hand_adamw(stack, cfg, cfg.steps)
    result = train(stack, cfg)
    for k, p in want.items():  # float32 lr or bias corrections would be off by ~1e-8
        torch.testing.assert_close(stack.params[k][0], p.detach(), rtol=1e-13, atol=1e-15)
    recorded = [h["train_loss"][0] for h in result.history]
    assert recorded == pytest.approx(losses, rel=1e-14, abs=0)
    assert result.final["loss"].dtype == torch.float64
    raw = learned_table(stack, 5, threshold=None)
    assert raw.dtype == torch.float64


def test_flat_noise_is_the_per_parameter_noise_bit_for_bit():
    params = {"a": torch.randn(3, 4), "b": torch.randn(5), "c": torch.randn(2, 2, 2)}
    names = ["a", "c"]
    key = rng.key_of(77)
    flat = L.flat_normal(key, L.noise_plan(params, names), torch.float32)
    each = torch.cat([rng.normal(rng.derive(key, L.name_salt(n)), params[n].shape).reshape(-1)
                      for n in names])
    assert torch.equal(flat, each)


def test_sharpness_with_given_clean_losses_equals_recomputing_them():
    task = make_task("parity", {"n": 6})
    stack = Stack("transformer", SMALL, task, [Member(seed=s) for s in range(3)], dtype=torch.float64)
    keys = rng.derive(stack.seed_keys, 5)
    batches = [torch.vmap(lambda s, k: task.sample(s, k, 32))(stack.task_states, rng.derive(keys, b))
               for b in range(2)]
    clean = torch.stack([torch.stack([(stack.member(i)(x[i]) - y[i]).pow(2).mean() for x, y in batches])
                         for i in range(3)])
    a = L.perturbation_sharpness(stack, "mse", batches, key=1)
    b = L.perturbation_sharpness(stack, "mse", batches, key=1, clean=clean)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n", [1, 3, 11])
def test_exact_sensitivity_and_profile_of_boolean_and_real_tables(n):
    g = torch.Generator().manual_seed(n)
    boolean = torch.randint(0, 2, (3, 1 << n), generator=g).float()
    real = torch.randn(2, 1 << n, generator=g, dtype=torch.float64)
    assert torch.equal(average_sensitivity(boolean), bitflip_sensitivity(boolean))  # exact
    torch.testing.assert_close(average_sensitivity(real), bitflip_sensitivity(real),
                               rtol=1e-12, atol=1e-12)
    # profile = squared spectrum summed by |S|, from the float64 spectrum (dense definition)
    for table in (boolean, real):
        coef = fourier_spectrum(table)
        want = torch.zeros(table.shape[0], n + 1, dtype=torch.float64).index_add_(
            -1, subset_sizes(n), coef.square())
        torch.testing.assert_close(degree_profile(table), want, rtol=1e-12, atol=1e-15)
