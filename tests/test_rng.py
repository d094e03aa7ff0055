"""The counter-based RNG: deterministic, vmappable, and uniform enough to train on."""

import torch
from torch.func import vmap

from biaslab import rng


def test_deterministic_and_key_dependent():
    k = rng.key_of(5)
    assert torch.equal(rng.bits32(k, (100,)), rng.bits32(rng.key_of(5), (100,)))
    assert not torch.equal(rng.bits32(k, (100,)), rng.bits32(rng.key_of(6), (100,)))


def test_vmap_equals_loop():
    keys = torch.tensor([1, 2, 3])
    batched = vmap(lambda k: rng.randint(k, (7, 3), 10))(keys)
    for i, k in enumerate(keys):
        assert torch.equal(batched[i], rng.randint(k, (7, 3), 10))


def test_uniformity_and_independence():
    bits = rng.randint(rng.key_of(0), (200_000,), 2).float()
    assert abs(bits.mean().item() - 0.5) < 0.005
    # neighbouring draws are uncorrelated
    c = torch.corrcoef(torch.stack([bits[:-1], bits[1:]]))[0, 1].item()
    assert abs(c) < 0.01
    z = rng.normal(rng.key_of(1), (200_000,))
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    u = rng.uniform(rng.key_of(2), (100_000,))
    assert u.min() > 0 and u.max() < 1


def test_derive_separates_streams():
    k = rng.key_of(9)
    assert not torch.equal(rng.bits32(rng.derive(k, 1), (50,)), rng.bits32(rng.derive(k, 2), (50,)))
    steps = rng.derive(torch.tensor([9, 9]), torch.tensor(3))
    assert steps[0] == steps[1]
