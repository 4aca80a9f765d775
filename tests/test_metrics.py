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


def test_ms_ssim_builds_its_constants_once():
    """The window and scale weights are cached per device: a call creates no tensor from host values (on a GPU
    that copy is a host sync in every training step) and gives the same value as before."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    x, y = torch.rand(2, 48, 48, 3), torch.rand(2, 48, 48, 3)
    first = ms_ssim(x, y, window=5)
    with Ops() as ops:
        again = ms_ssim(x, y, window=5)
    assert torch.equal(first, again)
    made = [n for n in ops.names if n.split(".")[1] in ("arange", "lift_fresh", "lift_fresh_copy", "_to_copy", "exp")]
    assert made == [] and any("convolution" in n for n in ops.names)
