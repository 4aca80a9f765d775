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


def test_encoder_reports_and_eval_measure_through_one_registry():
    """The encoder's FrameQuality and nvc eval read the same registered metrics under the same names."""
    from fractions import Fraction

    from nvc_pipe.eval import runner
    from nvc_pipe.jobs import FrameQuality
    from nvc_pipe.media.clip import VideoInfo
    from nvc_pipe.media.convert import yuv_planes
    from nvc_pipe.metrics import METRICS, FramePair, frame_metrics

    rng = np.random.default_rng(3)
    info = VideoInfo(32, 24, "yuv444p", Fraction(25), Fraction(1, 25))
    ref = rng.integers(0, 256, (2, 24, 32, 3), dtype=np.uint8)
    dec = np.clip(ref.astype(int) + rng.integers(-6, 7, ref.shape), 0, 255).astype(np.uint8)
    q = FrameQuality(info)
    for d, r in zip(dec, ref):
        q.add(d, r)
    summary = q.summary()
    assert set(summary) <= set(METRICS) and set(summary) >= {"psnr_rgb", "psnr_yuv611", "ms_ssim"}
    pairs = [FramePair(r, d, yuv_planes(r, info), yuv_planes(d, info), 255, 255) for d, r in zip(dec, ref)]
    direct = [frame_metrics(p) for p in pairs]
    assert summary["psnr_rgb"] == round((frame_psnr(ref[0], dec[0], 255) + frame_psnr(ref[1], dec[1], 255)) / 2, 4)
    for name in summary:
        assert math.isclose(summary[name], round(sum(v[name] for v in direct) / 2, 4), abs_tol=1e-9)
    assert set(direct[0]) == set(METRICS)  # what eval measures (runner.measure asks for every registered name)
    assert "frame_metrics" in runner.measure.__code__.co_names
    tiny = FramePair(ref[0][:8, :8], dec[0][:8, :8], [], [], 255, 255)
    assert frame_metrics(tiny, ("ms_ssim",)) == {"ms_ssim": None}  # under 11 pixels: no MS-SSIM, not a guess
