"""Readers for GLUE's QQP and MRPC files as they lie on disk (no download, nothing unpickled).

A data set is a GLUE task directory holding ``train.tsv`` and ``dev.tsv`` (the layout of the GLUE
download script); the real column layouts are:

  QQP   ``id  qid1  qid2  question1  question2  is_duplicate``          (label last, 0/1)
  MRPC  ``Quality  #1 ID  #2 ID  #1 String  #2 String``                 (label first, 0/1)

Fields are tab-separated with no quoting (the sentences contain quote marks, so a CSV quote rule
would merge rows). A few rows of the public QQP files are broken (too few fields); like the usual
GLUE readers we skip such rows, but only while they stay under 1% of the file: more than that, a
wrong header, or a label that is not 0/1 means the file is not what it claims to be, and ends in
one ``InputError`` line naming the path.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

#: max share of rows with the wrong number of fields that is skipped rather than refused
MAX_BAD_ROWS = 0.01


@dataclass(frozen=True)
class GlueLayout:
    header: tuple[str, ...]
    first: int  # column of sentence 1
    second: int  # column of sentence 2
    label: int  # column of the 0/1 label


LAYOUTS = {
    "qqp": GlueLayout(("id", "qid1", "qid2", "question1", "question2", "is_duplicate"), 3, 4, 5),
    "mrpc": GlueLayout(("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"), 3, 4, 0),
}
SPLIT_FILES = {"train": "train.tsv", "test": "dev.tsv"}


@dataclass
class PairData:
    first: list[str]
    second: list[str]
    labels: np.ndarray  # [N] int64 in {0, 1}
    skipped: int = 0  # broken rows left out

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.first, self.second))

    def __len__(self) -> int:
        return len(self.labels)


def split_path(dataset: str, directory: str, split: str) -> str:
    if dataset not in LAYOUTS:
        raise InputError("data.dataset", f"unknown GLUE data set {dataset!r}", ", ".join(LAYOUTS))
    return os.path.join(directory, SPLIT_FILES[split])


def read_glue(dataset: str, directory: str, split: str = "train", field: str = "data.path") -> PairData:
    """The sentence pairs and labels of ``split`` ('train' -> train.tsv, 'test' -> dev.tsv)."""
    path = split_path(dataset, directory, split)
    layout = LAYOUTS[dataset]
    expected = f"GLUE {dataset.upper()} {SPLIT_FILES[split]} with columns " + ", ".join(layout.header)
    if not os.path.isfile(path):
        raise InputError(field, f"{path} does not exist", expected)
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:  # MRPC ships with a BOM
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise InputError(field, f"{path} is not a readable TSV file ({exc})", expected) from None
    if not rows or tuple(c.strip() for c in rows[0]) != layout.header:
        got = "\\t".join(rows[0])[:80] if rows else "an empty file"
        raise InputError(field, f"{path} has header {got!r}", expected)
    data = PairData([], [], np.zeros(0, dtype=np.int64))
    labels = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(layout.header):
            data.skipped += 1
            continue
        label = row[layout.label].strip()
        if label not in ("0", "1"):
            raise InputError(field, f"{path} line {line}: label {label[:20]!r} is not 0 or 1",
                             expected)
        data.first.append(row[layout.first])
        data.second.append(row[layout.second])
        labels.append(int(label))
    if not labels:
        raise InputError(field, f"{path} holds no examples", expected)
    if data.skipped > MAX_BAD_ROWS * (len(labels) + data.skipped):
        raise InputError(field, f"{path}: {data.skipped} of {len(labels) + data.skipped} rows have "
                         f"the wrong number of fields", expected)
    data.labels = np.asarray(labels, dtype=np.int64)
    return data
