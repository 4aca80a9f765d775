"""Integer coding tables of EVC's zero-mean Gaussian residuals, one per quantized σ, built with exact decimals.

Table k (k = 0 … K−1) is for σ_k = exp((k + V_MIN)/64), V_MIN = round(64·ln 0.11) = −141, V_MAX = round(64·ln 64)
= 266 (K = 408, a 1/64 log grid over EVC's σ range [0.11, 64]). It covers residuals r ∈ [−B_k, B_k],
B_k = 16 + ⌈10·σ_k⌉ (bin i ↔ r = i − B_k); its frequencies are `quantize_pmf` (the shared factorized-prior code:
each ≥ 1, summing to 2^16) of the Gaussian bin masses P(r) = Φ((r+½)/σ) − Φ((r−½)/σ), the two end bins taking
the tails. Φ is evaluated with Python's `decimal` at 50 digits (Taylor series of erf), so the tables are the same
integers on every machine; they are rebuilt on first use and cached in memory (~2 s), and their SHA-256 is pinned
by a test.

The decoder maps a fixed-point log σ (`fixedpoint.FRAC` fractional bits) to k with integer arithmetic only:
k = clamp(rshift(log σ, FRAC − 6), V_MIN, V_MAX) − V_MIN (`sigma_index`).
"""

from __future__ import annotations

import decimal
import hashlib
import math
from functools import lru_cache

import numpy as np
import torch

from nvc_pipe.intra.factorized import quantize_pmf

V_MIN, V_MAX = round(64 * math.log(0.11)), round(64 * math.log(64.0))
N_TABLES = V_MAX - V_MIN + 1
PRECISION = 16
_CTX = decimal.Context(prec=50, rounding=decimal.ROUND_HALF_EVEN)


def sigma_of(k: int) -> decimal.Decimal:
    return _CTX.exp(_CTX.divide(decimal.Decimal(k + V_MIN), decimal.Decimal(64)))


def half_width(k: int) -> int:
    return 16 + int((10 * sigma_of(k)).to_integral_value(rounding=decimal.ROUND_CEILING))


def _phi(u: decimal.Decimal) -> decimal.Decimal:
    """Standard normal CDF; |u| > 9 saturates (mass < 1e-19, far below 2^−16)."""
    if u > 9:
        return decimal.Decimal(1)
    if u < -9:
        return decimal.Decimal(0)
    x = _CTX.divide(u, _CTX.sqrt(decimal.Decimal(2)))
    x2 = _CTX.multiply(x, x)
    term, total, n = x, x, 0
    eps = decimal.Decimal(10) ** -45
    while abs(term) > eps:
        n += 1
        term = _CTX.divide(_CTX.multiply(-term, x2), decimal.Decimal(n))
        total = _CTX.add(total, _CTX.divide(term, decimal.Decimal(2 * n + 1)))
    erf = _CTX.multiply(total, _CTX.divide(decimal.Decimal(2), _CTX.sqrt(_pi())))
    return _CTX.multiply(decimal.Decimal("0.5"), _CTX.add(decimal.Decimal(1), erf))


def _pi() -> decimal.Decimal:  # π to 50 digits (math.pi would cap the series at double precision)
    return decimal.Decimal("3.14159265358979323846264338327950288419716939937510")


def table(k: int) -> np.ndarray:
    """Frequencies (2·B_k + 1,) int64 of table k (see the module doc)."""
    sigma, b = sigma_of(k), half_width(k)
    edges = [_phi(_CTX.divide(decimal.Decimal(2 * r + 1), 2 * sigma)) for r in range(-b, b)]
    cdf = [decimal.Decimal(0)] + edges + [decimal.Decimal(1)]
    pmf = np.array([float(cdf[i + 1] - cdf[i]) for i in range(2 * b + 1)], dtype=np.float64)
    return quantize_pmf(pmf, 1 << PRECISION)


@lru_cache(maxsize=1)
def all_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(freqs (K, max_len) int64 zero-padded, lengths (K,), half widths (K,)) for `entropy.encode_tables`."""
    rows = [table(k) for k in range(N_TABLES)]
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    freqs = np.zeros((N_TABLES, int(lengths.max())), dtype=np.int64)
    for k, r in enumerate(rows):
        freqs[k, : r.size] = r
    return freqs, lengths, (lengths - 1) // 2


def tables_sha256() -> str:
    freqs, lengths, _ = all_tables()
    return hashlib.sha256(lengths.astype("<i8").tobytes() + freqs.astype("<i8").tobytes()).hexdigest()


def sigma_index(log_sigma_q: torch.Tensor, frac: int) -> torch.Tensor:
    """Fixed-point log σ (integer-valued float64, `frac` fractional bits) → table index (int64)."""
    s = frac - 6
    v = torch.floor((log_sigma_q + 2.0 ** (s - 1)) / 2.0 ** s)
    return (v.clamp(V_MIN, V_MAX) - V_MIN).to(torch.int64)
