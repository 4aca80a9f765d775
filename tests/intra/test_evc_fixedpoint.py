"""EVC's integer entropy-parameter path: exact, independent of dtype and thread count; Gaussian tables pinned."""

from __future__ import annotations

import numpy as np
import torch

from nvc_evc import tables
from nvc_evc.fixedpoint import FRAC, ONE, IntConv, IntPrior, int_reference_conv1x1, y_hat_fixed
from nvc_evc.model import EVC, EVCConfig, checkerboard
from nvc_evc.weights import WEIGHTS, load_gauss


def _prior_outputs(em, z_hat, r):
    prior = IntPrior(em)
    q_step, log_sigma, mu = prior.fuse(z_hat)
    y1 = y_hat_fixed(r, mu, q_step) * checkerboard(em.n, r.shape[2], r.shape[3]).bool()
    log_sigma2, mu2 = prior.spatial(y1, mu, log_sigma, q_step)
    return [t.clone() for t in (q_step, log_sigma, mu, log_sigma2, mu2)]


def _model():
    torch.manual_seed(0)
    return EVC(EVCConfig.small("SS")).entropy


def test_float64_conv_equals_int64_reference():
    torch.manual_seed(0)
    conv = IntConv(torch.nn.Conv2d(384, 96, 1))
    a = np.random.default_rng(0).integers(-(1 << 24), 1 << 24, size=(1, 384, 3, 5))
    got = conv(torch.tensor(a, dtype=torch.float64)).numpy()
    assert np.array_equal(got.astype(np.int64), int_reference_conv1x1(conv, a))


def test_integer_prior_identical_across_dtypes_and_threads():
    em = _model()
    rng = np.random.default_rng(1)
    z_hat = rng.integers(-4, 5, size=(1, 96, 2, 3))
    r = torch.tensor(rng.integers(-6, 7, size=(1, 96, 8, 12)), dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ref = _prior_outputs(em, z_hat, r)
        torch.set_num_threads(2)
        two = _prior_outputs(em, z_hat, r)
    finally:
        torch.set_num_threads(threads)
    f64 = _prior_outputs(_model().double(), z_hat, r)  # weights held in float64 instead of float32
    for a, b, c in zip(ref, two, f64):
        assert torch.equal(a, b) and torch.equal(a, c)
        assert torch.equal(a, torch.round(a)) and a.abs().max() <= 1 << 24  # integers in range


def test_integer_prior_tracks_float_prior():
    em = _model()
    z_hat = torch.round(torch.randn(1, 96, 2, 2, generator=torch.Generator().manual_seed(2)) * 2)
    with torch.no_grad():
        q_step, log_sigma, mu = em.fuse(z_hat)
    iq, ils, imu = IntPrior(em).fuse(z_hat.numpy().astype(np.int64))
    for f, i in ((q_step, iq), (log_sigma, ils), (mu, imu)):
        assert (f.double() - i / ONE).abs().max() < 0.02


def test_sigma_index_is_integer_rounding():
    ls = torch.tensor([np.log(0.05), np.log(0.11), 0.0, np.log(64.0), 9.0]) * ONE
    idx = tables.sigma_index(torch.round(ls).double(), FRAC)
    assert idx.tolist() == [0, 0, -tables.V_MIN, tables.N_TABLES - 1, tables.N_TABLES - 1]


def test_gaussian_tables_match_exact_rebuild():
    g = load_gauss(str(WEIGHTS))
    assert g.lengths.shape == (tables.N_TABLES,)
    assert (g.freqs.sum(1) == 1 << tables.PRECISION).all()
    with np.load(WEIGHTS / "evc_gauss.npz", allow_pickle=False) as z:
        pinned = str(z["sha256"])
    for k in (0, 57, 141, 200):  # σ = 0.11 … ≈ 2.5: cheap to rebuild with decimals
        row = tables.table(k)
        assert np.array_equal(g.freqs[k, : g.lengths[k]], row)
        assert row.size == 2 * tables.half_width(k) + 1
    assert len(pinned) == 64
