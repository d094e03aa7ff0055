"""Training losses, each with the map from raw outputs to predictions used for accuracy.

``mse``: MSE against {0,1} (or real) targets, the sharpness paper's choice; prediction = output.
``mse_pm1``: MSE against {-1,+1} labels (targets mapped 2y-1); prediction = (output+1)/2.
``bce``: binary cross-entropy on a logit; prediction = sigmoid(output).
``ce``: cross-entropy over classes; prediction = logits (the task takes argmax).
``ce_seq``: teacher-forced cross-entropy over token sequences, logits [B, L, V] against targets
[B, L] whose ``<pad>`` positions (id 1, the seq2seq tasks' convention) are ignored: the mean over
the real target tokens, ``<eos>`` included, as in the LAWT reference; prediction = logits
(the task's ``correct`` takes the argmax).
``sensreg`` / ``sensreg_detached``: Vasudeva et al.'s sensitivity regulariser, for image tasks
with ``reg_noise > 0`` (tasks/images.py), whose batches are the clean images followed by patch-
noised copies: (1-p) CE(clean logits, y) + p MSE(noised logits, clean logits), p = 0.5; the
clean logits are a constant of the MSE term in ``sensreg_detached`` and not in ``sensreg`` (the
reference); prediction = the clean half. ``sensitivity_regularized(p, detach)`` builds others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import InputError


@dataclass(frozen=True)
class Loss:
    name: str
    fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    predict: Callable[[torch.Tensor], torch.Tensor]


def _mse(out, y):
    return (out - y.to(out.dtype)).pow(2).mean()


def _mse_pm1(out, y):
    return (out - (2 * y.to(out.dtype) - 1)).pow(2).mean()


def _bce(out, y):
    return F.binary_cross_entropy_with_logits(out, y.to(out.dtype))


def _ce(out, y):
    return F.cross_entropy(out, y)


#: ``<pad>`` id of the seq2seq token tasks (``tasks/linalg.py``): ignored by ``ce_seq``.
SEQ_PAD_ID = 1


def _ce_seq(out, y):
    # logsumexp - target logit: the negative log-likelihood without a full log_softmax buffer
    nll = out.logsumexp(-1) - out.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    keep = (y != SEQ_PAD_ID).to(nll.dtype)
    return (nll * keep).sum() / keep.sum().clamp(min=1)


def sensitivity_regularized(p: float = 0.5, detach: bool = False) -> Callable:
    """The loss of outputs [2B, C] (clean rows, then their noised copies) and labels [B]."""

    def fn(out, y):
        B = y.shape[0]
        clean, noised = out[:B], out[B:]
        anchor = clean.detach() if detach else clean
        return (1 - p) * F.cross_entropy(clean, y) + p * (noised - anchor).pow(2).mean()

    return fn


def clean_half(out):
    """Predictions of a sensreg batch: the clean first half of the rows (dim -2)."""
    return out[..., : out.shape[-2] // 2, :]


LOSSES = {
    "mse": Loss("mse", _mse, lambda o: o),
    "mse_pm1": Loss("mse_pm1", _mse_pm1, lambda o: (o + 1) / 2),
    "bce": Loss("bce", _bce, torch.sigmoid),
    "ce": Loss("ce", _ce, lambda o: o),
    "ce_seq": Loss("ce_seq", _ce_seq, lambda o: o),
    "sensreg": Loss("sensreg", sensitivity_regularized(0.5, detach=False), clean_half),
    "sensreg_detached": Loss("sensreg_detached", sensitivity_regularized(0.5, detach=True),
                             clean_half),
}


def get_loss(name: str) -> Loss:
    if name not in LOSSES:
        raise InputError("train.loss", f"unknown loss {name!r}", ", ".join(LOSSES))
    return LOSSES[name]
