"""measure/lift.py: a measure written for one model, run on every member of a stack."""

import pytest
import torch

from biaslab import rng
from biaslab.measure.lift import over_stack, per_member
from biaslab.tasks import make_task
from biaslab.train import Member, Stack


@per_member
def mean_logit(model, x, scale=1.0):
    return model(x).mean() * scale


def test_over_stack_equals_a_loop_over_members():
    task = make_task("parity", {"n": 5})
    st = Stack("transformer", {}, task, [Member(seed=s) for s in range(4)])
    xs = torch.vmap(lambda k: task.sample({}, k, 8)[0])(rng.derive(rng.key_of(1), torch.arange(4)))
    mods = [st.member(i) for i in range(4)]
    with torch.no_grad():
        shared = torch.stack([mean_logit(m, xs[0], scale=2.0) for m in mods])
        own = torch.stack([mean_logit(m, xs[i]) for i, m in enumerate(mods)])
        for chunk in ("auto", None, 1, 2):
            torch.testing.assert_close(mean_logit(st, xs[0], scale=2.0, chunk=chunk), shared)
            torch.testing.assert_close(over_stack(mean_logit, st, xs, in_dims=0, chunk=chunk), own)
    with pytest.raises(ValueError, match="in_dims"):
        over_stack(mean_logit, st, xs, in_dims=(0, None))
