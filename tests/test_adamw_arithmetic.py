"""The flat AdamW's arithmetic is fixed: its faster arrangement (fewer passes, reused buffers,
one addcdiv) gives, bit for bit, what the plain formula below gives, so every stored trained
number stays reproducible across the change. Shapes include rows whose length is not a multiple
of the vector width, clipping on and off, and an inactive member with NaN gradients."""

import pytest
import torch

from biaslab.train.optim import adamw_init, adamw_step, flat_norm, flatten, unflatten


def plain_adamw(params, grads, state, *, lr, weight_decay, clip_norm, active, beta1=0.9,
                beta2=0.999, eps=1e-8):
    """The update as first written: one op per term, every intermediate a new tensor."""
    g = flatten(grads)
    gnorm = flat_norm(g)
    scale = torch.clamp(clip_norm / (gnorm + 1e-6), max=1.0)
    act = active.to(lr.dtype)
    t = state.t + act
    bc1 = 1 - beta1 ** t.clamp(min=1)
    bc2 = 1 - beta2 ** t.clamp(min=1)
    col = lambda x: x.to(g.dtype).unsqueeze(1)  # noqa: E731
    g = torch.where(active.unsqueeze(1), g * col(scale), 0)
    m = torch.lerp(state.exp_avg, g, col(act * (1 - beta1)))
    v = torch.lerp(state.exp_avg_sq, g * g, col(act * (1 - beta2)))
    denom = (v / col(bc2)).sqrt_().add_(eps)
    p = flatten(params)
    new_p = p * col(1 - act * lr * weight_decay) - col(act * lr / bc1) * m / denom
    return unflatten(new_p, params), type(state)(m, v, t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("members,sizes,clip", [
    (1, [(7, 33), (65,)], None),
    (3, [(129, 31), (1000,)], 0.5),
    (8, [(50, 61)], None),
    (5, [(3,), (17, 5)], 2.0),
])
def test_update_equals_the_plain_formula_bit_for_bit(members, sizes, clip, dtype):
    gen = torch.Generator().manual_seed(members)
    params = {f"w{i}": torch.randn(members, *s, generator=gen, dtype=dtype) for i, s in enumerate(sizes)}
    lr = torch.linspace(1e-3, 3e-2, members, dtype=dtype)
    wd = torch.linspace(0.0, 1.0, members, dtype=dtype)
    clip_t = torch.full((members,), float("inf") if clip is None else clip, dtype=dtype)
    ours, ref = (dict(params), adamw_init(params)), (dict(params), adamw_init(params))
    for step in range(9):
        grads = {k: torch.randn(v.shape, generator=gen, dtype=dtype) * (10.0 if step % 3 else 1e-3)
                 for k, v in params.items()}
        active = torch.ones(members, dtype=torch.bool)
        if members > 1:
            active[1] = step < 4  # freezes mid-run (the trainer's active excludes non-finite
            if step >= 4:         # gradients), and its NaNs after that must not leak in
                grads["w0"][1].view(-1)[0] = float("nan")
        kw = {"lr": lr, "weight_decay": wd, "clip_norm": clip_t, "active": active}
        p, s, _ = adamw_step(ours[0], {k: v.clone() for k, v in grads.items()}, ours[1],
                             clips=clip is not None, **kw)
        ours = (p, s)
        ref = plain_adamw(ref[0], grads, ref[1], **kw)
        for k in params:
            assert torch.equal(ours[0][k], ref[0][k]), (step, k)
        assert torch.equal(ours[1].exp_avg, ref[1].exp_avg)
        assert torch.equal(ours[1].exp_avg_sq, ref[1].exp_avg_sq)
        assert torch.equal(ours[1].t, ref[1].t)
    assert torch.isfinite(ours[0]["w0"]).all()


def test_clips_false_is_only_a_promise_of_no_clipping():
    """``clips=False`` with every clip at +inf gives what ``clips=True`` gives."""
    params = {"w": torch.randn(4, 300)}
    grads = {"w": torch.randn(4, 300) * 1e3}
    kw = {"lr": torch.full((4,), 1e-2), "weight_decay": torch.full((4,), 0.1),
          "clip_norm": torch.full((4,), float("inf")), "active": torch.tensor([1, 1, 0, 1]).bool()}
    a, sa, _ = adamw_step(params, grads, adamw_init(params), clips=True, **kw)
    b, sb, _ = adamw_step(params, grads, adamw_init(params), clips=False, **kw)
    assert torch.equal(a["w"], b["w"]) and torch.equal(sa.exp_avg_sq, sb.exp_avg_sq)
    assert torch.equal(a["w"][2], params["w"][2])  # the inactive member is untouched
