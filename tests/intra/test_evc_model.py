"""EVC networks: official parameter counts, shapes, checkerboard causality, variable rate, mask-decay slimming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvc_evc.codec import q_index_for, q_scale_for
from nvc_evc.maskdecay import attach_masks, set_decay, slim_model, sparsity_loss
from nvc_evc.model import EVC, EVCConfig, checkerboard, count_params, ste_round

# our notes §2.2 (measured on the released EVC code): total, encoder, decoder
OFFICIAL = {"LL": (17_381_776, 3_187_776, 3_375_180), "MM": (15_226_896, 2_077_376, 2_330_700),
            "SS": (12_778_256, 818_240, 1_141_196)}
SHARED = {"hyper_enc": 1_035_840, "hyper_dec": 1_412_160, "y_prior_fusion": 2_899_072,
          "y_spatial_prior": 5_469_440, "z_density": 2_112}


@pytest.mark.parametrize("size", ["LL", "MM", "SS"])
def test_official_parameter_counts(size):
    with torch.device("meta"):  # shapes only: no 17M-parameter initialisation
        m = EVC(EVCConfig.official(size))
    assert (count_params(m), count_params(m.enc), count_params(m.dec)) == OFFICIAL[size]
    if size == "LL":
        for name, n in SHARED.items():
            assert count_params(getattr(m.entropy, name)) == n, name


def test_shapes_small_model():
    torch.manual_seed(0)
    m = EVC(EVCConfig.small("SS"))
    x = torch.rand(2, 3, 64, 128)
    y = m.enc(x)
    assert y.shape == (2, 96, 4, 8)
    assert m.entropy.hyper_enc(y).shape == (2, 96, 1, 2)
    out = m(x, torch.tensor([1.0, 0.5]))
    assert out["x_hat"].shape == x.shape and out["bits"].shape == (2,)
    assert torch.isfinite(out["bits"]).all() and (out["bits"] > 0).all()


def test_checkerboard_masks_complementary():
    m = checkerboard(8, 6, 5)
    assert m.shape == (1, 8, 6, 5)
    half0, half1 = m[0, :4], m[0, 4:]
    assert torch.equal(half0 + half1, torch.ones_like(half0))  # half 1 codes in step 1 where half 0 waits
    assert half0[0, 0, 0] == 1 and half0[0, 0, 1] == 0 and half0[0, 1, 0] == 0 and half0[0, 1, 1] == 1
    assert m.sum() == 8 * 30 / 2  # exactly half of all elements in step 1


def test_step2_context_uses_only_step1_symbols():
    torch.manual_seed(0)
    em = EVC(EVCConfig.small("SS")).entropy
    z_hat = torch.round(torch.randn(1, 96, 2, 2) * 2)
    q_step, log_sigma, mu = em.fuse(z_hat)
    y = (torch.randn(1, 96, 8, 8) * 4).requires_grad_(True)
    mask1 = checkerboard(96, 8, 8)
    y_hat1 = (ste_round(y / q_step - mu) + mu) * q_step * mask1
    log_sigma2, mu2 = em.spatial(y_hat1, mu, log_sigma, q_step)
    (log_sigma2.sum() + mu2.sum()).backward()
    assert (y.grad[mask1 == 0] == 0).all()  # step-2 values never reach the step-2 parameters
    assert (y.grad[mask1 == 1] != 0).any()


def test_q_scale_interpolation_monotone():
    anchors = np.array([1.093, 0.839, 0.643, 0.5])
    qs = [q_scale_for(anchors, q) for q in range(1, 8)]
    assert all(a > b for a, b in zip(qs, qs[1:]))
    assert [round(qs[i], 6) for i in (0, 2, 4, 6)] == list(anchors)  # odd qualities are the anchors
    assert qs[1] == pytest.approx(float(np.sqrt(anchors[0] * anchors[1])))  # log-midpoint
    idx = [q_index_for(q) for q in qs]
    assert all(a > b for a, b in zip(idx, idx[1:]))
    fine = [q_scale_for(anchors, q) for q in np.linspace(1, 7, 61)]
    assert all(a >= b for a, b in zip(fine, fine[1:]))


def test_mask_decay_slims_exactly():
    torch.manual_seed(0)
    m = EVC(EVCConfig.small("LL")).eval()
    x = torch.rand(1, 3, 64, 64)
    for target in ("MM", "SS"):
        cfg = EVCConfig.small(target)
        points = attach_masks(m, cfg)
        set_decay(points, 0.3)
        assert sparsity_loss(points).item() > 0
        assert all(float(p.mask[p.drop].max()) == pytest.approx(0.5) for p in points if p.drop.numel())
        set_decay(points, 1.0)
        with torch.no_grad():
            ref = m.dec(m.enc(x))
            m = slim_model(m, points, cfg)
            got = m.dec(m.enc(x))
        assert torch.allclose(ref, got, atol=1e-5)
        fresh = EVC(cfg)
        assert count_params(m.enc) == count_params(fresh.enc) and count_params(m.dec) == count_params(fresh.dec)
