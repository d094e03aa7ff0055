"""Sentence-pair classification: GLUE's QQP/MRPC from disk, and a synthetic pair task.

Both encode a pair as ``[CLS] a [SEP] b [SEP]`` LEFT-padded with ``[PAD]`` = 0 to ``seq_len``
(see ``tokenizer.py``) and have two classes (cross-entropy, argmax read-out), so the same models
and the same token-wise measure serve both. Left padding puts the last real token at the last
position of every example: absolute positions are the reference's right-aligned positions.

``glue_pair`` holds the whole tokenized data set in the task state (int32 ids, on the device)
and draws batches from it by index inside the training step; ``pair_topics`` generates pairs on
the device from the step's key, so cpu presets need no data set.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import ClassVar, Literal, Optional

import numpy as np
import torch
from pydantic import Field, model_validator

from .. import rng
from ..registry import TASKS
from .base import Task, TaskParams
from .glue import read_glue
from .tokenizer import CLS, PAD, SEP, SPECIALS, WordTokenizer


class PairTask(Task):
    """Two classes over left-padded token sequences; ``lengths`` counts the non-pad tokens."""

    target_kind: ClassVar[str] = "classes"

    @property
    def n_outputs(self) -> int:
        return 2

    @staticmethod
    def lengths(x: torch.Tensor) -> torch.Tensor:
        return (x != PAD).sum(-1)


# -- GLUE ------------------------------------------------------------------------------------------
class GlueParams(TaskParams):
    dataset: Literal["qqp", "mrpc"] = Field(description="GLUE task whose TSV files are read")
    path: str = Field(description="GLUE task directory holding train.tsv and dev.tsv")
    max_len: int = Field(default=128, ge=5, description="tokens per pair incl. [CLS]/[SEP]")
    vocab_size: int = Field(default=8192, gt=len(SPECIALS),
                            description="words kept by the tokenizer trained on train.tsv, + 4 specials")
    train_size: Optional[int] = Field(default=None, gt=0,
                                      description="keep the first N training pairs (None: all)")
    test_size: Optional[int] = Field(default=None, gt=0,
                                     description="keep the last N dev pairs (None: all)")


@lru_cache(maxsize=4)
def _encoded(p: GlueParams, mtimes: tuple) -> dict[str, np.ndarray]:
    """Tokenized splits of one data set (cached: every member of a stack shares them)."""
    train = read_glue(p.dataset, p.path, "train", "task.path")
    test = read_glue(p.dataset, p.path, "test", "task.path")
    n = p.train_size or len(train)
    tok = WordTokenizer.fit(train.first[:n] + train.second[:n], p.vocab_size)
    # The paper's validation set is the *last* 640 QQP dev pairs (or all 408 of MRPC).
    m = min(p.test_size or len(test), len(test))
    return {"train_x": tok.encode_pairs(train.pairs[:n], p.max_len), "train_y": train.labels[:n],
            "test_x": tok.encode_pairs(test.pairs[len(test) - m:], p.max_len),
            "test_y": test.labels[len(test) - m:], "itos": np.array(tok.itos, dtype=object)}


@TASKS.register("glue_pair", "GLUE QQP or MRPC sentence pairs read from their TSV files")
class GluePairTask(PairTask):
    Params: ClassVar = GlueParams

    def __init__(self, params: GlueParams):
        super().__init__(params)
        self.data()  # a missing or malformed file fails now, before any stack is built

    def data(self) -> dict[str, np.ndarray]:
        p = self.params
        mtimes = tuple(os.path.getmtime(os.path.join(p.path, f)) if os.path.isfile(
            os.path.join(p.path, f)) else 0.0 for f in ("train.tsv", "dev.tsv"))
        return _encoded(p, mtimes)

    @property
    def vocab_size(self) -> int:
        return self.params.vocab_size  # fixed by the config, so shapes are known before loading

    @property
    def seq_len(self) -> int:
        return self.params.max_len

    def make_state(self, seed: int, device="cpu") -> dict:
        d = self.data()
        return {k: torch.as_tensor(d[k].astype(np.int32 if k.endswith("_x") else np.int64),
                                   device=device) for k in ("train_x", "train_y", "test_x", "test_y")}

    def sample(self, state, key, batch, split="train"):
        self.check_split(split)
        xs, ys = state[f"{split}_x"], state[f"{split}_y"]
        idx = rng.randint(rng.derive(key, 31), (batch,), xs.shape[0])
        return xs[idx].long(), ys[idx]


# -- synthetic pairs ---------------------------------------------------------------------------------
class TopicParams(TaskParams):
    n_topics: int = Field(default=4, ge=2, description="topics; a pair is positive iff they match")
    topic_words: int = Field(default=12, gt=0, description="words of each topic")
    common_words: int = Field(default=24, ge=0, description="words shared by every topic")
    topic_share: float = Field(default=0.7, gt=0, le=1,
                               description="chance that a word is drawn from the sentence's topic")
    min_words: int = Field(default=4, gt=0, description="shortest sentence")
    max_words: int = Field(default=10, gt=0, description="longest sentence")

    @model_validator(mode="after")
    def _lengths(self):
        if self.min_words > self.max_words:
            raise ValueError(f"min_words {self.min_words} exceeds max_words {self.max_words}")
        if self.common_words == 0 and self.topic_share < 1:
            raise ValueError("topic_share < 1 needs common_words > 0")
        return self


@TASKS.register("pair_topics", "synthetic sentence pairs: label 1 iff both sentences share a topic")
class PairTopicsTask(PairTask):
    """A stand-in for paraphrase detection that a small model learns in minutes on a CPU.

    Each sentence has a topic; each of its words is drawn from that topic's words (with chance
    ``topic_share``) or from the common words. Sentence lengths vary, so pairs are padded as in
    GLUE. The label (1 iff the topics match, half of the pairs) depends on many words at once,
    like a paraphrase label, not on any single token.
    """

    Params: ClassVar = TopicParams

    @property
    def vocab_size(self) -> int:
        p = self.params
        return len(SPECIALS) + p.n_topics * p.topic_words + p.common_words

    @property
    def seq_len(self) -> int:
        return 2 * self.params.max_words + 3

    def _sentence(self, key, topic, batch):
        """Words [B, max_words] of sentences about ``topic`` [B], and their lengths [B]."""
        p = self.params
        W = p.max_words
        first_topic = len(SPECIALS)
        first_common = first_topic + p.n_topics * p.topic_words
        on_topic = rng.uniform(rng.derive(key, 1), (batch, W)) < p.topic_share
        topical = first_topic + topic[:, None] * p.topic_words + rng.randint(
            rng.derive(key, 2), (batch, W), p.topic_words)
        common = first_common + rng.randint(rng.derive(key, 3), (batch, W), max(p.common_words, 1))
        words = torch.where(on_topic, topical, common)
        length = rng.randint(rng.derive(key, 4), (batch,), p.max_words + 1, low=p.min_words)
        return words, length

    def sample(self, state, key, batch, split="train"):
        self.check_split(split)
        p = self.params
        key = rng.derive(key, 41 if split == "train" else 42)
        y = rng.randint(rng.derive(key, 5), (batch,), 2)
        t1 = rng.randint(rng.derive(key, 6), (batch,), p.n_topics)
        other = (t1 + rng.randint(rng.derive(key, 7), (batch,), p.n_topics, low=1)) % p.n_topics
        t2 = torch.where(y == 1, t1, other)
        w1, l1 = self._sentence(rng.derive(key, 8), t1, batch)
        w2, l2 = self._sentence(rng.derive(key, 9), t2, batch)
        return assemble_pairs(w1, l1, w2, l2, self.seq_len), y


def assemble_pairs(w1, l1, w2, l2, seq_len: int) -> torch.Tensor:
    """``[PAD]... [CLS] w1[:l1] [SEP] w2[:l2] [SEP]`` as [B, seq_len] ids (vmappable)."""
    l1, l2 = l1[:, None], l2[:, None]
    r = torch.arange(seq_len, device=w1.device)[None, :] - (seq_len - (l1 + l2 + 3))  # from [CLS]
    j1 = (r - 1).clamp(0, w1.shape[1] - 1)
    j2 = (r - l1 - 2).clamp(0, w2.shape[1] - 1)
    x = torch.full_like(r, PAD)
    x = torch.where((r >= 1) & (r <= l1), w1.gather(1, j1), x)
    x = torch.where((r == l1 + 1) | (r == l1 + l2 + 2), torch.full_like(x, SEP), x)
    x = torch.where((r >= l1 + 2) & (r <= l1 + l2 + 1), w2.gather(1, j2), x)
    return torch.where(r == 0, torch.full_like(x, CLS), x)
