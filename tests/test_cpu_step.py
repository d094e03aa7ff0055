"""The eager CPU step (train/cpu_step.py): each member's update is torch's own fused AdamW, bit for
bit; the step updates only buffers it owns; members that must not update are left exactly as
they were."""

import pytest
import torch

from biaslab import rng
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train
from biaslab.train.optim import adamw_init, flatten
from biaslab.train.trainer import make_step

MEMBERS = [Member(seed=3, lr=1e-3), Member(seed=7, lr=3e-3, weight_decay=0.1, clip_norm=0.05),
           Member(seed=11, lr=2e-3, weight_decay=0.5), Member(seed=5, lr=1e-3)]


def _plain_loop(stack: Stack, i: int, cfg: TrainConfig) -> dict:
    """Member i trained by the loop a researcher writes: its own module, ``loss.backward()``,
    ``clip_grad_norm_`` where it clips, ``torch.optim.AdamW(fused=True)``, on the batches the
    lab's counter-based RNG gives member i at each step."""
    module = stack.member(i)
    m = stack.members[i]
    # the lab keeps hyperparameters in the stack's precision (fp32): the same numbers here
    lr, wd = (float(torch.tensor(v, dtype=stack.metric_dtype)) for v in (m.lr, m.weight_decay))
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=wd, fused=True)
    state = {k: v[i] for k, v in stack.task_states.items()}
    for t in range(cfg.steps):
        key = rng.derive(stack.seed_keys, torch.tensor(t))[i]
        x, y = stack.task.sample(state, key, cfg.batch, "train")
        out = module(x)
        loss = (out - y.to(out.dtype)).pow(2).mean()  # the lab's "mse" loss, as written there
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if m.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), m.clip_norm)
        opt.step()
    return dict(module.named_parameters())


@pytest.mark.parametrize("model,params", [("mlp", {"width": 16}),
                                          ("transformer", {"d_model": 16, "n_heads": 2,
                                                           "n_layers": 1, "d_ff": 16})])
def test_looped_member_is_torch_fused_adamw_bit_for_bit(model, params):
    """The looped mapping (one plain autograd call per member) runs the very computation of the
    plain loop, so the trained parameters are equal to the last bit."""
    task = make_task("parity", {"n": 6})
    cfg = TrainConfig(steps=12, batch=32, eval_every=12, converge="none", member_chunk=1)
    start = Stack(model, params, task, MEMBERS)
    stack = Stack(model, params, task, MEMBERS)
    train(stack, cfg)
    for i in range(len(MEMBERS)):
        alone = _plain_loop(start, i, cfg)
        for k, v in alone.items():
            assert torch.equal(stack.params[k][i], v.detach()), (i, k, (stack.params[k][i] - v).abs().max())


def test_vmapped_members_follow_torch_fused_adamw():
    """Vmapped gradients differ from a single model's in the last bits only (batched kernels);
    the update on them is the same kernel, so the members stay on the plain loop's path."""
    task = make_task("parity", {"n": 6})
    cfg = TrainConfig(steps=12, batch=32, eval_every=12, converge="none", member_chunk=4)
    start = Stack("mlp", {"width": 16}, task, MEMBERS)
    stack = Stack("mlp", {"width": 16}, task, MEMBERS)
    train(stack, cfg)
    for i in range(len(MEMBERS)):
        for k, v in _plain_loop(start, i, cfg).items():
            torch.testing.assert_close(stack.params[k][i], v.detach(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("chunk", [1, 4])
def test_step_never_writes_into_the_callers_tensors(chunk):
    """The first call copies parameters that are views of the caller's buffer and the state it
    is given; later calls update the buffers the step returned, in place."""
    task = make_task("parity", {"n": 6})
    stack = Stack("mlp", {"width": 8}, task, MEMBERS)
    cfg = TrainConfig(batch=16, member_chunk=chunk)
    step = make_step(stack, cfg)
    flat = flatten(stack.params).clone()
    sizes = [v[0].numel() for v in stack.params.values()]
    params = {k: part.view(v.shape) for (k, v), part in
              zip(stack.params.items(), torch.split(flat, sizes, dim=1))}
    kept, opt = flat.clone(), adamw_init(stack.params)
    args = (stack.hyper("lr"), stack.hyper("weight_decay"), stack.hyper("clip_norm"),
            torch.ones(len(MEMBERS), dtype=torch.bool), stack.buffers, stack.task_states,
            stack.seed_keys)
    new, new_opt, _, _ = step(params, opt, torch.tensor(0), *args)
    assert torch.equal(flat, kept) and not opt.exp_avg.any() and not opt.t.any()
    assert not torch.equal(flatten(new), kept)
    again, again_opt, _, _ = step(new, new_opt, torch.tensor(1), *args)
    assert flatten(again) is flatten(new) and again_opt is new_opt  # in place from then on
    assert new_opt.t.tolist() == [2.0] * len(MEMBERS)


@pytest.mark.parametrize("chunk", [1, 4])
def test_inactive_and_non_finite_members_stay_exactly_as_they_were(chunk):
    task = make_task("parity", {"n": 6})
    stack = Stack("mlp", {"width": 8}, task, MEMBERS)
    cfg = TrainConfig(batch=16, member_chunk=chunk)
    step = make_step(stack, cfg)
    lr = stack.hyper("lr")
    args = (stack.hyper("weight_decay"), stack.hyper("clip_norm"))
    params, opt = stack.params, adamw_init(stack.params)
    active = torch.ones(len(MEMBERS), dtype=torch.bool)
    params, opt, _, _ = step(params, opt, torch.tensor(0), lr, *args, active, stack.buffers,
                             stack.task_states, stack.seed_keys)
    before = flatten(params).clone()
    moments = (opt.exp_avg.clone(), opt.exp_avg_sq.clone(), opt.t.clone())
    active[1] = False  # frozen (converged)
    broken = {k: v.clone() for k, v in params.items()}
    first = next(iter(broken))
    broken[first][2].view(-1)[0] = float("nan")  # member 2's loss and gradient become NaN
    params, opt, losses, bad = step(broken, opt, torch.tensor(1), lr, *args, active,
                                    stack.buffers, stack.task_states, stack.seed_keys)
    after = flatten(params)
    assert bad.tolist() == [False, False, True, False]
    assert not torch.isfinite(losses[2])
    assert torch.equal(after[1], before[1])  # frozen: untouched
    assert torch.isnan(after[2]).sum() == 1  # non-finite: untouched (its NaN as it was given)
    for kept, now in zip(moments, (opt.exp_avg, opt.exp_avg_sq, opt.t)):
        assert torch.equal(now[1], kept[1]) and torch.equal(now[2], kept[2])
        assert not torch.equal(now[0], kept[0]) and not torch.equal(now[3], kept[3])


@pytest.mark.parametrize("chunk", [1, 4])
def test_the_cached_step_keeps_no_buffers_alive(chunk):
    """The step is cached per stack shape for the whole process; once the caller drops what it
    returned (``train`` has finished), the buffers are freed, not held by the cache."""
    import gc
    import weakref

    task = make_task("parity", {"n": 6})
    stack = Stack("mlp", {"width": 8}, task, MEMBERS)
    step = make_step(stack, TrainConfig(batch=16, member_chunk=chunk))
    args = (stack.hyper("lr"), stack.hyper("weight_decay"), stack.hyper("clip_norm"),
            torch.ones(len(MEMBERS), dtype=torch.bool), stack.buffers, stack.task_states,
            stack.seed_keys)
    params, opt = stack.params, adamw_init(stack.params)
    for t in range(3):
        params, opt, _, _ = step(params, opt, torch.tensor(t), *args)
    buffers = [weakref.ref(flatten(params)), weakref.ref(opt.exp_avg), weakref.ref(opt.exp_avg_sq)]
    del params, opt
    gc.collect()
    assert all(b() is None for b in buffers)
