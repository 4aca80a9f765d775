"""Metrics against hand-computed values."""

import math

import numpy as np
import torch

from nvc_pipe.metrics import PSNR_CAP_DB, bpp, frame_psnr, ms_ssim, psnr_yuv611


def test_psnr_known_values():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256/48
    assert math.isclose(frame_psnr(a, b, 255), 10 * math.log10(255**2 / (256 / 48)))
    assert frame_psnr(a, a, 255) == PSNR_CAP_DB
    y, u = np.zeros((4, 4)), np.zeros((2, 2))
    assert math.isclose(psnr_yuv611([y, u, u], [y + 1, u, u + 1], 255),
                        (6 * 20 * math.log10(255) + PSNR_CAP_DB + 20 * math.log10(255)) / 8)


def test_ms_ssim_bounds():
    torch.manual_seed(0)
    x = torch.rand(2, 64, 64, 3)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2))
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    worse = (x + 0.4 * torch.randn_like(x)).clamp(0, 1)
    assert 1 > ms_ssim(x, noisy)[0] > ms_ssim(x, worse)[0] > 0
    assert ms_ssim(x[:, :20, :20], noisy[:, :20, :20], window=5).shape == (2,)


def test_bpp():
    assert bpp(1000, 10, 100, 80) == 0.1
