"""Large frames in bounded memory (issue 15; the 4096x4096 measurement is benchmarks/memory.py --single): whole-frame
recipes train by patches, frames render by tiles, metrics run in blocks, each equal to the plain path."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

import nvc_pipe.metrics as metrics
from nvc_pipe.rate import Clip
from nvc_pipe.stages import overfit, patch


def test_whole_frame_presets_train_by_patches_only_on_large_frames():
    from nvc_hinerv.codec import LARGE_FRAME_PATCH, codec

    big = Clip(4096, 4096, 1, Fraction(25), 1, 0, "cpu")
    small = Clip(256, 144, 48, Fraction(25), 48, 0, "cpu")
    assert codec.configure("tiny", None, {}, big).train.patch_size == LARGE_FRAME_PATCH
    assert codec.configure("tiny", None, {}, small).train.patch_size is None
    from nvc_hinerv.ratecontrol import total_steps

    steps = total_steps(codec.configure("tiny", None, {}, big).train, big, 4)
    assert steps == (4 + 1 + 1) * (4096 // 512) ** 2 // 2  # the plan counts 64 patches a frame, 2 per step


def test_tiled_render_equals_the_frame(monkeypatch, one_thread):
    from nvc_hinerv.codec import PRESETS, segment_model

    torch.manual_seed(0)
    model = segment_model(PRESETS["tiny"].model, 3, 40, 56)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        t = torch.tensor([0, 2])
        frames = model(t)
        monkeypatch.setattr(patch, "RENDER_TILE_PIXELS", 0)
        tiled = patch.render_frames(overfit.default_forward, model, t, (40, 56), (16, 24))  # overlapping last tiles
    assert frames.std() > 0.01
    torch.testing.assert_close(tiled, frames, atol=1e-5, rtol=0)
    assert patch.render_tile(4) == (1024, 1024) and patch.render_tile(6) == (1020, 1020)


def test_large_frame_metrics_equal_the_plain_ones(monkeypatch):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (61, 70, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-6, 7, a.shape), 0, 255).astype(np.uint8)
    x, y = (torch.from_numpy(v[None].astype(np.float32) / 255) for v in (a, b))
    plain = metrics.frame_psnr(a, b, 255), metrics.frame_psnr(a / 255.0, b / 255.0, 1.0), metrics.ms_ssim(x, y)
    monkeypatch.setattr(metrics, "LARGE_PIXELS", 100)
    assert metrics.frame_psnr(a, b, 255) == pytest.approx(plain[0], abs=1e-12)
    assert metrics.frame_psnr(a / 255.0, b / 255.0, 1.0) == pytest.approx(plain[1], abs=1e-9)
    torch.testing.assert_close(metrics.ms_ssim(x, y), plain[2], atol=1e-6, rtol=0)
