"""Weight-noise sharpness proxy against a loop over noisy copies of the model."""

import copy
import zlib

import torch

from biaslab import rng
from biaslab.measure.weight_noise import WEIGHT_NOISE_STREAM, weight_noise_sharpness
from biaslab.registry import MEASURES
from biaslab.tasks import make_task
from biaslab.train import Member, Stack


def setup():
    t = make_task("synthetic_images", {"size": 8, "classes": 4, "train_size": 32})
    x, _ = t.training_set(t.make_state(0), "cpu", 24)
    stack = Stack("image_mlp", {"width": 16}, t, [Member(seed=s) for s in (0, 1)])
    return x, stack


@torch.no_grad()
def loop(model, x, key, sigma, draws, fresh=False):
    l1 = flip = 0.0
    clean = model(x)
    for d in range(draws):
        noisy = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in noisy.named_parameters():
                if fresh:
                    p += sigma * torch.randn(p.shape)
                    continue
                k = rng.derive(rng.derive(key, WEIGHT_NOISE_STREAM, d), zlib.crc32(n.encode()))
                p += sigma * rng.normal(k, p.shape)
        out = noisy(x)
        for b in range(x.shape[0]):
            l1 += float((out[b] - clean[b]).abs().sum())
            flip += float(out[b].argmax() != clean[b].argmax())
    n = x.shape[0] * draws
    return l1 / n, flip / n


def test_matches_loop_for_module_and_stack():
    x, stack = setup()
    key = rng.key_of(3)
    both = weight_noise_sharpness(stack, x, key, sigma=0.2, draws=3, chunk=10)
    for i in range(2):
        m = stack.member(i)
        l1, flip = loop(m, x, key, 0.2, 3)
        one = weight_noise_sharpness(m, x, key, sigma=0.2, draws=3)
        assert abs(float(one["l1"]) - l1) < 1e-4 and abs(float(one["flip"]) - flip) < 1e-12
        torch.testing.assert_close(both["l1"][i], one["l1"])
        torch.testing.assert_close(both["flip"][i], one["flip"])
    assert float(both["flip"].max()) > 0
    zero = weight_noise_sharpness(stack, x, key, sigma=0.0)
    assert float(zero["l1"].abs().max()) == 0 and float(zero["flip"].max()) == 0
    assert "weight_noise_sharpness" in MEASURES


def test_l1_agrees_with_independent_noise():
    x, stack = setup()
    m = stack.member(0)
    torch.manual_seed(0)
    ours = [float(weight_noise_sharpness(m, x, rng.key_of(s), sigma=0.1, draws=5)["l1"])
            for s in range(8)]
    theirs = [loop(m, x, None, 0.1, 5, fresh=True)[0] for _ in range(8)]
    a, b = torch.tensor(ours), torch.tensor(theirs)
    se = ((a.var() + b.var()) / 8).sqrt()
    assert abs(float(a.mean() - b.mean())) < 4 * float(se) + 1e-6
