"""Shared pieces of the vision experiments of Vasudeva et al. (sheet §4 E2, E4, E5; targets 3, 5,
6 of ``papers/low-sensitivity.md``): the image task in a spec, training a stack of one
architecture to a training accuracy, and the measurements every vision experiment records.

Sensitivity is the paper's token-wise measure on images: N(0, sigma^2) on every pixel and
channel of ONE patch, every patch in turn, label flips (argmax), on the first ``examples``
TRAINING images (the paper measures on training data). The reference's variant (16 scattered,
batch-shared pixels) is recorded as well when ``scattered`` is set.
"""

from __future__ import annotations

import time

import torch
from pydantic import Field

from ... import rng
from ...errors import InputError
from ...execute.plan import shared_config
from ...measure.tokenwise import PatchNoise, ScatteredPixelNoise, tokenwise_flip_sensitivity
from ...tasks import make_task
from ...train import Stack, TrainConfig, train
from ..base import SpecBase
from ..common import ModelChoice, members_of

SENS_STREAM = 0x5E15  # rng stream of the patch-noise draws (the same at every measurement)


class ImageTaskChoice(SpecBase):
    name: str = Field(default="synthetic_images", description="synthetic_images, cifar10 or svhn")
    params: dict = Field(default_factory=dict, description="task fields (cifar10/svhn: root)")

    def make(self, extra: dict | None = None):
        from ...registry import TASKS
        from ...tasks.images import ImageTask

        if not issubclass(TASKS.get(self.name), ImageTask):
            raise InputError("task.name", f"{self.name!r} is not an image task",
                             "synthetic_images, cifar10, svhn")
        return make_task(self.name, {**self.params, **(extra or {})})


class SensitivityChoice(SpecBase):
    sigmas: list[float] = Field(default=[0.1, 0.5, 1.0], min_length=1,
                                description="noise stds on one patch ([-1, 1] pixel scale)")
    claim_sigma: float = Field(default=0.5, gt=0, description="the sigma the claims read "
                               "(one of sigmas), fixed in the preset before the runs")
    patch: int = Field(default=4, gt=0, description="patch side (the reference: the ViT's 4)")
    draws: int = Field(default=2, ge=1, description="noise draws per patch and image")
    examples: int = Field(default=256, ge=1, description="training images measured")
    scattered: bool = Field(default=False, description="also the reference's 16 scattered "
                            "pixels (5 draws), at claim_sigma")
    chunk_rows: int = Field(default=4096, ge=1, description="perturbed images per forward call")

    def check(self) -> None:
        if self.claim_sigma not in self.sigmas:
            raise InputError("sensitivity.claim_sigma", f"{self.claim_sigma} is not in sigmas "
                             f"{self.sigmas}", "one of sigmas")


def default_vision_train(steps: int = 600) -> TrainConfig:
    """Adam(W) without decay to a training accuracy, then stop (members freeze on reaching it)."""
    return TrainConfig(steps=steps, batch=64, loss="ce", converge="acc", converge_acc=0.95,
                       eval_every=50, eval_batch=512, eval_split="train")


def default_architectures() -> dict[str, ModelChoice]:
    return {
        "vit": ModelChoice(name="vit", params={"dim": 32, "depth": 2, "heads": 4, "dim_head": 8,
                                               "mlp_dim": 64}),
        "resnet18": ModelChoice(name="resnet18", params={"width": 8}),
        "cnn": ModelChoice(name="image_cnn", params={"channels": 16, "hidden": 64}),
        "mlp": ModelChoice(name="image_mlp", params={"width": 128}),
        "convmixer": ModelChoice(name="convmixer", params={"dim": 32, "depth": 3}),
    }


#: architectures counted as transformers by the claims
TRANSFORMERS = ("vit", "simple_vit")


def is_transformer(choice: dict) -> bool:
    return choice.get("name") in TRANSFORMERS


def train_stack(plans, task, device, progress=False):
    """One stack of the plans' members (same architecture), trained by the lab's trainer."""
    c0 = shared_config(plans)
    choice = ModelChoice(**c0["model"])
    cfg = TrainConfig(**c0["train"])
    t0 = time.perf_counter()
    stack = Stack(choice.name, choice.params, task, members_of(plans), device)
    result = train(stack, cfg, progress=progress)
    return stack, result, time.perf_counter() - t0


def measurement_set(task, stack, n: int):
    """The first n training images (the same for every member): (x, y) on the stack's device."""
    state = {k: v[0] for k, v in stack.task_states.items()}
    return task.training_set(state, stack.device, n)


TEST_STREAM = 0x7E57  # rng stream of the held-out images


def test_set(task, stack, n: int):
    """n held-out images (the same for every member): (x, y) on the stack's device."""
    state = {k: v[0] for k, v in stack.task_states.items()}
    return task.clean_batch(state, rng.key_of(TEST_STREAM, stack.device), n, "test")


@torch.no_grad()
def accuracy(stack, x, y, chunk: int = 1024) -> torch.Tensor:
    """[M] accuracy of every member on (x, y)."""
    hits = [(stack.forward(xs).argmax(-1) == ys).float() for xs, ys in
            zip(x.split(chunk), y.split(chunk))]
    return torch.cat(hits, -1).mean(-1)


def sensitivity_metrics(stack, x, sens: SensitivityChoice) -> tuple[dict, torch.Tensor]:
    """{f"sens_{sigma}": [M]} (and ``sens_scattered``), plus the [M, P] per-patch rates at
    claim_sigma."""
    out, per_patch = {}, None
    key = rng.key_of(SENS_STREAM)
    for sigma in sens.sigmas:
        r = tokenwise_flip_sensitivity(stack, x, PatchNoise(sigma, sens.patch), key,
                                       draws=sens.draws, chunk_rows=sens.chunk_rows)
        out[f"sens_{sigma:g}"] = r["mean"]
        if sigma == sens.claim_sigma:
            per_patch = r["per_position"]
    if sens.scattered:
        r = tokenwise_flip_sensitivity(stack, x, ScatteredPixelNoise(sens.claim_sigma, 16), key,
                                       draws=5, chunk_rows=sens.chunk_rows)
        out["sens_scattered"] = r["mean"]
    return out, per_patch


def member_row(metrics: dict, i: int) -> dict:
    return {k: float(v[i]) for k, v in metrics.items()}
