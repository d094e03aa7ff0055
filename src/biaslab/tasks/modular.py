"""MODULAR: (a op b) mod p from the input [a, b, "="], the task of the grokking studies.

Tokens 0..p-1 are the residues and token p is "=". The outputs are the p residues. All pairs
(a, b) are enumerated (for division only b != 0, since 0 has no inverse) and split once, by a
seeded permutation, into a training set of ``floor(train_fraction * pairs)`` pairs and a test set
of the rest (Vasudeva et al.'s grokking script: p = 113, 30 % of the 12,769 pairs = 3,830 train).

The split lives in the task *state* (``subset`` = training pairs, ``test`` = the other pairs), so
members of one stack may have their own splits (the reference reshuffles per seed). The training
split is named ``subset`` like the Boolean tasks' fixed training subsets, so the trainer's
evaluation reads the whole training split. ``sample(..., batch=n_train, split="train")`` returns
the whole training split in its fixed order: full-batch gradient descent, deterministically.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Optional

import torch
from pydantic import Field, model_validator

from .. import rng
from ..registry import TASKS
from .base import Task, TaskParams

OPS = ("+", "-", "*", "/")
MAX_P = 4093  # p^2 pairs are enumerated; products of residues stay far inside int64


def is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p ** 0.5) + 1))


def modular_inverse(b: torch.Tensor, p: int) -> torch.Tensor:
    """b^(p-2) mod p (Fermat), elementwise, by square-and-multiply: the inverse of b != 0 mod a
    prime p. Pure tensor arithmetic, so it runs on any device and under vmap."""
    result = torch.ones_like(b)
    base = b % p
    e = p - 2
    while e:
        if e & 1:
            result = (result * base) % p
        base = (base * base) % p
        e >>= 1
    return result


def apply_op(a: torch.Tensor, b: torch.Tensor, op: str, p: int) -> torch.Tensor:
    """(a op b) mod p for residue tensors; division multiplies by the modular inverse of b."""
    if op == "+":
        return (a + b) % p
    if op == "-":
        return (a - b) % p
    if op == "*":
        return (a * b) % p
    return (a * modular_inverse(b, p)) % p


def all_pairs(p: int, op: str, device="cpu") -> torch.Tensor:
    """Every input [a, b, "="] of the task, [N, 3] long, in order a-major (b != 0 for '/')."""
    a = torch.arange(p, device=device).repeat_interleave(p)
    b = torch.arange(p, device=device).repeat(p)
    if op == "/":
        keep = b != 0
        a, b = a[keep], b[keep]
    return torch.stack([a, b, torch.full_like(a, p)], -1)


class ModularParams(TaskParams):
    p: int = Field(default=113, ge=2, le=MAX_P, description="modulus (prime for '/')")
    op: Literal["+", "-", "*", "/"] = Field(default="+", description="the operation")
    train_fraction: float = Field(default=0.3, gt=0, lt=1,
                                  description="share of all pairs in the training split")
    split_seed: Optional[int] = Field(
        default=None, description="seed of the train/test split; None = the member's seed")

    @model_validator(mode="after")
    def _valid(self):
        if self.op == "/" and not is_prime(self.p):
            raise ValueError(f"op '/' needs a prime p (every b != 0 invertible); {self.p} is not")
        n = self.p * (self.p - 1) if self.op == "/" else self.p ** 2
        k = int(self.train_fraction * n)
        if not 1 <= k < n:
            raise ValueError(f"train_fraction {self.train_fraction} leaves {k} of {n} pairs "
                             "for training; both splits need at least one pair")
        return self


@TASKS.register("modular", "(a op b) mod p from [a, b, '='], op in + - * /; seeded train/test split")
class ModularArithmetic(Task):
    Params: ClassVar = ModularParams
    target_kind: ClassVar[str] = "classes"

    @property
    def p(self) -> int:
        return self.params.p

    @property
    def vocab_size(self) -> int:
        return self.p + 1  # the residues and "="

    @property
    def seq_len(self) -> int:
        return 3

    @property
    def n_outputs(self) -> int:
        return self.p

    @property
    def n_pairs(self) -> int:
        return self.p * (self.p - 1) if self.params.op == "/" else self.p ** 2

    @property
    def n_train(self) -> int:
        """Size of the training split: the full batch."""
        return int(self.params.train_fraction * self.n_pairs)  # floor, as the reference

    @property
    def n_test(self) -> int:
        return self.n_pairs - self.n_train

    def shape_key(self) -> tuple:
        return super().shape_key() + (self.params.op, self.n_train)

    def target(self, state: dict, x: torch.Tensor) -> torch.Tensor:
        return apply_op(x[..., 0], x[..., 1], self.params.op, self.p)

    def make_state(self, seed: int, device="cpu") -> dict:
        s = self.params.split_seed if self.params.split_seed is not None else seed
        key = rng.derive(rng.key_of(s, device), 0x5B1)
        pairs = all_pairs(self.p, self.params.op, device)
        order = torch.argsort(rng.bits32(key, (pairs.shape[0],)))  # a seeded permutation
        return {"subset": pairs[order[:self.n_train]], "test": pairs[order[self.n_train:]]}

    def sample(self, state: dict, key: torch.Tensor, batch: int, split: str = "train"):
        """The whole split when ``batch`` equals its size (in its fixed order), else ``batch``
        pairs drawn from it uniformly with replacement."""
        self.check_split(split)
        pool = state["subset"] if split == "train" else state["test"]
        if batch == pool.shape[0]:
            x = pool
        else:
            x = pool[rng.randint(rng.derive(key, 21 if split == "train" else 22), (batch,),
                                 pool.shape[0])]
        return x, self.target(state, x)
