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

import torch

from ..errors import InputError

SCALES = ("auto", "pm1_from_01", "raw")


def _log2_length(length: int) -> int:
    """n for a table of length 2^n (n >= 1); InputError otherwise."""
    if length < 2 or length & (length - 1):
        raise InputError("table", f"length {length} is not a power of two", "2^n for n >= 1")
    return length.bit_length() - 1


def fwht(values: torch.Tensor) -> torch.Tensor:
    """Fourier coefficients ĝ(S) = mean_x g(x) chi_S(x) over the last dim (length 2^n).

    The n * 2^n butterfly: pass i views the table as [batch, high bits, bit i, low bits] and
    replaces the pair (a, b) = (g at x_i = 0, g at x_i = 1) by (a + b, a - b), i.e. sums over
    x_i with weight (-1)^(x_i * S_i). After all n passes entry S holds sum_x g(x) chi_S(x);
    dividing by 2^n makes it a mean. No 2^n x 2^n matrix is ever formed, so n = 24 fits.
    Integer inputs are promoted to float64; float inputs keep their dtype.
    """
    x = torch.as_tensor(values)
    if not x.is_floating_point():
        x = x.to(torch.float64)
    length = x.shape[-1] if x.dim() else 0
    n = _log2_length(length)
    batch = x.shape[:-1]
    y = x.reshape(-1, length)
    for i in range(n):
        y = y.reshape(y.shape[0], length >> (i + 1), 2, 1 << i)
        a, b = y[:, :, 0], y[:, :, 1]
        y = torch.stack((a + b, a - b), dim=2)
    return y.reshape(*batch, length) / length


def is_boolean_table(table: torch.Tensor) -> bool:
    """True if every entry is in {0, 1} or every entry is in {-1, +1}.

    Decided over the whole tensor (not per row) so a batch of tables is converted consistently.
    """
    t = torch.as_tensor(table)
    return bool(((t == 0) | (t == 1)).all()) or bool(((t == -1) | (t == 1)).all())


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
    t = torch.as_tensor(table).to(torch.float64)
    if scale == "raw":
        return t
    if scale == "pm1_from_01" or bool(((t == 0) | (t == 1)).all()):
        return 1.0 - 2.0 * t
    return t  # {-1,+1} or real-valued: already on the scale we want


def fourier_spectrum(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """All 2^n Fourier coefficients of ``to_pm1(table)``: [..., 2^n] float64, index = S."""
    return fwht(to_pm1(table, scale))


def subset_sizes(n: int, device=None) -> torch.Tensor:
    """|S| = popcount(S) for every index S in [0, 2^n): LongTensor [2^n]."""
    s = torch.arange(1 << n, device=device, dtype=torch.int64)
    size = torch.zeros_like(s)
    for i in range(n):  # n passes over 2^n ints beats an [2^n, n] bit matrix in memory
        size += (s >> i) & 1
    return size


def degree_profile(table: torch.Tensor, scale: str = "auto") -> torch.Tensor:
    """Spectral weight per degree, W_k = sum_{|S| = k} ĝ(S)^2: [..., n + 1] float64.

    For a ±1 table the weights sum to 1 (Parseval), so W is a distribution over degrees and
    as = sum_k k W_k; where it sits shows how "high-frequency" the function is.
    """
    coef = fourier_spectrum(table, scale)
    n = _log2_length(coef.shape[-1])
    size = subset_sizes(n, coef.device)
    weights = coef.new_zeros(*coef.shape[:-1], n + 1)
    return weights.index_add_(-1, size, coef.square())


def fourier_degree(table: torch.Tensor, tol: float = 1e-9, scale: str = "auto") -> torch.Tensor:
    """Degree: max |S| with ĝ(S)^2 > tol, LongTensor [...]. The zero function gets degree 0.

    ``tol`` absorbs floating-point noise in real-valued (e.g. learned, unthresholded) tables.
    """
    coef = fourier_spectrum(table, scale)
    n = _log2_length(coef.shape[-1])
    size = subset_sizes(n, coef.device).expand_as(coef)
    live = coef.square() > tol
    return torch.where(live, size, torch.zeros_like(size)).amax(-1)


def _register() -> None:
    from ..registry import MEASURES

    MEASURES.add("fourier_spectrum", fourier_spectrum,
                 "Fourier-Walsh coefficients ĝ(S) of a truth table (fast Walsh-Hadamard transform)")
    MEASURES.add("degree_profile", degree_profile,
                 "spectral weight W_k = sum over |S|=k of ĝ(S)^2, for each degree k = 0..n")


_register()
