"""Synthetic vocabulary: one label carried by two features of different sensitivity.

Vasudeva et al. (sheet §2 "Synthetic vocabulary", §4 E1) train one attention layer on sequences
whose label is carried either by *sparse* tokens (high sensitivity: one position decides the
label, so replacing that one token changes it) or by *frequent* tokens (low sensitivity: many
positions repeat the label, so no single replacement changes it). Their vocabulary size, length
and data size are not published; the fields below are this lab's choices.

Vocabulary (ids in this order): ``noise_words`` neutral words; ``frequent_words`` words of class
0, then of class 1; ``sparse_words`` words of class 0, then of class 1. A sequence of ``seq_len``
words holds ``frequent_count`` frequent words of its frequent-feature class and ``sparse_count``
sparse words of its sparse-feature class at random positions, and noise words elsewhere. Each
sparse word is rare (drawn from many), each frequent word common (drawn from few).

Splits (the label ``y`` is always returned as the target):
  ``train``, ``test``   both features say y (fresh draws from different streams);
  ``conflict``          frequent words say y, sparse words say 1 - y: accuracy on this split is
                        the share of predictions that follow the frequent (low-sensitivity) feature;
  ``frequent_only``     sparse words replaced by noise; the frequent words say y;
  ``sparse_only``       frequent words replaced by noise; the sparse words say y.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pydantic import Field, model_validator

from .. import rng
from ..errors import InputError
from ..registry import TASKS
from .base import Task, TaskParams

SPLITS = ("train", "test", "conflict", "frequent_only", "sparse_only")


class VocabParams(TaskParams):
    seq_len: int = Field(default=16, gt=1, description="words per sequence")
    noise_words: int = Field(default=64, gt=0, description="neutral words")
    frequent_words: int = Field(default=2, gt=0, description="frequent-feature words per class")
    sparse_words: int = Field(default=32, gt=0, description="sparse-feature words per class")
    frequent_count: int = Field(default=6, gt=0, description="positions holding frequent words")
    sparse_count: int = Field(default=1, gt=0, description="positions holding sparse words")

    @model_validator(mode="after")
    def _fits(self):
        if self.frequent_count + self.sparse_count > self.seq_len:
            raise ValueError(f"frequent_count + sparse_count = {self.frequent_count + self.sparse_count}"
                             f" exceeds seq_len {self.seq_len}")
        return self


@TASKS.register("vocab_features", "label carried by frequent (low-sensitivity) and sparse "
                "(high-sensitivity) words; conflict splits tell which one a model uses")
class VocabFeaturesTask(Task):
    Params: ClassVar = VocabParams
    target_kind: ClassVar[str] = "classes"

    @property
    def vocab_size(self) -> int:
        p = self.params
        return p.noise_words + 2 * p.frequent_words + 2 * p.sparse_words

    @property
    def seq_len(self) -> int:
        return self.params.seq_len

    @property
    def n_outputs(self) -> int:
        return 2

    def check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise InputError("split", f"unknown split {split!r}", ", ".join(SPLITS))

    def word_class(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masks of frequent / sparse words and the class each word carries (-1 for noise)."""
        p = self.params
        f0 = p.noise_words
        s0 = f0 + 2 * p.frequent_words
        frequent = (x >= f0) & (x < s0)
        sparse = x >= s0
        cls = torch.where(frequent, (x - f0) // p.frequent_words,
                          torch.where(sparse, (x - s0) // p.sparse_words, torch.full_like(x, -1)))
        return {"frequent": frequent, "sparse": sparse, "class": cls}

    def sample(self, state, key, batch, split="train"):
        self.check_split(split)
        p = self.params
        key = rng.derive(key, 51 + SPLITS.index(split))
        L = p.seq_len
        y = rng.randint(rng.derive(key, 1), (batch,), 2)
        sparse_y = 1 - y if split == "conflict" else y
        # a random ordering of positions: the first frequent_count ranks hold frequent words,
        # the next sparse_count ranks hold sparse words
        rank = rng.bits32(rng.derive(key, 2), (batch, L)).argsort(-1).argsort(-1)
        use_frequent = split != "sparse_only"
        use_sparse = split != "frequent_only"
        is_frequent = (rank < p.frequent_count) & use_frequent
        is_sparse = (rank >= p.frequent_count) & (rank < p.frequent_count + p.sparse_count) & use_sparse
        noise = rng.randint(rng.derive(key, 3), (batch, L), p.noise_words)
        frequent = p.noise_words + y[:, None] * p.frequent_words + rng.randint(
            rng.derive(key, 4), (batch, L), p.frequent_words)
        sparse = p.noise_words + 2 * p.frequent_words + sparse_y[:, None] * p.sparse_words + \
            rng.randint(rng.derive(key, 5), (batch, L), p.sparse_words)
        x = torch.where(is_frequent, frequent, torch.where(is_sparse, sparse, noise))
        return x, y
