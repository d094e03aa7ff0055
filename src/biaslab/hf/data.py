"""Lines or TSV pairs from a file -> one tensor of packed ids (see ``model.py``)."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InputError
from .model import PAD


def read_texts(path: str) -> list[tuple[str, ...]]:
    """Every non-empty line: one text, or two tab-separated texts (a pair). All lines alike."""
    p = Path(path)
    if not p.is_file():
        raise InputError("data", f"{path} does not exist", "a text file: one sentence per line, "
                         "or two tab-separated sentences per line")
    try:
        lines = [ln.rstrip("\r\n") for ln in p.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError:
        raise InputError("data", f"{path} is not UTF-8 text", "a UTF-8 text file") from None
    rows = [tuple(ln.split("\t")) for ln in lines if ln.strip()]
    if not rows:
        raise InputError("data", f"{path} has no non-empty line", "one sentence or pair per line")
    widths = {len(r) for r in rows}
    if widths - {1, 2} or len(widths) > 1:
        bad = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]) or len(r) > 2)
        raise InputError("data", f"line {bad + 1} has {len(rows[bad])} tab-separated fields, "
                         f"the first has {len(rows[0])}", "1 field on every line or 2 on every line")
    return rows


def encode(tokenizer, rows: list[tuple[str, ...]], vocab_size: int, side: str,
           max_length: int) -> torch.Tensor:
    """Tokenize (with the tokenizer's special tokens, truncated to ``max_length``) and pack
    into [B, T]: id + V * token type, padding -1 on the ``side`` the model reads from."""
    first = [r[0] for r in rows]
    second = [r[1] for r in rows] if len(rows[0]) == 2 else None
    # Segments only where the model takes them (a RoBERTa tokenizer can produce them unasked).
    segments = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    enc = tokenizer(first, second, truncation=True, max_length=max_length,
                    return_token_type_ids=segments)
    ids = enc["input_ids"]
    types = (segments and enc.get("token_type_ids")) or [[0] * len(i) for i in ids]
    if any(len(i) == 0 for i in ids):
        raise InputError("data", "a line tokenizes to no token", "lines with at least one token")
    top = max(max(i) for i in ids)
    if top >= vocab_size:
        raise InputError("model-dir", f"the tokenizer gives id {top}, the model has {vocab_size} "
                         "embeddings", "a tokenizer that matches the model")
    T = max(len(i) for i in ids)
    out = torch.full((len(ids), T), PAD, dtype=torch.int64)
    for b, (i, t) in enumerate(zip(ids, types)):
        row = torch.tensor(i, dtype=torch.int64) + vocab_size * torch.tensor(t, dtype=torch.int64)
        if side == "left":
            out[b, T - len(i):] = row
        else:
            out[b, :len(i)] = row
    return out
