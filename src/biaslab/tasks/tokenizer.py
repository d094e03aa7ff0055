"""An offline word-level tokenizer, trained on the training file, for sentence-pair tasks.

Vasudeva et al. tokenize QQP/MRPC with roberta-base's BPE (max length 128). No tokenizer can be
downloaded here, so the lab trains its own: lower-cased words and punctuation marks (regex
``\\w+|[^\\w\\s]``), the ``vocab_size - 4`` most frequent ones of the training texts (ties broken
alphabetically, so the same file always gives the same vocabulary), everything else ``[UNK]``.

Pairs are encoded as ``[CLS] a [SEP] b [SEP]`` and padded on the LEFT with ``[PAD]`` (id 0) to
``max_len``, so that position ``max_len - 1 - j`` is the j-th token from the end in every example:
the right-aligned positions of the reference's per-position sensitivity, and the last position is
the last real token (the read-out of the LSTM and the GPT-2-like model). A pair that is too long loses tokens from its longer sentence first (the
"longest first" rule of the usual BERT/RoBERTa tokenizers).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

import numpy as np

from ..errors import InputError

PAD, CLS, SEP, UNK = 0, 1, 2, 3
SPECIALS = ("[PAD]", "[CLS]", "[SEP]", "[UNK]")
_WORD = re.compile(r"\w+|[^\w\s]")


def words(text: str) -> list[str]:
    """The normalised word sequence of ``text`` (what the tokenizer sees)."""
    return _WORD.findall(text.lower())


class WordTokenizer:
    """Word-level vocabulary: ``encode`` / ``decode`` one text, ``encode_pairs`` a data set."""

    def __init__(self, vocab: list[str]):
        self.itos = list(SPECIALS) + [w for w in vocab if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def fit(cls, texts: Iterable[str], vocab_size: int) -> "WordTokenizer":
        if vocab_size <= len(SPECIALS):
            raise InputError("task.vocab_size", f"{vocab_size} leaves no room for words",
                             f"> {len(SPECIALS)}")
        counts = Counter(w for t in texts for w in words(t))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked[: vocab_size - len(SPECIALS)]])

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        return [self.stoi.get(w, UNK) for w in words(text)]

    def decode(self, ids: Iterable[int]) -> str:
        """Words joined by single spaces; padding is dropped, specials are kept as names."""
        return " ".join(self.itos[int(i)] for i in ids if int(i) != PAD)

    def encode_pair(self, a: str, b: str, max_len: int) -> list[int]:
        ta, tb = self.encode(a), self.encode(b)
        budget = max_len - 3  # [CLS] a [SEP] b [SEP]
        if budget < 2:
            raise InputError("task.max_len", f"{max_len} cannot hold a pair", ">= 5")
        while len(ta) + len(tb) > budget:  # longest first
            if len(ta) >= len(tb):
                ta.pop()
            else:
                tb.pop()
        return [CLS] + ta + [SEP] + tb + [SEP]

    def encode_pairs(self, pairs: list[tuple[str, str]], max_len: int) -> np.ndarray:
        """[N, max_len] int32 token ids, left-padded with PAD."""
        out = np.zeros((len(pairs), max_len), dtype=np.int32)
        for i, (a, b) in enumerate(pairs):
            ids = self.encode_pair(a, b, max_len)
            out[i, max_len - len(ids):] = ids
        return out
