"""Fourier analysis of Boolean functions given as truth tables.

A truth table is a tensor [..., 2^n] indexed little-endian (bit i of the index is input i, as
``biaslab.tasks.boolean.all_inputs`` enumerates the cube). A function g on {0,1}^n expands as
g(x) = sum_S ĝ(S) chi_S(x) with chi_S(x) = (-1)^popcount(x & S), S an index bitmask, and
ĝ(S) = mean_x g(x) chi_S(x). Average sensitivity, degree and spectral weights all read off ĝ.

Leading dims are batch dims, so the M learned tables of a stack ([M, 2^n]) go in one call.
Everything is computed in float64: coefficients of Boolean tables are dyadic rationals, so the
exact tests (as(PARITY_12) == 12, as(MAJORITY_9) == 2.4609375) hold to the last bit.
"""

from __future__ import annotations

import functools

import torch

from ..errors import InputError

SCALES = ("auto", "pm1_from_01", "raw")


def _log2_length(length: int) -> int:
    """n for a table of length 2^n (n >= 1); InputError otherwise."""
    if length < 2 or length & (length - 1):
        raise InputError("table", f"length {length} is not a power of two", "2^n for n >= 1")
    return length.bit_length() - 1


#: Bits transformed per pass: one pass multiplies by the 2^k x 2^k Hadamard matrix (a GEMM),
#: so n bits take n / k passes over the table instead of n. k = 4 was fastest on the 2-core
#: CPU (n = 20: 6.8 ms, vs 26 ms with k = 4 and a transpose per pass, 58 ms for n butterflies).
BITS_PER_PASS = 4


@functools.lru_cache(maxsize=16)
def _hadamard(k: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """The Sylvester Hadamard matrix H[S, x] = (-1)^popcount(S & x), [2^k, 2^k]."""
    h = torch.ones(1, 1, dtype=dtype, device=device)
    for _ in range(k):
        h = torch.cat((torch.cat((h, h), 1), torch.cat((h, -h), 1)), 0)
    return h


def _butterflies(y: torch.Tensor, n: int) -> torch.Tensor:
    """sum_x y(x) chi_S(x) for every S: the unnormalised transform of y [batch, 2^n].

    The transform is the tensor product of one 2 x 2 butterfly per bit, so bits can be taken
    in groups: the group of bits [lo, lo + k) is one matrix product with the 2^k Hadamard
    matrix along that group's axis of the view [rest, 2^k, 2^lo], no transpose needed. On
    integer-valued inputs every partial sum is an integer of magnitude <= 2^n, so float32 is
    exact for n <= 24 whatever order the GEMM sums in.
    """
    rows, lo = y.shape[0], 0
    while lo < n:
        k = min(BITS_PER_PASS, n - lo)
        h = _hadamard(k, y.dtype, str(y.device))
        if lo == 0:  # the lowest bits: one [rows * 2^(n-k), 2^k] @ [2^k, 2^k] product (H = H^T)
            y = y.reshape(-1, 1 << k) @ h
        else:
            y = torch.matmul(h, y.reshape(-1, 1 << k, 1 << lo))
        lo += k
    return y.reshape(rows, 1 << n)


def fwht(values: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients ĝ(S) = mean_x g(x) chi_S(x) over the last dim (length 2^n).

    The fast transform (see ``_butterflies``) gives sum_x g(x) chi_S(x) at entry S; dividing by
    2^n makes it a mean. No 2^n x 2^n matrix is ever formed,
    so n = 24 fits. Integer inputs are promoted to float64; float inputs keep their dtype.
    """
    x = torch.as_tensor(values)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    length = x.shape[-1] if x.dim() else 0
    n = _log2_length(length)
    return _butterflies(x.reshape(-1, length), n).reshape(x.shape) / length


def boolean_kind(table: torch.Tensor) -> str:
    """'01' if every entry is in {0, 1}, 'pm1' if every entry is in {-1, +1}, else 'real'.

    Decided over the whole tensor (not per row, so a batch of tables is converted consistently)
    in the table's own dtype: no float64 copy, one pass for a {0,1} table.
    """
    t = torch.as_tensor(table)
    if bool(((t == 0) | (t == 1)).all()):
        return "01"
    if bool(((t == -1) | (t == 1)).all()):
        return "pm1"
    return "real"


def maps_from_01(kind: str, scale: str) -> bool:
    """Whether ``to_pm1`` maps a table of this kind by g = 1 - 2f under ``scale``."""
    if scale not in SCALES:
        raise InputError("scale", f"unknown scale {scale!r}", ", ".join(SCALES))
    return scale == "pm1_from_01" or (scale == "auto" and kind == "01")


def pm1_coefficient_sums(table: torch.Tensor, scale: str = "auto"):
    """2^n ĝ(S) of a Boolean table in exact integer arithmetic, or None for a real table.

    For a {0,1} or ±1 table every partial sum of the transform is an integer of magnitude
    <= 2^n, so it runs in float32 and is exact for n <= 24 (half the memory traffic of float64).
    """
    t = torch.as_tensor(table)
    kind = boolean_kind(t)
    flip = maps_from_01(kind, scale)
    if kind == "real" or t.shape[-1] > 1 << 24:
        return None
    g = t.to(torch.float32)
    g = 1 - 2 * g if flip else g
    length = g.shape[-1]
    return _butterflies(g.reshape(-1, length), _log2_length(length)).reshape(g.shape)


def is_boolean_table(table: torch.Tensor) -> bool:
    """True if every entry is in {0, 1} or every entry is in {-1, +1} (over the whole tensor)."""
    return boolean_kind(table) != "real"


def to_pm1(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """The table on the scale Fourier measures use, as float64.

    ``scale='auto'``: a {0,1} table becomes g = 1 - 2f (so 0 -> +1, 1 -> -1 and PARITY becomes
    chi_[n] itself; the opposite sign would flip every ĝ but leave every ĝ^2, hence sensitivity
    and degree, unchanged); a {-1,+1} table is kept; any other (real-valued) table is returned
    unchanged. A table whose entries are all in {0,1} is read as {0,1} even if it was meant as
    real (e.g. MEAN with n = 1) -- pass ``scale='raw'`` to prevent that.
    ``scale='pm1_from_01'``: always g = 1 - 2f. ``scale='raw'``: always unchanged.
    """
    if scale not in SCALES:
        raise InputError("scale", f"unknown scale {scale!r}", ", ".join(SCALES))
    t = torch.as_tensor(table)
    flip = maps_from_01(boolean_kind(t) if scale == "auto" else "real", scale)
    t = t.to(torch.float64)
    return 1.0 - 2.0 * t if flip else t


def fourier_spectrum(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """All 2^n Fourier coefficients of ``to_pm1(table)``: [..., 2^n] float64, index = S."""
    return fwht(to_pm1(table, scale))


def subset_sizes(n: int, device=None) -> torch.Tensor:
    """|S| = popcount(S) for every index S in [0, 2^n): LongTensor [2^n] (a fresh tensor)."""
    return subset_size_tensor(n, torch.device(device or "cpu")).clone()


def subset_size_tensor(n: int, device, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """``subset_sizes`` cached per (n, device, dtype): shared, so never modify it in place."""
    return _sizes(n, str(torch.device(device)), dtype)


@functools.lru_cache(maxsize=8)
def _sizes(n: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    # By doubling: the sizes of [2^i, 2^(i+1)) are those of [0, 2^i) plus one (2^n work in all).
    size = torch.zeros(1, dtype=dtype, device=device)
    for _ in range(n):
        size = torch.cat((size, size + 1))
    return size


def degree_profile(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """Spectral weight per degree, W_k = sum_{|S| = k} ĝ(S)^2: [..., n + 1] float64.

    For a ±1 table the weights sum to 1 (Parseval), so W is a distribution over degrees and
    as = sum_k k W_k; where it sits shows how "high-frequency" the function is. A Boolean table
    is transformed in integers (``pm1_coefficient_sums``): the squares (<= 2^48) and their sums
    are exact in float64, so the profile is exact.
    """
    sums = pm1_coefficient_sums(table, scale)
    if sums is None:
        square = fourier_spectrum(table, scale).square()
        denom = 1.0
    else:
        square = sums.to(torch.float64).square()
        denom = float(sums.shape[-1]) ** 2
    n = _log2_length(square.shape[-1])
    size = subset_size_tensor(n, square.device)
    weights = square.new_zeros(*square.shape[:-1], n + 1)
    return weights.index_add_(-1, size, square) / denom


def fourier_degree(table: torch.Tensor, tol: float = 1e-9, scale: str = "auto") -> torch.Tensor:
    """Degree: max |S| with ĝ(S)^2 > tol, LongTensor [...]. The zero function gets degree 0.

    ``tol`` absorbs floating-point noise in real-valued (e.g. learned, unthresholded) tables.
    """
    coef = fourier_spectrum(table, scale)
    n = _log2_length(coef.shape[-1])
    size = subset_size_tensor(n, coef.device).expand_as(coef)
    live = coef.square() > tol
    return torch.where(live, size, torch.zeros_like(size)).amax(-1)


def _register() -> None:
    from ..registry import MEASURES

    MEASURES.add("fourier_spectrum", fourier_spectrum,
                 "Fourier-Walsh coefficients ĝ(S) of a truth table (fast Walsh-Hadamard transform)")
    MEASURES.add("degree_profile", degree_profile,
                 "spectral weight W_k = sum over |S|=k of ĝ(S)^2, for each degree k = 0..n")


_register()
