"""Real handwritten digits with no download: scikit-learn's 1,797 labelled 8x8 images
(``sklearn.datasets.load_digits`` ships them inside the package).

The 16 grey levels (0-16) are scaled to [-1, 1] (the image tasks' range), upsampled to
``size`` x ``size`` (bilinear by default; ``nearest`` keeps every original pixel a constant
square) and repeated over ``channels``, so the vision models see the shape they were built for.
A seeded permutation (``split_seed``) puts ``test_size`` images in the test split and the rest in
the training split; ``train_size`` keeps only the first training images of that order. The
arrays are built once per (params, device) and shared by every member, like CIFAR-10's.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from pydantic import Field

from .. import rng
from ..errors import InputError
from ..registry import TASKS
from .images import ImageParams, ImageTask

N_DIGITS = 1797  # images in load_digits


class DigitsParams(ImageParams):
    size: int = Field(default=16, ge=8, description="image height and width after upsampling")
    channels: int = Field(default=3, ge=1, description="grey copied to this many channels")
    upsample: Literal["bilinear", "nearest"] = Field(default="bilinear",
                                                     description="how 8x8 becomes size x size")
    test_size: int = Field(default=497, gt=0, lt=N_DIGITS, description="held-out images")
    train_size: Optional[int] = Field(default=None, gt=0,
                                      description="use the first this many training images")
    split_seed: int = Field(default=0, description="seed of the train/test permutation")


_CACHE: dict = {}


def digits_arrays() -> tuple[torch.Tensor, torch.Tensor]:
    """(images float [1797, 8, 8] in 0..16, labels long [1797]) from scikit-learn."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise InputError("task.name", "the digits task needs scikit-learn (pip install "
                         "scikit-learn)", "synthetic_images, cifar10, svhn") from exc
    data = load_digits()
    return (torch.tensor(data.images, dtype=torch.float32),
            torch.tensor(data.target, dtype=torch.long))


@TASKS.register("digits", "scikit-learn's 1,797 handwritten 8x8 digits (offline), upsampled; "
                "seeded train/test split")
class Digits(ImageTask):
    Params: ClassVar = DigitsParams

    @property
    def image_shape(self):
        p = self.params
        return (p.channels, p.size, p.size)

    def arrays(self, split: str, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(x [N, C, size, size] in [-1, 1], y [N]) of one split, on device."""
        p = self.params
        cache_key = (p.size, p.channels, p.upsample, p.test_size, p.train_size, p.split_seed,
                     split, str(device))
        if cache_key not in _CACHE:
            images, labels = digits_arrays()
            order = torch.randperm(N_DIGITS, generator=torch.Generator().manual_seed(p.split_seed))
            idx = order[:p.test_size] if split == "test" else order[p.test_size:]
            if split == "train" and p.train_size is not None:
                idx = idx[:p.train_size]
            x = images[idx][:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
            kw = {"align_corners": False} if p.upsample == "bilinear" else {}
            x = F.interpolate(x, size=(p.size, p.size), mode=p.upsample, **kw).clamp(-1, 1)
            _CACHE[cache_key] = (x.expand(-1, p.channels, -1, -1).contiguous().to(device),
                                 labels[idx].to(device))
        return _CACHE[cache_key]

    def clean_batch(self, state, key, batch, split="train"):
        self.check_split(split)
        x, y = self.arrays(split, key.device)
        idx = rng.randint(rng.derive(key, 11 if split == "train" else 13), (batch,), len(y))
        return x[idx], y[idx]

    def training_set(self, state, device, limit=None):
        x, y = self.arrays("train", device)
        n = len(y) if limit is None else min(limit, len(y))
        return x[:n], y[:n]
