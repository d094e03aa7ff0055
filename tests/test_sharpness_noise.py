"""The sharpness noise paths of issue 16: a stack that shares one key draws the noise once for
all members, the per-element hash runs in int32; both must give the numbers of the plain paths
bit for bit (the per-parameter ``rng.normal`` and each member drawing its own noise)."""

import pytest
import torch

from biaslab import rng
from biaslab.measure import landscape as L
from biaslab.tasks import make_task
from biaslab.train import Member, Stack

SMALL = {"d_model": 8, "n_heads": 2, "n_layers": 1, "d_ff": 8}


def test_int32_hash_is_rng_hash32():
    edges = torch.tensor([0, 1, 2**15, 2**16 - 1, 2**31 - 1, 2**31, 2**32 - 2, 2**32 - 1])
    x = torch.cat([edges, torch.randint(0, 2**32, (4096,), generator=torch.Generator().manual_seed(0))])
    got = L._hash32_(L._int32(x)).to(torch.int64) & 0xFFFFFFFF
    assert torch.equal(got, rng.hash32(x))


def test_flat_noise_of_a_batch_of_keys_is_per_key_and_per_parameter():
    params = {"a": torch.zeros(3, 4), "b": torch.zeros(5), "c": torch.zeros(2, 2, 2)}
    names = ["c", "a"]
    plan = L.noise_plan(params, names)
    keys = rng.derive(rng.key_of(3), torch.arange(6)).view(2, 3)
    flat = L.flat_normal(keys, plan, torch.float64)
    assert flat.shape == (2, 3, 20) and flat.dtype == torch.float64
    for i in range(2):
        for j in range(3):
            k = keys[i, j]
            each = torch.cat([rng.normal(rng.derive(k, L.name_salt(n)), params[n].shape).reshape(-1)
                              for n in names]).double()
            assert torch.equal(flat[i, j], each)
    assert torch.equal(torch.vmap(lambda k: L.flat_normal(k, plan, torch.float64))(keys.view(-1)),
                       flat.view(6, 20))


@pytest.mark.parametrize("member_chunk,draw_chunk", [(1, 1), (None, None), (None, 1)])
def test_noise_drawn_once_for_the_stack_equals_each_member_drawing_it(member_chunk, draw_chunk):
    task = make_task("parity", {"n": 6})
    stack = Stack("transformer", SMALL, task, [Member(seed=s) for s in range(3)])
    keys = rng.derive(stack.seed_keys, 2)
    batches = [torch.vmap(lambda s, k: task.sample(s, k, 16))(stack.task_states, rng.derive(keys, b))
               for b in range(2)]
    opts = dict(draws=3, chunk=draw_chunk, member_chunk=member_chunk)
    once = L.perturbation_sharpness(stack, "mse", batches, key=7, **opts)  # a scalar key
    own = L.perturbation_sharpness(stack, "mse", batches, key=torch.full((3,), 7), **opts)
    assert torch.equal(once, own)
    other = L.perturbation_sharpness(stack, "mse", batches, key=torch.tensor([7, 8, 7]),
                                     **opts)
    assert torch.equal(other[[0, 2]], once[[0, 2]]) and other[1] != once[1]
