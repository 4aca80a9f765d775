"""BD-rate / BD-PSNR against values computed by hand."""

import math

import pytest

from nvc_pipe.eval.bdrate import bd_psnr, bd_rate
from nvc_pipe.eval.published import published_curves

RATES = [0.01, 0.02, 0.05, 0.1]
PSNR = [30.0, 33.0, 36.0, 38.0]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_rates_times_0_8_is_minus_20_percent(method):
    # Same PSNR at 0.8x the rate everywhere: log R differs by log 0.8 -> exp(log 0.8) - 1 = -20 %.
    assert bd_rate(RATES, PSNR, [r * 0.8 for r in RATES], PSNR, method) == pytest.approx(-20.0, abs=1e-9)
    # The other way round the test codec needs 1.25x the bits: +25 %.
    assert bd_rate(RATES, PSNR, [r * 1.25 for r in RATES], PSNR, method) == pytest.approx(25.0, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_psnr_plus_one_db(method):
    assert bd_psnr(RATES, PSNR, RATES, [p + 1 for p in PSNR], method) == pytest.approx(1.0, abs=1e-9)
    assert bd_psnr(RATES, PSNR, RATES, [p - 0.5 for p in PSNR], method) == pytest.approx(-0.5, abs=1e-9)


def test_sign_convention():
    better = [p + 1 for p in PSNR]          # higher quality at the same rates = fewer bits for the same quality
    assert bd_rate(RATES, PSNR, RATES, better) < 0
    assert bd_psnr(RATES, PSNR, RATES, better) > 0
    assert bd_rate(RATES, better, RATES, PSNR) > 0
    # Swapping anchor and test inverts the rate ratio: (1 + a)(1 + b) = 1.
    a = bd_rate(RATES, PSNR, RATES, better) / 100
    b = bd_rate(RATES, better, RATES, PSNR) / 100
    assert (1 + a) * (1 + b) == pytest.approx(1.0, abs=1e-9)
    assert bd_rate(RATES, PSNR, RATES, PSNR) == pytest.approx(0.0, abs=1e-12)


def test_two_point_curves_by_hand():
    # Anchor: R 100 -> 400 over 30 -> 40 dB; test: R 100 -> 200 over the same range.
    # ln R_a = ln 100 + (P-30)/10 ln 4, ln R_t = ln 100 + (P-30)/10 ln 2; mean difference over [30, 40]:
    # -(ln 2)/2  ->  BD-rate = 2^-1/2 - 1 = -29.289 %.
    assert bd_rate([100, 400], [30, 40], [100, 200], [30, 40]) == pytest.approx((2 ** -0.5 - 1) * 100, abs=1e-9)
    # P as a function of u = ln R - ln 100 on the shared [0, ln 2]: 10u/ln2 - 10u/ln4 = 5u/ln2, mean 2.5 dB.
    assert bd_psnr([100, 400], [30, 40], [100, 200], [30, 40]) == pytest.approx(2.5, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_collinear_four_points_by_hand(method):
    # ln R linear in PSNR with slopes 0.25 (anchor) and 0.20 (test) per dB from the same start:
    # mean of -0.05 (P-30) over [30, 36] = -0.15  ->  exp(-0.15) - 1.
    p = [30.0, 32.0, 34.0, 36.0]
    ra = [0.01 * math.exp(0.25 * (x - 30)) for x in p]
    rt = [0.01 * math.exp(0.20 * (x - 30)) for x in p]
    assert bd_rate(ra, p, rt, p, method) == pytest.approx((math.exp(-0.15) - 1) * 100, abs=1e-9)


def test_partial_overlap_uses_shared_interval_only():
    # ln R linear in PSNR (so PCHIP is exact); the test curve only covers 33..38 dB, at half the anchor's rate.
    pa = [30.0, 33.0, 36.0, 38.0]
    ra = [0.01 * math.exp(0.25 * (x - 30)) for x in pa]
    pt = pa[1:]
    rt = [0.5 * r for r in ra[1:]]
    assert bd_rate(ra, pa, rt, pt) == pytest.approx(-50.0, abs=1e-9)
    # BD-PSNR on the shared log-rate range: the test curve is shifted left by ln 2 -> +ln 2 / 0.25 dB.
    assert bd_psnr(ra, pa, rt, pt) == pytest.approx(math.log(2) / 0.25, abs=1e-9)


def test_order_and_duplicates_do_not_matter():
    rev = list(reversed(RATES)), list(reversed(PSNR))
    assert bd_rate(*rev, [r * 0.8 for r in RATES], PSNR) == pytest.approx(-20.0, abs=1e-9)
    dup_r, dup_p = RATES + [RATES[1]], PSNR + [PSNR[1]]
    assert bd_rate(dup_r, dup_p, [r * 0.8 for r in RATES], PSNR) == pytest.approx(-20.0, abs=1e-9)


def test_no_overlap_is_nan_and_bad_input_raises():
    assert math.isnan(bd_rate([1, 2], [30, 31], [1, 2], [40, 41]))
    assert math.isnan(bd_psnr([1, 2], [30, 31], [10, 20], [30, 31]))
    with pytest.raises(ValueError):
        bd_rate([1], [30], [1, 2], [30, 31])
    with pytest.raises(ValueError):
        bd_rate([0, 1], [30, 31], [1, 2], [30, 31])
    with pytest.raises(ValueError):
        bd_rate([1, 2], [30], [1, 2], [30, 31])
    with pytest.raises(ValueError):
        bd_rate(RATES, PSNR, RATES, PSNR, method="linear")


def test_published_c3_vs_hinerv_matches_reference_notes():
    # c3_coolchic.md §3.1: BD-rate of C3 against HiNeRV on UVG = +46.3 % (cubic; PCHIP within 1.5 points).
    hinerv = next(c for c in published_curves("uvg") if c.method == "HiNeRV (paper)")
    c3 = next(c for c in published_curves("uvg") if c.method.startswith("C3"))
    assert bd_rate(hinerv.bpp, hinerv.psnr, c3.bpp, c3.psnr, "cubic") == pytest.approx(46.3, abs=0.3)
    assert bd_rate(hinerv.bpp, hinerv.psnr, c3.bpp, c3.psnr) == pytest.approx(46.3, abs=1.5)
