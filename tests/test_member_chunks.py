"""Chunked and looped stacks compute what one vmap over the stack computes."""

import torch

from biaslab.experiments.base import RunPlan
from biaslab.tasks import make_task
from biaslab.train import Member, Stack, TrainConfig, train
from biaslab.train.members import (CPU_CHUNK_BYTES, CPU_LOOP_ABOVE_BYTES, auto_chunk,
                                   map_members, peak_buffer_bytes)

SMALL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16}
MEMBERS = [Member(seed=s, lr=lr, weight_decay=wd, clip_norm=c)
           for s, lr, wd, c in [(0, 1e-3, 0.0, None), (1, 3e-3, 0.1, 0.5), (2, 2e-3, 0.0, None),
                                (3, 1e-3, 0.05, 1.0)]]


def _trained(chunk, compile_=False):
    task = make_task("parity", {"n": 6})
    stack = Stack("transformer", SMALL, task, MEMBERS, dtype=torch.float64)
    cfg = TrainConfig(steps=20, batch=16, eval_every=5, converge="none", member_chunk=chunk,
                      compile=compile_)
    return stack, train(stack, cfg)


def test_loop_and_chunks_equal_one_vmap():
    whole, rw = _trained(8)  # member_chunk >= M: one vmap over the stack
    for chunk in (1, 2):  # a plain autograd loop; two vmapped chunks of two
        other, ro = _trained(chunk)
        for k in whole.params:
            torch.testing.assert_close(other.params[k], whole.params[k], rtol=1e-9, atol=1e-12)
        for a, b in zip(rw.history, ro.history):
            torch.testing.assert_close(torch.tensor(a["train_loss"]), torch.tensor(b["train_loss"]),
                                       rtol=1e-9, atol=1e-12)


def test_member_grad_map_forms_agree():
    torch.manual_seed(0)
    params = {"w": torch.randn(6, 5, 3, dtype=torch.float64)}
    x = torch.randn(6, 7, 3, dtype=torch.float64)

    def loss(p, xx):
        return (xx @ p["w"].T).tanh().pow(2).mean()

    ref_g, ref_l = map_members(loss, None, grad=True)(params, x)
    for chunk in (1, 2, 3):
        g, l = map_members(loss, chunk, grad=True)(params, x)
        torch.testing.assert_close(g["w"], ref_g["w"], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(l, ref_l, rtol=1e-12, atol=1e-14)
    # and against each member's own autograd gradient
    for i in range(6):
        w = params["w"][i].clone().requires_grad_()
        (gw,) = torch.autograd.grad(loss({"w": w}, x[i]), [w])
        torch.testing.assert_close(ref_g["w"][i], gw, rtol=1e-12, atol=1e-14)


def test_peak_buffer_is_the_largest_intermediate():
    # x [100, 3] @ W^T [3, 50]: the product (and its gradient) is the largest buffer, 100 x 50.
    x = torch.randn(100, 3, dtype=torch.float64)
    w = {"w": torch.randn(50, 3, dtype=torch.float64)}
    assert peak_buffer_bytes(lambda p, xx: (xx @ p["w"].T).pow(2).sum(), (w, x)) == 100 * 50 * 8


def test_auto_chunk_rule():
    cpu, gpu = torch.device("cpu"), torch.device("meta")
    assert auto_chunk(gpu, 64, 10**9) is None  # accelerators: one vmap over the stack
    assert auto_chunk(cpu, 64, 1024) is None  # small buffers: the whole stack fits
    assert auto_chunk(cpu, 1, 1024) == 1  # one member: no vmap at all
    per = CPU_LOOP_ABOVE_BYTES  # the largest member still vmapped: a chunk budget of 64 of them
    fit = CPU_CHUNK_BYTES // per
    assert fit == 64
    assert auto_chunk(cpu, 128, per) == 64
    assert auto_chunk(cpu, 64, per) is None
    assert auto_chunk(cpu, 96, per) == 48
    assert auto_chunk(cpu, 67, per) == 1  # a prime M over the budget: a loop
    assert auto_chunk(cpu, 64, CPU_LOOP_ABOVE_BYTES + 1) == 1  # big members: a loop


def test_chunk_is_an_execution_detail_not_part_of_the_run_id():
    base = {"n": 5, "train": TrainConfig(steps=10).model_dump()}
    fast = {"n": 5, "train": TrainConfig(steps=10, compile=True, member_chunk=4).model_dump()}
    other = {"n": 5, "train": TrainConfig(steps=11).model_dump()}
    assert RunPlan(base, (), "e").id == RunPlan(fast, (), "e").id
    assert RunPlan(base, (), "e").id != RunPlan(other, (), "e").id


def test_compiled_chunks_match_eager():
    """The compiled step (one graph per chunk shape, reused by every chunk) trains as eager."""
    task = make_task("parity", {"n": 5})
    members = [Member(seed=s, lr=1e-2) for s in range(4)]
    out = []
    for compile_ in (False, True):
        stack = Stack("mlp", {"width": 8}, task, members)
        cfg = TrainConfig(steps=6, batch=16, eval_every=3, converge="none", member_chunk=2,
                          compile=compile_)
        train(stack, cfg)
        out.append(stack.params)
    for k in out[0]:
        torch.testing.assert_close(out[1][k], out[0][k], rtol=1e-4, atol=1e-5)


def test_compiling_many_stack_shapes_never_falls_back_to_eager():
    """Dynamo's per-function limit (8 by default) must not stop a sweep of many shapes from
    being compiled."""
    import torch._dynamo.config as dynamo_config

    from biaslab.train import trainer

    task = make_task("parity", {"n": 4})
    cfg = TrainConfig(steps=1, batch=4, eval_every=1, converge="none", compile=True)
    trainer.make_step(Stack("mlp", {"width": 4}, task, [Member(seed=0)]), cfg)
    assert dynamo_config.recompile_limit >= 1024


def test_flat_update_reads_views_without_a_copy():
    # The looped step writes gradients into one [M, P] buffer and the update returns views of
    # one: ``flatten`` hands those buffers back as they are (issue 26), with the same values.
    from biaslab.train.members import _autograd_value_and_grad
    from biaslab.train.optim import flatten, unflatten

    loss = lambda p, x: (p["w"] @ x).pow(2).sum() + p["b"].sum()  # noqa: E731
    params, x = {"w": torch.randn(3, 4, 5), "b": torch.randn(3, 4)}, torch.randn(3, 5)
    grads, _ = map_members(loss, 1, grad=True)(params, x)
    one = _autograd_value_and_grad(loss)
    alone = [one({k: v[i] for k, v in params.items()}, x[i])[0] for i in range(3)]
    flat = flatten(grads)
    assert flat.data_ptr() == grads["w"].data_ptr()  # no copy
    assert torch.equal(flat, torch.stack([torch.cat([g["w"].flatten(), g["b"]]) for g in alone]))
    views = unflatten(flatten(params), params)
    assert flatten(views) is views["w"]._base
    reordered = {"b": views["b"], "w": views["w"]}  # not the buffer's order: a copy, in order
    assert torch.equal(flatten(reordered), torch.cat([params["b"], params["w"].flatten(1)], 1))
