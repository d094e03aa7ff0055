"""Random matrices of the LAWT tasks, in float64 on the key's device, and the problems built on them.

Coefficients are i.i.d. U[-A, A] or, with ``gaussian``, N(0, A^2/3) -- the same variance (the
reference switches gaussian coefficients on only for a generator called "normal", so its OOD sweep,
which asks for "gaussian", silently gets uniform ones; here the flag does what it says).
Symmetric (Wigner) matrices mirror the lower triangle, diagonal included.

The seven eigenvalue distributions of the OOD study (Charton, "What is my math transformer
doing?"): draw a Wigner matrix W = V diag(lambda) V^T, keep V, replace lambda, rebuild. With
sigma = sqrt(n) A / sqrt(3) (12.91 at n = 5, A = 10) the first six share the second moment sigma^2:
  semicircle  W itself (Wigner's semicircle: E[lambda^2] = tr(W^2)/n = n A^2/3 exactly)
  positive    |lambda(W)|
  uniform     U[-sqrt(3) sigma, sqrt(3) sigma]
  gaussian    N(0, sigma^2)
  laplace     Laplace(0, sigma / sqrt(2))
  positive2   |Laplace(0, sigma / sqrt(2))|
  marcenko    M1^T M1 with M1's entries U[-sqrt(A), sqrt(A)] (second moment not matched)
The rebuild is the reference's (``generators.py``, ``matrix = vec.T @ np.diag(val) @ vec``):
``eigh`` puts W's eigenvectors in the *columns* of V, and V^T diag(lambda) V makes the *rows* of V
the new matrix's eigenvectors. That is not V diag(lambda) V^T in distribution: the frames would
both be Haar for GOE matrices, but W has uniform entries: under the positive spectrum at 5x5 the
diagonal variance is 11.60 here vs 8.00 with V diag V^T, the off-diagonal 8.25 vs 9.15 (numpy,
200,000 matrices, issue 24; under the Laplace spectrum the second moments agree: 63.0 / 25.9).
The pairing of eigenvalue i with row i follows eigh's ascending order. eigh's column signs are
arbitrary (numpy's and torch's LAPACK disagree on about a third of the 5x5 columns); they change
the rebuilt matrix only to S M S (rows and columns flipped together, S = diag(+-1)), which leaves
every entry's distribution up to sign as it is. They are fixed here as ``fix_signs`` fixes them
(each column's largest-|.| entry positive), so the inputs do not depend on the device.

Eigenvector and singular-vector signs are fixed so the largest-magnitude entry of each column of
Q (of U for the SVD, V following) is positive: LAPACK and cuSOLVER pick different signs, and the
target must not depend on the device.
"""

from __future__ import annotations

import math

import torch

from .. import rng

DISTRIBUTIONS = ("semicircle", "positive", "uniform", "gaussian", "laplace", "positive2", "marcenko")


# -- random numbers in float64 -------------------------------------------------------------------
def uniform64(key: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Uniform in (0, 1) with 53 random bits (two 32-bit streams), float64."""
    hi = rng.bits32(rng.derive(key, 1), shape) >> 5  # 27 bits
    lo = rng.bits32(rng.derive(key, 2), shape) >> 6  # 26 bits
    return ((hi * (1 << 26) + lo).to(torch.float64) + 0.5) / float(1 << 53)


def normal64(key: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal by Box-Muller, float64."""
    u1, u2 = uniform64(rng.derive(key, 3), shape), uniform64(rng.derive(key, 4), shape)
    return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)


def laplace64(key: torch.Tensor, shape: tuple[int, ...], scale: float) -> torch.Tensor:
    """Laplace(0, scale) by inversion: variance 2 scale^2."""
    u = uniform64(key, shape) - 0.5
    return -scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())


def coefficients(key, shape, bound: float, gaussian: bool) -> torch.Tensor:
    """i.i.d. U[-bound, bound], or N(0, bound^2/3) (the same variance) when ``gaussian``."""
    if gaussian:
        return normal64(key, shape) * (bound / math.sqrt(3.0))
    return (2.0 * uniform64(key, shape) - 1.0) * bound


def wigner(key, batch: int, n: int, bound: float, gaussian: bool) -> torch.Tensor:
    """Symmetric [batch, n, n]: the lower triangle (diagonal included) mirrored."""
    a = coefficients(key, (batch, n, n), bound, gaussian)
    low = torch.tril(a)
    return low + torch.tril(a, -1).transpose(-1, -2)


def eigen_sigma(n: int, bound: float) -> float:
    """The matched RMS of the eigenvalues: sqrt(n) A / sqrt(3)."""
    return math.sqrt(n) * bound / math.sqrt(3.0)


def symmetric_with_spectrum(key, batch: int, n: int, bound: float, gaussian: bool,
                            distribution: str) -> torch.Tensor:
    """A symmetric [batch, n, n] matrix whose eigenvalues follow ``distribution``."""
    if distribution == "marcenko":
        m1 = coefficients(rng.derive(key, 20), (batch, n, n), math.sqrt(bound), gaussian)
        return m1.transpose(-1, -2) @ m1
    w = wigner(rng.derive(key, 21), batch, n, bound, gaussian)
    if distribution == "semicircle":
        return w
    lam, vec = torch.linalg.eigh(w)
    sigma = eigen_sigma(n, bound)
    k = rng.derive(key, 22)
    if distribution == "positive":
        lam = lam.abs()
    elif distribution == "uniform":
        lam = sigma * math.sqrt(3.0) * (2.0 * uniform64(k, (batch, n)) - 1.0)
    elif distribution == "gaussian":
        lam = sigma * normal64(k, (batch, n))
    elif distribution == "laplace":
        lam = laplace64(k, (batch, n), sigma / math.sqrt(2.0))
    elif distribution == "positive2":
        lam = laplace64(k, (batch, n), sigma / math.sqrt(2.0)).abs()
    else:
        raise ValueError(f"unknown eigenvalue distribution {distribution!r}")
    return rebuild_as_lawt(fix_signs(vec)[0], lam)


def rebuild_as_lawt(vec: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """vec^T diag(lam) vec for [..., n, n] ``vec`` (eigh's eigenvectors in its columns) and
    [..., n] ``lam``: the reference's rebuild, symmetrized against rounding."""
    m = vec.transpose(-1, -2) @ (lam[..., :, None] * vec)
    return 0.5 * (m + m.transpose(-1, -2))


def fix_signs(q: torch.Tensor, *others: torch.Tensor):
    """Flip columns of q (and the same columns of ``others``) so each column's largest-|.| entry
    is positive."""
    idx = q.abs().argmax(-2, keepdim=True)
    s = torch.sign(torch.gather(q, -2, idx))
    s = torch.where(s == 0, torch.ones_like(s), s)
    return (q * s,) + tuple(o * s for o in others)


# -- the problems ---------------------------------------------------------------------------------
# Each returns (input [B, ri, ci], answer [B, ro, co], ok [B]): ``ok`` is False where the answer is
# numerically untrustworthy (the inversion residual rule); the encoder's overflow is checked later.
def _all_ok(x):
    return torch.ones(x.shape[0], dtype=torch.bool, device=x.device)


def transpose(key, B, r, c, bound, gaussian, **_):
    m = coefficients(key, (B, r, c), bound, gaussian)
    return m, m.transpose(-1, -2).contiguous(), _all_ok(m)


def matrix_sum(key, B, r, c, bound, gaussian, **_):
    m = coefficients(key, (B, r, 2 * c), bound, gaussian)
    return m, m[..., :c] + m[..., c:], _all_ok(m)


def matrix_vector(key, B, r, c, bound, gaussian, **_):
    """Input r x (c+1): A (r x c) and the vector v as its last column; answer A^T v (c x 1)."""
    m = coefficients(key, (B, r, c + 1), bound, gaussian)
    return m, m[..., :c].transpose(-1, -2) @ m[..., c:], _all_ok(m)


def matrix_product(key, B, r, c, bound, gaussian, **_):
    """Input [A | B] (r x 2c); answer A^T B (c x c)."""
    m = coefficients(key, (B, r, 2 * c), bound, gaussian)
    return m, m[..., :c].transpose(-1, -2) @ m[..., c:], _all_ok(m)


def eigenvalues(key, B, r, c, bound, gaussian, distribution="semicircle", **_):
    """Symmetric n x n -> its eigenvalues in DESCENDING order, n x 1 (the reference's order)."""
    m = symmetric_with_spectrum(key, B, r, bound, gaussian, distribution)
    lam = torch.linalg.eigvalsh(m).flip(-1)
    return m, lam[..., None], _all_ok(m)


def eigenvectors(key, B, r, c, bound, gaussian, distribution="semicircle", **_):
    """Symmetric n x n -> (n+1) x n: row 0 the eigenvalues ASCENDING, rows 1..n Q (columns are
    the eigenvectors), as the reference stacks numpy's eigh output."""
    m = symmetric_with_spectrum(key, B, r, bound, gaussian, distribution)
    lam, q = torch.linalg.eigh(m)
    (q,) = fix_signs(q)
    return m, torch.cat([lam[..., None, :], q], -2), _all_ok(m)


def _inverse(m):
    inv, info = torch.linalg.inv_ex(m)
    eye = torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
    residual = (m @ inv - eye).abs().amax((-1, -2))
    ok = (info == 0) & torch.isfinite(residual) & (residual <= 1e-10)
    return torch.where(ok[:, None, None], inv, torch.zeros_like(inv)), ok


def invert_matrix(key, B, r, c, bound, gaussian, **_):
    """M -> M^-1, rejected where max|M M^-1 - I| > 1e-10 (the reference's rule)."""
    m = coefficients(key, (B, r, r), bound, gaussian)
    inv, ok = _inverse(m)
    return m, inv, ok


def syminverse(key, B, r, c, bound, gaussian, distribution="semicircle", **_):
    m = symmetric_with_spectrum(key, B, r, bound, gaussian, distribution)
    inv, ok = _inverse(m)
    return m, inv, ok


def singularvalues(key, B, r, c, bound, gaussian, **_):
    """r x c -> the min(r, c) singular values, descending, as a column."""
    m = coefficients(key, (B, r, c), bound, gaussian)
    return m, torch.linalg.svdvals(m)[..., None], _all_ok(m)


def singularvectors(key, B, r, c, bound, gaussian, **_):
    """r x c -> (1 + r + c) x k (k = min(r, c)): sigma as a row, U (r x k), V (c x k), stacked
    like the reference's vstack((s, u, v.T))."""
    m = coefficients(key, (B, r, c), bound, gaussian)
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    u, v = fix_signs(u, vh.transpose(-1, -2))
    return m, torch.cat([s[..., None, :], u, v], -2), _all_ok(m)


PROBLEMS = {f.__name__: f for f in (transpose, matrix_sum, matrix_vector, matrix_product,
                                    eigenvalues, eigenvectors, invert_matrix, syminverse,
                                    singularvalues, singularvectors)}


def shapes(task: str, r: int, c: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((input rows, cols), (answer rows, cols)) of ``task`` for dimensions r x c."""
    k = min(r, c)
    return {
        "transpose": ((r, c), (c, r)),
        "matrix_sum": ((r, 2 * c), (r, c)),
        "matrix_vector": ((r, c + 1), (c, 1)),
        "matrix_product": ((r, 2 * c), (c, c)),
        "eigenvalues": ((r, r), (r, 1)),
        "eigenvectors": ((r, r), (r + 1, r)),
        "invert_matrix": ((r, r), (r, r)),
        "syminverse": ((r, r), (r, r)),
        "singularvalues": ((r, c), (k, 1)),
        "singularvectors": ((r, c), (1 + r + c, k)),
    }[task]


#: tasks whose inputs must be square (rectangular dims are an input error)
SQUARE_ONLY = {"eigenvalues", "eigenvectors", "invert_matrix", "syminverse"}
#: tasks that read the eigenvalue distribution
SPECTRAL = {"eigenvalues", "eigenvectors", "syminverse"}
