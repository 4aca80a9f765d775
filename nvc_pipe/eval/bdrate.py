"""Bjøntegaard delta rate and delta PSNR between two rate-distortion curves.

BD-rate (VCEG-M33 / JCTVC practice): express log(rate) as a function of PSNR for each curve, interpolate, integrate
both over the PSNR interval the curves share, and turn the mean log-rate difference into a percentage:

    BD-rate = (exp(mean(log R_test - log R_anchor)) - 1) * 100

**Sign convention: negative BD-rate = the test codec needs fewer bits than the anchor for the same quality.**
BD-PSNR is the mirror: PSNR as a function of log(rate), integrated over the shared log-rate interval; positive =
the test codec gives higher quality at the same rate.

``method="pchip"`` (default) interpolates with a piecewise-cubic Hermite (monotone, scipy's PCHIP) and integrates
it exactly, as the ``bjontegaard`` package and the JVET CTC spreadsheets do since the cubic-polynomial fit of the
original proposal overshoots on curves with few or uneven points. ``method="cubic"`` is the original VCEG-M33
third-order polynomial fit (needs ≥ 4 points; falls back to PCHIP with fewer). The log base does not matter for
BD-rate (it cancels); natural log is used.

Curves may be given in any order; points are sorted along the integration axis. Points with an equal abscissa
are averaged. With no overlap between the curves the result is NaN (the curves cannot be compared).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

METHODS = ("pchip", "cubic")


def _prepare(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    ux, inv = np.unique(x, return_inverse=True)
    if len(ux) != len(x):  # equal abscissas: average them
        uy = np.zeros_like(ux)
        np.add.at(uy, inv, y)
        uy /= np.bincount(inv)
        x, y = ux, uy
    return x, y


def _check(rate: Sequence[float], quality: Sequence[float], which: str) -> None:
    if len(rate) != len(quality):
        raise ValueError(f"{which} curve: {len(rate)} rates but {len(quality)} quality values")
    if len(rate) < 2:
        raise ValueError(f"{which} curve: BD metrics need at least 2 points, got {len(rate)}")
    r = np.asarray(rate, dtype=np.float64)
    q = np.asarray(quality, dtype=np.float64)
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{which} curve: rates and quality values must be finite")
    if np.any(r <= 0):
        raise ValueError(f"{which} curve: rates must be positive")


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str) -> float:
    if method == "cubic" and len(x) >= 4:
        p = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    if len(x) == 2:  # PCHIP with two points is the straight line; scipy handles it, but keep it explicit
        slope = (y[1] - y[0]) / (x[1] - x[0])
        f = lambda t: y[0] * t + 0.5 * slope * (t - x[0]) ** 2  # noqa: E731
        return float(f(hi) - f(lo))
    return float(PchipInterpolator(x, y, extrapolate=False).integrate(lo, hi))


def _bd(x1, y1, x2, y2, method: str) -> float:
    """Mean of (y2 - y1) over the shared x interval."""
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; use one of {METHODS}")
    x1, y1 = _prepare(x1, y1)
    x2, y2 = _prepare(x2, y2)
    if len(x1) < 2 or len(x2) < 2:
        raise ValueError("BD metrics need at least 2 distinct points per curve")
    lo, hi = max(x1[0], x2[0]), min(x1[-1], x2[-1])
    if not hi > lo:
        return math.nan
    return (_integral(x2, y2, lo, hi, method) - _integral(x1, y1, lo, hi, method)) / (hi - lo)


def bd_rate(rate_anchor: Sequence[float], psnr_anchor: Sequence[float],
            rate_test: Sequence[float], psnr_test: Sequence[float], method: str = "pchip") -> float:
    """BD-rate of the test curve against the anchor, in percent (negative = test saves bits).

    Rates can be bpp, kbps or bytes (any unit, the same for both curves). NaN when the PSNR ranges do not overlap.
    """
    _check(rate_anchor, psnr_anchor, "anchor")
    _check(rate_test, psnr_test, "test")
    d = _bd(psnr_anchor, np.log(rate_anchor), psnr_test, np.log(rate_test), method)
    return math.nan if math.isnan(d) else (math.exp(d) - 1.0) * 100.0


def bd_psnr(rate_anchor: Sequence[float], psnr_anchor: Sequence[float],
            rate_test: Sequence[float], psnr_test: Sequence[float], method: str = "pchip") -> float:
    """BD-PSNR of the test curve against the anchor, in dB (positive = test has higher quality).

    Works for any quality measure on a linear scale (e.g. MS-SSIM in dB). NaN when the rate ranges do not overlap.
    """
    _check(rate_anchor, psnr_anchor, "anchor")
    _check(rate_test, psnr_test, "test")
    return _bd(np.log(rate_anchor), psnr_anchor, np.log(rate_test), psnr_test, method)
