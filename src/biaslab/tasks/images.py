"""Image classification tasks: x float [B, C, H, W] in [-1, 1] (the reference's normalisation),
y long [B] class labels.

``synthetic_images`` is generated on the device, so cpu presets need no data set: each class has
a smooth random prototype (a low-resolution Gaussian field, upsampled); example i of the fixed
training set (or of the unbounded test split) is its class prototype, circularly shifted by a
random offset, times ``signal``, plus ``noise`` N(0, 1) per pixel, clipped to [-1, 1]. Example
i is a pure function of (data_seed, split, i), so every member sees the same training set.

``cifar10`` and ``svhn`` read their standard files from ``root`` (see ``image_files.py``) on
first use; the arrays stay on the task (shared by all members), moved once to the device.

Sensitivity regulariser hook (Vasudeva et al. E4): with ``reg_noise > 0`` every batch is the
clean images followed by the same images with ``reg_noise`` N(0, 1) added to one random
``reg_patch`` x ``reg_patch`` square each (all channels), x [2B, C, H, W] and y [B]; the loss
``sensreg`` (train/losses.py) reads the two halves. Measures read ``clean_batch``.
"""

from __future__ import annotations

from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from pydantic import Field

from .. import rng
from ..registry import TASKS
from .base import Task, TaskParams

DATA_STREAM = 0x1A6E
LABEL_STREAM = 0x1AB1
SHIFT_STREAM = 0x5F1F
REG_STREAM = 0x7E61
TEST_OFFSET = 1 << 30  # test examples are indexed from here, disjoint from the training set


def normal_at(key: torch.Tensor, counters: torch.Tensor) -> torch.Tensor:
    """Standard normals, one per int64 counter, a pure function of (key, counter)."""
    def uniform(k):
        bits = rng.hash32(rng.hash32(counters + k * 0x85EBCA77) ^ (k >> 3))
        return ((bits >> 8).float() + 0.5) / float(1 << 24)
    u1, u2 = uniform(rng.derive(key, 1)), uniform(rng.derive(key, 2))
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * torch.pi * u2)


def add_patch_noise(x: torch.Tensor, key: torch.Tensor, patch: int, std: float) -> torch.Tensor:
    """x [B, C, H, W] plus std N(0, 1) on one uniformly placed patch x patch square per image."""
    B, C, H, W = x.shape
    r = rng.randint(rng.derive(key, 1), (B, 1, 1), H - patch + 1)
    c = rng.randint(rng.derive(key, 2), (B, 1, 1), W - patch + 1)
    rows = torch.arange(H, device=x.device)[None, :, None]
    cols = torch.arange(W, device=x.device)[None, None, :]
    inside = (rows >= r) & (rows < r + patch) & (cols >= c) & (cols < c + patch)  # [B, H, W]
    z = rng.normal(rng.derive(key, 3), (B, C, H, W)).to(x.device, x.dtype)
    return x + std * z * inside[:, None].to(x.dtype)


class ImageParams(TaskParams):
    reg_noise: float = Field(default=0.0, ge=0, description="std of the regulariser's patch "
                             "noise; > 0 appends a noised copy of every batch (loss sensreg)")
    reg_patch: int = Field(default=4, gt=0, description="side of the regulariser's noised patch")


class ImageTask(Task):
    """Shared machinery of the image tasks."""

    target_kind: ClassVar[str] = "classes"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    @property
    def n_classes(self) -> int:
        return 10

    @property
    def n_outputs(self) -> int:
        return self.n_classes

    @property
    def vocab_size(self) -> int:
        return 0  # pixels, not tokens

    @property
    def seq_len(self) -> int:
        _, H, W = self.image_shape
        return H * W

    def shape_key(self) -> tuple:
        return (type(self).__name__, self.image_shape, self.n_outputs)

    def clean_batch(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        raise NotImplementedError

    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        x, y = self.clean_batch(state, key, batch, split)
        if self.params.reg_noise > 0:
            noised = add_patch_noise(x, rng.derive(key, REG_STREAM), self.params.reg_patch,
                                     self.params.reg_noise)
            x = torch.cat([x, noised])
        return x, y

    def training_set(self, state: dict, device, limit: Optional[int] = None):
        """The first ``limit`` training examples (all when None), in order: (x, y)."""
        raise NotImplementedError


class SyntheticImageParams(ImageParams):
    classes: int = Field(default=10, ge=2, description="number of classes")
    size: int = Field(default=16, ge=4, description="image height and width")
    channels: int = Field(default=3, ge=1)
    train_size: int = Field(default=2000, gt=0, description="examples in the fixed training set")
    signal: float = Field(default=0.5, ge=0, description="prototype amplitude")
    noise: float = Field(default=0.8, ge=0, description="per-pixel noise std")
    coarse: int = Field(default=4, ge=1, description="resolution of the prototype fields")
    max_shift: int = Field(default=3, ge=0, description="largest circular shift, in pixels")
    data_seed: int = Field(default=0, description="seed of prototypes and examples")


@TASKS.register("synthetic_images", "class prototypes (smooth random fields), shifted, in noise; "
                "generated on the device")
class SyntheticImages(ImageTask):
    Params: ClassVar = SyntheticImageParams

    @property
    def image_shape(self):
        p = self.params
        return (p.channels, p.size, p.size)

    @property
    def n_classes(self) -> int:
        return self.params.classes

    def make_state(self, seed: int, device="cpu") -> dict:
        p = self.params
        key = rng.key_of(p.data_seed, device)
        field = rng.normal(rng.derive(key, 77), (p.classes, p.channels, p.coarse, p.coarse))
        proto = F.interpolate(field, size=(p.size, p.size), mode="bicubic", align_corners=False)
        proto = proto / proto.flatten(1).std(-1)[:, None, None, None]
        return {"prototypes": proto}

    def examples(self, state: dict, idx: torch.Tensor):
        """Examples with global indices idx [B] (int64): (x [B, C, H, W], y [B])."""
        p = self.params
        key = rng.key_of(p.data_seed, idx.device)
        y = rng.hash32(idx * 0x27D4EB2F + rng.derive(key, LABEL_STREAM)) % p.classes
        C, S = p.channels, p.size
        n = C * S * S
        counters = idx[:, None] * n + torch.arange(n, device=idx.device)
        z = normal_at(rng.derive(key, DATA_STREAM), counters).view(-1, C, S, S)
        shifts = rng.hash32(idx * 0x165667B1 + rng.derive(key, SHIFT_STREAM))
        span = 2 * p.max_shift + 1
        dr, dc = shifts % span - p.max_shift, (shifts // span) % span - p.max_shift
        # a circular shift by (dr, dc) as one gather: pixel (i, j) reads (i - dr, j - dc)
        ar = torch.arange(S, device=idx.device)
        rows = (ar[None, :] - dr[:, None]) % S  # [B, S]
        cols = (ar[None, :] - dc[:, None]) % S
        proto = state["prototypes"][y]  # [B, C, S, S]
        proto = proto.gather(2, rows[:, None, :, None].expand(-1, C, S, S))
        proto = proto.gather(3, cols[:, None, None, :].expand(-1, C, S, S))
        x = (p.signal * proto + p.noise * z).clamp(-1, 1)
        return x, y

    def clean_batch(self, state, key, batch, split="train"):
        self.check_split(split)
        if split == "train":
            idx = rng.randint(rng.derive(key, 11), (batch,), self.params.train_size)
        else:
            idx = TEST_OFFSET + rng.randint(rng.derive(key, 13), (batch,), TEST_OFFSET)
        return self.examples(state, idx)

    def training_set(self, state, device, limit=None):
        n = self.params.train_size if limit is None else min(limit, self.params.train_size)
        return self.examples(state, torch.arange(n, device=device))


class FileImageParams(ImageParams):
    root: str = Field(description="folder holding the data set files (no download)")
    train_size: Optional[int] = Field(default=None, gt=0,
                                      description="use the first this many training images")


_FILE_CACHE: dict = {}


class FileImages(ImageTask):
    """CIFAR-10 or SVHN from disk; arrays live on the task, shared by all members."""

    Params: ClassVar = FileImageParams
    reader: ClassVar[str] = ""

    @property
    def image_shape(self):
        return (3, 32, 32)

    def arrays(self, split: str, device) -> tuple[torch.Tensor, torch.Tensor]:
        from .image_files import READERS

        cache_key = (self.reader, self.params.root, split, str(device))
        if cache_key not in _FILE_CACHE:
            images, labels = READERS[self.reader](self.params.root, split)
            if split == "train" and self.params.train_size is not None:
                images, labels = images[: self.params.train_size], labels[: self.params.train_size]
            _FILE_CACHE[cache_key] = (images.to(device), labels.to(device))
        return _FILE_CACHE[cache_key]

    def make_state(self, seed: int, device="cpu") -> dict:
        self.arrays("train", "cpu")  # fail now, with one clear line, if the files are missing
        return {}

    @staticmethod
    def to_float(images: torch.Tensor) -> torch.Tensor:
        return images.float() / 127.5 - 1.0

    def clean_batch(self, state, key, batch, split="train"):
        self.check_split(split)
        images, labels = self.arrays(split, key.device)
        idx = rng.randint(rng.derive(key, 11 if split == "train" else 13), (batch,), len(labels))
        return self.to_float(images[idx]), labels[idx]

    def training_set(self, state, device, limit=None):
        images, labels = self.arrays("train", device)
        n = len(labels) if limit is None else min(limit, len(labels))
        return self.to_float(images[:n]), labels[:n]


@TASKS.register("cifar10", "CIFAR-10 from its binary files (cifar-10-batches-bin) on disk")
class Cifar10(FileImages):
    reader = "cifar10"


@TASKS.register("svhn", "SVHN cropped digits from train_32x32.mat / test_32x32.mat on disk")
class SVHN(FileImages):
    reader = "svhn"

