"""The token vocabulary of the LAWT tasks, and matrices <-> id rows, vectorized over a batch.

A matrix is written ``V<rows> V<cols>`` then its coefficients row-major, each in the number
encoding's tokens (``encodings.py``). ``encode`` turns float64 [B, r, c] into id rows padded with
``<pad>``; ``decode`` parses id rows (stopping at the first ``<eos>`` or ``<pad>``) into [B, r, c]
float64 and a validity mask: a row is valid when its header names the expected shape and its body
is exactly r*c well-formed numbers. Both are whole-batch tensor programs (a cumulative sum marks
where each number starts; scatters collect its parts), with no Python loop over numbers.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from ..errors import InputError
from .encodings import (COMMON, DIGIT, EOS_ID, EXP, MAX_DIM, PAD_ID, SPECIALS, NumberEncoding,
                        get_encoding)


class Vocabulary:
    """Words of the union of some encodings, with per-encoding writers and parsers."""

    def __init__(self, *encodings: NumberEncoding | str, max_dim: int = MAX_DIM):
        encs = [get_encoding(e) if isinstance(e, str) else e for e in encodings]
        self.encodings = {e.name: e for e in encs}
        self.max_dim = max_dim
        numbers = {f"V{i}" for i in range(1, max_dim + 1)}
        for e in encs:
            numbers.update(e.symbols())
        self.words = SPECIALS + COMMON + sorted(numbers - set(COMMON))
        self.index = {w: i for i, w in enumerate(self.words)}
        assert len(self.index) == len(self.words)
        self.eos_id, self.pad_id = EOS_ID, PAD_ID
        self._cache: dict = {}

    @property
    def size(self) -> int:
        return len(self.words)

    # -- tables ------------------------------------------------------------------------------
    def _tables(self, enc: NumberEncoding, device) -> dict:
        key = (enc.name, str(device))
        if key not in self._cache:
            cls, val = zip(*(enc.classify(w) for w in self.words))
            self._cache[key] = {
                "write": enc.id_tables(self.index, device),
                "cls": torch.tensor(cls, dtype=torch.int64, device=device),
                "val": torch.tensor(val, dtype=torch.float64, device=device),
            }
        return self._cache[key]

    def dim_id(self, k: int) -> int:
        if not 1 <= k <= self.max_dim:
            raise InputError("dim", f"{k} is outside the header tokens V1..V{self.max_dim}",
                             f"1 <= rows, cols <= {self.max_dim}")
        return self.index[f"V{k}"]

    def length(self, enc: NumberEncoding, rows: int, cols: int) -> int:
        """The longest id row of a rows x cols matrix: 2 + rows*cols*(tokens per number)."""
        return 2 + rows * cols * enc.tokens_per_number

    # -- matrices -> ids ---------------------------------------------------------------------
    def encode(self, enc: NumberEncoding, mats: torch.Tensor, length: int | None = None):
        """float [B, r, c] -> (ids [B, length] padded with <pad>, lengths [B], overflow [B]).

        ``overflow`` marks rows with a coefficient the encoding cannot write (or a row longer
        than ``length``): callers reject those rows.
        """
        B, r, c = mats.shape
        n = r * c
        tab = self._tables(enc, mats.device)
        tok, used, over = enc.write(mats.reshape(-1).to(torch.float64), tab["write"])
        T = tok.shape[1]
        # header by fill kernels, not torch.tensor: no host-to-device copy inside a (captured) step
        rows_id = torch.full((B, 1), self.dim_id(r), dtype=torch.int64, device=mats.device)
        cols_id = torch.full((B, 1), self.dim_id(c), dtype=torch.int64, device=mats.device)
        tok = torch.cat([rows_id, cols_id, tok.reshape(B, n * T)], 1)
        used = torch.cat([torch.ones(B, 2, dtype=torch.bool, device=mats.device),
                          used.reshape(B, n * T)], 1)
        L = length if length is not None else 2 + n * T
        lengths = used.sum(1)
        pos = used.cumsum(1) - 1
        pos = torch.where(used & (pos < L), pos, torch.full_like(pos, L))
        out = torch.full((B, L + 1), self.pad_id, dtype=torch.int64, device=mats.device)
        out = out.scatter(1, pos, tok)  # out of place: task.sample runs under vmap in a stack
        overflow = over.reshape(B, n).any(1) | (lengths > L)
        return out[:, :L], lengths, overflow

    # -- ids -> matrices ---------------------------------------------------------------------
    def decode(self, enc: NumberEncoding, ids: torch.Tensor, rows: int, cols: int):
        """id rows [B, L] -> (float64 [B, rows, cols], valid [B]); invalid rows hold zeros."""
        B, L = ids.shape
        n = rows * cols
        dev = ids.device
        tab = self._tables(enc, dev)
        ids = ids.clamp(0, self.size - 1)
        if L < 2:
            return (torch.zeros(B, rows, cols, dtype=torch.float64, device=dev),
                    torch.zeros(B, dtype=torch.bool, device=dev))
        pos = torch.arange(L, device=dev).expand(B, L)
        stop = ((ids == self.eos_id) | (ids == self.pad_id)) & (pos >= 2)
        end = torch.where(stop.any(1), stop.to(torch.int8).argmax(1), torch.full_like(ids[:, 0], L))
        head_ok = (ids[:, 0] == self.dim_id(rows)) & (ids[:, 1] == self.dim_id(cols))
        body = (pos >= 2) & (pos < end[:, None])
        cls, val = tab["cls"][ids], tab["val"][ids]
        start = body & (cls == enc.lead)
        seg = start.cumsum(1) - 1
        start_pos = torch.where(start, pos, torch.full_like(pos, -1)).cummax(1).values
        off = pos - start_pos
        boundary = torch.cat([start[:, 1:] | ~body[:, 1:],
                              torch.ones(B, 1, dtype=torch.bool, device=dev)], 1)
        last = body & boundary
        dmin, dmax = enc.digits
        bad = body & (seg < 0)
        if enc.has_exp:
            ndig = off - 1
            bad |= last & ~((cls == EXP) & (ndig >= dmin) & (ndig <= dmax))
            mid = body & ~last & (off >= 1)
            bad |= mid & ~((cls == DIGIT) & (off <= dmax))
        else:
            bad |= body & (off >= 1)
        valid = head_ok & (start.sum(1) == n) & ~bad.any(1)

        slot = torch.where(body & (seg >= 0) & (seg < n), seg, torch.full_like(seg, n))

        def collect(mask, values, dtype=torch.float64):
            out = torch.zeros(B, n + 1, dtype=dtype, device=dev)
            return out.scatter(1, torch.where(mask, slot, torch.full_like(slot, n)),
                                values.to(dtype))

        lead_val = collect(start, val)
        exp = collect(last & (cls == EXP), val, torch.int64) if enc.has_exp else None
        mant = None
        if dmax > 0:
            ndig_seg = collect(last, off - 1, torch.int64)
            mant = torch.zeros(B, n + 1, dtype=torch.int64, device=dev)
            for j in range(dmax):  # Horner over the (at most 3) digit slots of every number
                d = collect(body & (off == j + 1) & (cls == DIGIT), val, torch.int64)
                mant = torch.where(j < ndig_seg, mant * enc.base + d, mant)
        values = enc.combine(lead_val, mant, exp)[:, :n]
        values = torch.where(valid[:, None], values, torch.zeros_like(values))
        return values.reshape(B, rows, cols), valid

    def read_shape(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) named by each row's header [B], -1 where the header is not V tokens."""
        lut = torch.full((self.size,), -1, dtype=torch.int64)
        for k in range(1, self.max_dim + 1):
            lut[self.index[f"V{k}"]] = k
        lut = lut.to(ids.device)
        ids = ids.clamp(0, self.size - 1)
        return lut[ids[:, 0]], lut[ids[:, 1]]

    # -- text --------------------------------------------------------------------------------
    def to_words(self, ids, stop: bool = True) -> list[str]:
        """The words of one id row, up to (not including) the first <eos>/<pad> if ``stop``."""
        out = []
        for i in (ids.tolist() if hasattr(ids, "tolist") else ids):
            if stop and i in (self.eos_id, self.pad_id) and out:
                break
            out.append(self.words[i])
        return out

    def text(self, ids) -> str:
        return " ".join(self.to_words(ids))

    def number_words(self, enc: NumberEncoding, x: float) -> list[str]:
        """The tokens of one number, e.g. 3.14 in P10 -> ['+', '3', '1', '4', 'E-2']."""
        ids, _, _ = self.encode(enc, torch.tensor([[[float(x)]]], dtype=torch.float64))
        return self.to_words(ids[0])[2:]


@lru_cache(maxsize=16)
def vocabulary(*names: str, max_dim: int = MAX_DIM) -> Vocabulary:
    """A shared Vocabulary of the named encodings (building FP15's tables takes a moment)."""
    return Vocabulary(*names, max_dim=max_dim)
