"""Image tasks and loaders: the synthetic task, CIFAR-10 / SVHN files written here in their
formats, missing or malformed files as one clear error (exit 2), corruptions, the sensitivity
regulariser's batches and loss."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import vmap

from biaslab import rng
from biaslab.errors import InputError
from biaslab.tasks import make_task
from biaslab.tasks.corruptions import CORRUPTIONS, corrupt
from biaslab.tasks.image_files import (read_cifar10, read_svhn, write_cifar10_file,
                                       write_svhn_file)
from biaslab.train.losses import get_loss, sensitivity_regularized


def small():
    return make_task("synthetic_images", {"size": 8, "classes": 3, "train_size": 20})


def test_synthetic_examples_are_pure_functions_of_their_index():
    t = small()
    st = t.make_state(0)
    x, y = t.training_set(st, "cpu")
    assert x.shape == (20, 3, 8, 8) and x.min() >= -1 and x.max() <= 1
    assert set(y.tolist()) == {0, 1, 2}
    # a sampled training batch holds training examples, and vmapped members sample alike
    xb, yb = t.sample(st, rng.key_of(5), 7)
    match = (xb[:, None] == x[None]).flatten(2).all(-1)
    assert match.any(-1).all()
    assert (y[match.float().argmax(-1)] == yb).all()
    states = {k: torch.stack([v, v]) for k, v in st.items()}
    xv, _ = vmap(lambda s, k: t.sample(s, k, 7))(states, torch.stack([rng.key_of(5)] * 2))
    assert torch.equal(xv[0], xb) and torch.equal(xv[1], xb)
    xt, _ = t.sample(st, rng.key_of(5), 7, "test")
    assert not (xt[:, None] == x[None]).flatten(2).all(-1).any()


def test_regulariser_batches_append_patch_noised_copies():
    t = make_task("synthetic_images", {"size": 8, "classes": 3, "reg_noise": 1.0, "reg_patch": 3})
    st = t.make_state(0)
    x, y = t.sample(st, rng.key_of(2), 5)
    assert x.shape == (10, 3, 8, 8) and y.shape == (5,)
    clean, _ = t.clean_batch(st, rng.key_of(2), 5)
    assert torch.equal(x[:5], clean)
    moved = (x[5:] != clean)
    assert (moved.sum((1, 2, 3)) == 3 * 3 * 3).all()  # one 3x3 patch, all channels
    rows = moved.any(1).any(-1).sum(-1)
    assert (rows == 3).all()


def test_sensreg_loss_matches_the_formula_and_the_detach_flag():
    out = torch.randn(8, 4, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3])
    want = 0.5 * F.cross_entropy(out[:4], y) + 0.5 * ((out[4:] - out[:4]) ** 2).mean()
    torch.testing.assert_close(get_loss("sensreg").fn(out, y), want)
    torch.testing.assert_close(get_loss("sensreg_detached").fn(out, y), want)
    g_att = torch.autograd.grad(get_loss("sensreg").fn(out, y), out)[0]
    g_det = torch.autograd.grad(get_loss("sensreg_detached").fn(out, y), out)[0]
    torch.testing.assert_close(g_att[4:], g_det[4:])
    assert not torch.allclose(g_att[:4], g_det[:4])  # the clean rows also get the MSE's pull
    p = sensitivity_regularized(0.0)(out, y)
    torch.testing.assert_close(p, F.cross_entropy(out[:4], y))
    assert get_loss("sensreg").predict(torch.zeros(2, 8, 4)).shape == (2, 4, 4)


def fake_images(n, seed=0):
    g = np.random.default_rng(seed)
    return g.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), g.integers(0, 10, n)


def test_cifar10_binary_round_trip(tmp_path):
    root = tmp_path / "cifar-10-batches-bin"
    root.mkdir()
    parts = [fake_images(3, i) for i in range(6)]
    for i, (im, lab) in enumerate(parts[:5], start=1):
        write_cifar10_file(root / f"data_batch_{i}.bin", im, lab)
    write_cifar10_file(root / "test_batch.bin", *parts[5])
    images, labels = read_cifar10(tmp_path, "train")
    assert images.shape == (15, 3, 32, 32) and images.dtype == torch.uint8
    assert np.array_equal(images.numpy(), np.concatenate([p[0] for p in parts[:5]]))
    assert labels.tolist() == np.concatenate([p[1] for p in parts[:5]]).tolist()
    t = make_task("cifar10", {"root": str(root), "train_size": 10})
    x, y = t.sample(t.make_state(0), rng.key_of(0), 4)
    assert x.shape == (4, 3, 32, 32) and -1 <= float(x.min()) and float(x.max()) <= 1
    xs, _ = t.training_set({}, "cpu")
    assert xs.shape[0] == 10
    torch.testing.assert_close(xs[0], images[0].float() / 127.5 - 1)


def test_svhn_mat_round_trip(tmp_path):
    im, lab = fake_images(7, 3)
    lab[0] = 0  # stored as 10
    write_svhn_file(tmp_path / "train_32x32.mat", im, lab)
    images, labels = read_svhn(tmp_path, "train")
    assert np.array_equal(images.numpy(), im) and labels.tolist() == lab.tolist()


def test_missing_and_malformed_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="data_batch_1.bin"):
        read_cifar10(tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="multiple of 3073"):
        read_cifar10(tmp_path)
    with pytest.raises(InputError, match="train_32x32.mat"):
        read_svhn(tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file at all" * 10)
    with pytest.raises(InputError):
        read_svhn(tmp_path)
    from scipy.io import savemat
    savemat(str(tmp_path / "test_32x32.mat"), {"X": np.zeros((4, 4), np.uint8), "y": np.ones(4)})
    with pytest.raises(InputError, match="uint8"):
        read_svhn(tmp_path, "test")
    with pytest.raises(InputError):  # the task fails when made, before any training
        make_task("svhn", {"root": str(tmp_path / "nowhere")}).make_state(0)


def test_missing_data_set_exits_2_with_one_line(tmp_path):
    code = ("from biaslab.cli import main; import sys; "
            f"sys.exit(main(['run', 'vision-sensitivity', '--preset', 'paper', "
            f"'task.params.root={tmp_path}']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "data_batch_1.bin" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_every_corruption_changes_images_within_range(name):
    # smooth images (no pixel noise), on which every corruption's strength grows with severity
    t = make_task("synthetic_images", {"size": 16, "classes": 3, "noise": 0.0, "signal": 0.6})
    x, _ = t.training_set(t.make_state(0), "cpu", 4)
    dist = []
    for s in (1, 5):
        out = corrupt(x, name, s, seed=1)
        assert out.shape == x.shape and out.min() >= -1 and out.max() <= 1
        assert torch.equal(out, corrupt(x, name, s, seed=1))  # deterministic in the seed
        dist.append(float((out - x).abs().mean()))
    assert dist[0] > 0
    assert dist[1] >= dist[0] * 0.99, dist  # severity 5 is at least as strong as 1


def test_corruption_bad_input():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(InputError):
        corrupt(x, "rain", 1)
    with pytest.raises(InputError):
        corrupt(x, "fog", 6)


def test_digits_split_is_seeded_disjoint_and_in_range():
    from sklearn.datasets import load_digits

    task = make_task("digits", {"size": 16, "channels": 1, "upsample": "nearest",
                                "test_size": 297})
    xtr, ytr = task.training_set({}, "cpu")
    xte, yte = task.arrays("test", "cpu")
    assert xtr.shape == (1500, 1, 16, 16) and xte.shape == (297, 1, 16, 16)
    assert xtr.min() >= -1 and xtr.max() <= 1
    # nearest upsampling by 2: every original pixel is a constant 2x2 square, and the images
    # are exactly load_digits' (scaled), each once, across the two splits
    raw = torch.tensor(load_digits().images, dtype=torch.float32) / 8 - 1
    both = torch.cat([xtr, xte])[:, 0, ::2, ::2]
    assert torch.equal(torch.cat([xtr, xte])[:, 0, 1::2, 1::2], both)
    key = lambda t: sorted(map(tuple, t.flatten(1).tolist()))
    assert key(both) == key(raw)
    other = make_task("digits", {"size": 16, "channels": 1, "test_size": 297, "split_seed": 1})
    assert not torch.equal(other.arrays("test", "cpu")[1], yte)
    x, y = task.clean_batch({}, rng.key_of(3), 64, "test")
    assert x.shape == (64, 1, 16, 16) and y.max() <= 9
