"""PREFIX PARITY: the parity of every prefix, a scratchpad for PARITY (Hahn & Rofin E4).

Input x in {0,1}^n; target y_t = (x_1 + ... + x_t) mod 2 for t = 1..n, so y_n = PARITY(x). Every
step of the scratchpad is the XOR of two bits, y_t = y_{t-1} xor x_t: a function of sensitivity 2
per output, however long the input.

The task is sequence-to-sequence with teacher forcing. One example is the token sequence

    [x_1 ... x_n | BOS y_1 ... y_{n-1}]      (length 2n, vocabulary {0, 1, BOS = 2})

whose first ``encoder_len = n`` tokens are the encoder input and the rest the decoder input (the
targets shifted right behind BOS); the target is y = [y_1 ... y_n], float [B, n] in {0,1}. The
``seq2seq`` model reads this layout and returns one output per decoder position, [B, n].
``correct`` counts an example right only when every position is (output > 0.5 matches).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field

from .. import rng
from ..registry import TASKS
from .base import Task, TaskParams

BOS = 2


class PrefixParityParams(TaskParams):
    n: int = Field(gt=0, description="input length (= number of prefix parities)")


def prefix_parities(x: torch.Tensor) -> torch.Tensor:
    """[..., n] bits -> [..., n] float parities of every prefix."""
    return (x.cumsum(-1) % 2).float()


def teacher_forced(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The model input [..., 2n]: encoder bits, then BOS and y shifted right."""
    bos = torch.full_like(x[..., :1], BOS)
    return torch.cat([x, bos, y[..., :-1].to(x.dtype)], -1)


@TASKS.register("prefix_parity", "parity of every prefix (scratchpad PARITY), seq2seq with "
                "teacher forcing: input [x | BOS y_1..y_{n-1}], target [y_1..y_n]")
class PrefixParity(Task):
    Params: ClassVar = PrefixParityParams
    #: targets are [B, n] sequences of bits (not one output per example)
    target_kind: ClassVar[str] = "sequence"

    @property
    def n(self) -> int:
        return self.params.n

    @property
    def vocab_size(self) -> int:
        return 3

    @property
    def seq_len(self) -> int:
        return 2 * self.params.n

    @property
    def encoder_len(self) -> int:
        return self.params.n

    @property
    def n_outputs(self) -> int:
        return self.params.n

    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        x = rng.randint(rng.derive(key, 12 if split == "train" else 13), (batch, self.n), 2)
        y = prefix_parities(x)
        return teacher_forced(x, y), y

    def correct(self, output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return ((output > 0.5) == (y > 0.5)).all(-1)
