"""Number encodings of Charton's math transformers (LAWT): P10, P1000, B1999 and FP15.

Every encoding rounds a real number to 3 significant digits, then writes it as tokens:

    name   | 3.14 ->           | tokens per number | number symbols
    P10    | + 3 1 4 E-2       | 5 (zero: 3)       | + - 0..9 E-100..E100          = 213
    P1000  | + 314 E-2         | 3                 | + - 0..999 E-100..E100        = 1203
    B1999  | N314 E-2          | 2                 | N-999..N999 E-100..E100       = 2200
    FP15   | N314e7            | 1                 | N{+-m}e{e}, small, +-NaN      = 29001

P10/P1000/B1999 (the reference's ``float,2,b`` and ``floatsymbol,2``): mantissa m in 100..999 and
exponent E in -100..100 with |x| ~ m 10^E; zero is ``+ 0 E0`` (B1999 ``N0 E0``); a number whose
exponent falls below -100 becomes zero, one above 100 overflows. Rounding is half-to-even on the
float64 value (the reference prints with ``%.2e``: the two differ only within one ulp of a tie).

FP15 (the reference's ``FP15,2,16``): token ``N{+-m}e{e}`` means m 10^e / 10^9 with m in 100..999
and e in 0..15, covering about 1e-7 <= |x| < 1e9; smaller numbers become ``N{+-m}e0`` with
|m| <= 99 (steps of 1e-9); zero is ``N0e0``; |x| beyond the last token overflows to ``NaN``/``-NaN``,
decoded as +-1e9. Rounding is half-up on the magnitude, as the reference writes it.

The vocabulary (``Vocabulary``) is the union of the input and output encodings' symbols with
V1..V100 (matrix headers ``V<rows> V<cols>``), after 22 special tokens and 5 symbols
(``+ - 10^ . |``), the rest sorted as strings like the reference. ``<eos>`` is id 0 and serves as
BOS as well; ``<pad>`` is id 1. (The reference lists ``<s> </s> <pad>`` first and uses ids 0 and 1
as eos and pad; the names here say what the ids do.)

Encoding and decoding are vectorized over tensors: ``Vocabulary.encode`` writes a batch of
matrices [B, r, c] as padded id rows, ``Vocabulary.decode`` parses id rows back into [B, r, c]
float64 with a validity mask (a malformed sequence is reported, never raised).
"""

from __future__ import annotations

import math
import re

import torch

from ..errors import InputError

SPECIALS = (["<eos>", "<pad>", "<s>", "(", ")"] + [f"<SPECIAL_{i}>" for i in range(10)]
            + ["T", "A", "D", "M", "E", "F", "I"])
COMMON = ["+", "-", "10^", ".", "|"]
EOS_ID, PAD_ID = 0, 1
MAX_DIM = 100
MIN_EXP, MAX_EXP = -100, 100
# token classes of the parser
OTHER, SIGN, DIGIT, EXP, MANT, FLOAT = 0, 1, 2, 3, 4, 5


def pow10(k: torch.Tensor) -> torch.Tensor:
    """10^k for integer tensors k in [0, 330], correctly rounded float64 (a table, not pow);
    inf beyond 10^308."""
    table = _POW10.get(k.device)
    if table is None:
        values = [float(10 ** i) if i <= 308 else math.inf for i in range(331)]
        table = _POW10[k.device] = torch.tensor(values, dtype=torch.float64, device=k.device)
    return table[k.clamp(0, 330)]


_POW10: dict = {}


def scale_by_pow10(x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """x * 10^e for integer e of either sign, dividing by an exact power when e < 0."""
    return torch.where(e >= 0, x * pow10(e), x / pow10(-e))


class NumberEncoding:
    """One number encoding: its symbols, rounding, and the token layout of one number.

    A number is [lead] [digit x k] [exponent]: ``lead`` is the class of its first token (SIGN,
    MANT or FLOAT), ``digits`` the allowed (min, max) count of DIGIT tokens, ``has_exp`` whether
    an E token closes it. ``tokens_per_number`` is the longest form.
    """

    name: str = ""
    tokens_per_number: int = 0
    lead: int = SIGN
    digits: tuple[int, int] = (0, 0)
    has_exp: bool = True
    #: largest magnitude written without overflow
    limit: float = 9.995e102

    def symbols(self) -> list[str]:
        raise NotImplementedError

    def classify(self, word: str) -> tuple[int, float]:
        """(class, value) of one vocabulary word for this encoding's parser."""
        raise NotImplementedError

    def write(self, x: torch.Tensor, ids: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """float64 [N] -> (ids [N, T], used [N, T] bool, overflow [N] bool)."""
        raise NotImplementedError

    def combine(self, lead_val, mant, exp):
        """Value of parsed numbers from the lead token's value, the digits and the exponent."""
        raise NotImplementedError

    def id_tables(self, index: dict, device) -> dict:
        """The vocabulary ids ``write`` needs, as tensors on ``device``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


def round3(x: torch.Tensor):
    """3-significant-digit decomposition of float64 x: (negative, m, E, overflow) with
    |x| ~ m 10^E, m in 100..999 (0 for zero), E in -100..100 (half-to-even rounding)."""
    a = x.abs()
    finite = torch.isfinite(x)
    pos = (a > 0) & finite
    safe = torch.where(pos, a, torch.ones_like(a))
    e = torch.floor(torch.log10(safe)).to(torch.int64) - 2
    m = torch.round(scale_by_pow10(safe, -e))
    up = m >= 1000  # log10 rounded down at a power of ten, or 999.5 rounded up
    e = torch.where(up, e + 1, e)
    m = torch.where(up, torch.round(scale_by_pow10(safe, -e)), m)
    tiny = e < MIN_EXP
    zero = ~pos | tiny
    overflow = ~finite | (pos & (e > MAX_EXP))
    m = torch.where(zero | overflow, torch.zeros_like(m), m).to(torch.int64)
    e = torch.where(zero | overflow, torch.zeros_like(e), e)
    negative = (x < 0) & (m > 0)
    return negative, m, e, overflow


class Positional(NumberEncoding):
    """P10 and P1000: sign, the mantissa in base 10 or 1000, exponent token."""

    def __init__(self, base: int):
        self.base = base
        self.name = f"P{base}"
        self.n_digits = 3 if base == 10 else 1
        self.digits = (1, self.n_digits)
        self.tokens_per_number = 2 + self.n_digits
        self.lead = SIGN

    def symbols(self):
        return (["+", "-"] + [str(i) for i in range(self.base)]
                + [f"E{i}" for i in range(MIN_EXP, MAX_EXP + 1)])

    def classify(self, word):
        if word in ("+", "-"):
            return SIGN, (1.0 if word == "+" else -1.0)
        if word.isdigit() and int(word) < self.base:
            return DIGIT, float(word)
        if word.startswith("E") and _is_int(word[1:]) and MIN_EXP <= int(word[1:]) <= MAX_EXP:
            return EXP, float(word[1:])
        return OTHER, 0.0

    def write(self, x, ids):
        neg, m, e, over = round3(x)
        sign = torch.where(neg, ids["-"], ids["+"])
        expo = ids["E"][e - MIN_EXP]
        if self.n_digits == 1:
            out = torch.stack([sign, ids["digit"][m], expo], -1)
            return out, torch.ones_like(out, dtype=torch.bool), over
        d = torch.stack([m // 100, m // 10 % 10, m % 10], -1)
        zero = m == 0
        # zero is written "+ 0 E0": its first digit slot holds 0, the other two are unused
        out = torch.cat([sign[:, None], ids["digit"][d], expo[:, None]], -1)
        used = torch.ones_like(out, dtype=torch.bool)
        used[:, 2:4] = ~zero[:, None]
        return out, used, over

    def combine(self, lead_val, mant, exp):
        return lead_val * scale_by_pow10(mant.to(torch.float64), exp)

    def id_tables(self, index, device):
        return {"+": torch.tensor(index["+"], device=device),
                "-": torch.tensor(index["-"], device=device),
                "digit": _ids(index, [str(i) for i in range(self.base)], device),
                "E": _ids(index, [f"E{i}" for i in range(MIN_EXP, MAX_EXP + 1)], device)}


class B1999(NumberEncoding):
    """Signed mantissa token N-999..N999, then the exponent token."""

    name = "B1999"
    tokens_per_number = 2
    lead = MANT
    digits = (0, 0)

    def symbols(self):
        return [f"N{i}" for i in range(-999, 1000)] + [f"E{i}" for i in range(MIN_EXP, MAX_EXP + 1)]

    def classify(self, word):
        if word.startswith("N") and _is_int(word[1:]) and abs(int(word[1:])) <= 999:
            return MANT, float(word[1:])
        if word.startswith("E") and _is_int(word[1:]) and MIN_EXP <= int(word[1:]) <= MAX_EXP:
            return EXP, float(word[1:])
        return OTHER, 0.0

    def write(self, x, ids):
        neg, m, e, over = round3(x)
        signed = torch.where(neg, -m, m)
        out = torch.stack([ids["mant"][signed + 999], ids["E"][e - MIN_EXP]], -1)
        return out, torch.ones_like(out, dtype=torch.bool), over

    def combine(self, lead_val, mant, exp):
        return scale_by_pow10(lead_val, exp)

    def id_tables(self, index, device):
        return {"mant": _ids(index, [f"N{i}" for i in range(-999, 1000)], device),
                "E": _ids(index, [f"E{i}" for i in range(MIN_EXP, MAX_EXP + 1)], device)}


class FP15(NumberEncoding):
    """One token per number: N{+-m}e{e} = m 10^e / 10^9 (m 100..999, e 0..15), small numbers
    N{+-m}e0 with |m| <= 99, overflow NaN / -NaN (decoded as +-1e9)."""

    name = "FP15"
    tokens_per_number = 1
    lead = FLOAT
    has_exp = False
    max_exponent = 16
    scale = 10 ** 7  # |x| * scale = m 10^(e-2)
    overflow_value = 1e9
    limit = 9.995e8

    def symbols(self):
        out = ["NaN", "-NaN"] + [f"N{i}e0" for i in range(-99, 100)]
        for e in range(self.max_exponent):
            for m in range(100, 1000):
                out += [f"N{m}e{e}", f"N-{m}e{e}"]
        return out

    def classify(self, word):
        if word in ("NaN", "-NaN"):
            return FLOAT, (self.overflow_value if word == "NaN" else -self.overflow_value)
        if word.startswith("N") and "e" in word:
            m, _, e = word[1:].partition("e")
            if _is_int(m) and _is_int(e) and 0 <= int(e) < self.max_exponent:
                m, e = int(m), int(e)
                if (abs(m) <= 99 and e == 0) or 100 <= abs(m) <= 999:
                    return FLOAT, (m * 10 ** e) / 10 ** 9  # exact int division: correctly rounded
        return OTHER, 0.0

    def write(self, x, ids):
        a = x.abs()
        v = a * float(self.scale)
        pos = (v > 0) & torch.isfinite(v)
        safe = torch.where(pos, v, torch.ones_like(v))
        e = torch.trunc(torch.log10(safe)).to(torch.int64).clamp(min=0)
        m = torch.floor(scale_by_pow10(safe, 2 - e) + 0.5).to(torch.int64)
        up = m >= 1000
        m = torch.where(up, torch.full_like(m, 100), m)
        e = torch.where(up, e + 1, e)
        m = torch.where(pos, m, torch.zeros_like(m))
        e = torch.where(pos, e, torch.zeros_like(e))
        over = ~torch.isfinite(x) | (a > self.overflow_value) | (e >= self.max_exponent)
        neg = (x < 0) & (m > 0)
        small = (e == 0) & (m < 100)
        e_c = e.clamp(max=self.max_exponent - 1)
        main = ids["main"][neg.long(), e_c, (m - 100).clamp(0, 899)]
        small_id = ids["small"][torch.where(neg, -m, m).clamp(-99, 99) + 99]
        tok = torch.where(small, small_id, main)
        tok = torch.where(over, torch.where(x < 0, ids["-NaN"], ids["NaN"]), tok)
        return tok[:, None], torch.ones_like(tok[:, None], dtype=torch.bool), over

    def combine(self, lead_val, mant, exp):
        return lead_val

    def id_tables(self, index, device):
        main = [[[f"N{'-' if s else ''}{m}e{e}" for m in range(100, 1000)]
                 for e in range(self.max_exponent)] for s in (0, 1)]
        return {"main": torch.tensor([[[index[w] for w in r] for r in p] for p in main],
                                     dtype=torch.int64, device=device),
                "small": _ids(index, [f"N{i}e0" for i in range(-99, 100)], device),
                "NaN": torch.tensor(index["NaN"], device=device),
                "-NaN": torch.tensor(index["-NaN"], device=device)}


def _ids(index: dict, words: list[str], device) -> torch.Tensor:
    return torch.tensor([index[w] for w in words], dtype=torch.int64, device=device)


def _is_int(s: str) -> bool:
    return re.fullmatch(r"-?[0-9]+", s) is not None


ENCODINGS = {"p10": lambda: Positional(10), "p1000": lambda: Positional(1000),
             "b1999": B1999, "fp15": FP15}


def get_encoding(name: str, field: str = "encoding") -> NumberEncoding:
    """The encoding called ``name`` (case-insensitive); InputError names the accepted ones."""
    key = str(name).lower()
    if key not in ENCODINGS:
        raise InputError(field, f"unknown encoding {name!r}", "p10, p1000, b1999, fp15")
    return ENCODINGS[key]()
