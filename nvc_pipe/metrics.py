"""Quality and rate metrics: PSNR (RGB, Y/U/V, YUV 6:1:1), MS-SSIM, bpp, and the one registry of the per-frame
quality metrics (`METRICS`) that both the encoder's reports and `nvc eval` measure with (`frame_metrics`), under
the same names. A new metric (e.g. VMAF) is one entry there.

Conventions (as HiNeRV reports them): PSNR is computed per frame on RGB and averaged over frames; an identical
frame counts as `PSNR_CAP_DB`. YUV PSNR is (6·Y + U + V) / 8 over the planes of the source pixel format.
MS-SSIM (Wang et al. 2003) uses a Gaussian window (σ = 1.5; 11×11 for metrics, 5×5 in the HiNeRV loss) and the
standard five scale weights; frames too small for five scales use as many scales as fit, the weights of the
dropped coarse scales removed and the rest renormalised (documented deviation; the reference refuses them).
bpp counts pixels once (not ×3): bytes·8 / (frames·width·height).

Large frames (more than `LARGE_PIXELS`, e.g. 4096×4096) are measured in bounded memory: PSNR sums squared
differences a block of rows at a time (integer samples exactly, in int64); MS-SSIM runs one channel at a time (a
third of the full-resolution temporaries; the same per-channel values, averaged as before). Smaller frames and
training patches take the plain path.

The MS-SSIM window and scale weights are built once per (window, scales, device, dtype) and reused: making them
at every loss call copied host values to the GPU, a host sync in every training step.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP_DB = 100.0
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
LARGE_PIXELS = 1 << 22


def psnr_db(mse: float, max_value: float = 1.0) -> float:
    if mse <= 0:
        return PSNR_CAP_DB
    return min(PSNR_CAP_DB, 10.0 * math.log10(max_value**2 / mse))


def frame_psnr(a: np.ndarray, b: np.ndarray, max_value: float) -> float:
    """PSNR of one frame (any shape), from integer or float arrays on the same scale."""
    if a.size > 3 * LARGE_PIXELS and a.ndim > 1 and a.shape == b.shape:  # a block of rows at a time
        exact = a.dtype.kind in "ui" and b.dtype.kind in "ui"
        kind = np.int64 if exact else np.float64
        rows = max(1, (1 << 20) // a[0].size)
        total = 0 if exact else 0.0
        for i in range(0, a.shape[0], rows):
            d = a[i : i + rows].astype(kind) - b[i : i + rows].astype(kind)
            total += int(np.sum(d * d)) if exact else float(np.sum(d * d))
        return psnr_db(total / a.size, max_value)
    d = a.astype(np.float64) - b.astype(np.float64)
    return psnr_db(float(np.mean(d * d)), max_value)


def psnr_yuv611(planes_a: list[np.ndarray], planes_b: list[np.ndarray], max_value: float) -> float:
    """(6·PSNR_Y + PSNR_U + PSNR_V) / 8 for one frame; grey (one plane) gives PSNR_Y."""
    values = [frame_psnr(a, b, max_value) for a, b in zip(planes_a, planes_b)]
    if len(values) == 1:
        return values[0]
    return (6 * values[0] + values[1] + values[2]) / 8


def bpp(size_bytes: int, frames: int, width: int, height: int) -> float:
    return size_bytes * 8 / (frames * width * height)


def _gaussian(window: int, sigma: float, device, dtype) -> torch.Tensor:
    x = torch.arange(window, device=device, dtype=dtype) - (window - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


@functools.lru_cache(maxsize=32)
def _constants(window: int, levels: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(Gaussian window (window,), scale weights (levels,) renormalised to sum 1), cached; read-only."""
    with torch.inference_mode(False), torch.no_grad():  # plain tensors, usable later under autograd too
        g = _gaussian(window, 1.5, device, dtype)
        weights = torch.tensor(MS_SSIM_WEIGHTS[:levels], dtype=torch.float32).to(device)
        return g, weights / weights.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_cs(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mx * mx
    syy = _blur(y * y, g) - my * my
    sxy = _blur(x * y, g) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
    return ssim.flatten(2).mean(-1), cs.flatten(2).mean(-1)  # (N, C) each


def ms_ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, data_range: float = 1.0) -> torch.Tensor:
    """MS-SSIM per image, averaged over channels.

    Args:
        x, y: (N, H, W, C) channels-last, values on [0, data_range].
        window: Gaussian window size (σ = 1.5).
    Returns:
        (N,) tensor in [0, 1] (float32 math whatever the input dtype).
    """
    if x.shape[1] * x.shape[2] > LARGE_PIXELS and x.shape[-1] > 1:
        per_channel = [ms_ssim(x[..., c : c + 1], y[..., c : c + 1], window, data_range) for c in range(x.shape[-1])]
        return torch.stack(per_channel, dim=0).mean(0)
    x = x.permute(0, 3, 1, 2).float()
    y = y.permute(0, 3, 1, 2).float()
    side = min(x.shape[-2:])
    levels = max(1, min(len(MS_SSIM_WEIGHTS), int(math.floor(math.log2(side / window))) + 1))
    while levels > 1 and side / 2 ** (levels - 1) < window:
        levels -= 1
    if side < window:
        raise ValueError(f"MS-SSIM needs images of at least {window} pixels, got {side}")
    build = _constants.__wrapped__ if torch.compiler.is_compiling() else _constants  # traced: graph constants
    g, weights = build(window, levels, x.device, x.dtype)
    values = []
    for level in range(levels):
        ssim, cs = _ssim_cs(x, y, g, data_range)
        values.append(torch.relu(ssim if level == levels - 1 else cs))
        if level < levels - 1:
            pad = (0, x.shape[-1] % 2, 0, x.shape[-2] % 2)
            x = F.avg_pool2d(F.pad(x, pad, mode="replicate"), 2)
            y = F.avg_pool2d(F.pad(y, pad, mode="replicate"), 2)
    stacked = torch.stack(values, dim=0)  # (levels, N, C)
    return torch.prod(stacked ** weights.view(-1, 1, 1), dim=0).mean(-1)


# ---- the registry of per-frame quality metrics ----------------------------------------------------------------

@dataclass(frozen=True)
class FramePair:
    """One reference frame and its decoded version, as RGB (H, W, 3) and as the source format's planes."""

    ref_rgb: np.ndarray
    dec_rgb: np.ndarray
    ref_planes: list[np.ndarray]
    dec_planes: list[np.ndarray]
    rgb_max: float    # the RGB arrays' peak value (255, 65535, …)
    plane_max: float  # the planes' peak value ((1 << bit_depth) - 1)


@dataclass(frozen=True)
class Metric:
    """A per-frame quality metric: averaged over frames in every report; `compute` returns None where it does not
    apply (MS-SSIM of a frame under 11 pixels)."""

    name: str
    label: str
    unit: str
    compute: Callable[[FramePair], float | None]


def _plane_psnr(k: int) -> Callable[[FramePair], float | None]:
    return lambda p: frame_psnr(p.ref_planes[k], p.dec_planes[k], p.plane_max) if len(p.ref_planes) > k else None


def _ms_ssim_frame(p: FramePair) -> float | None:
    if min(p.ref_rgb.shape[:2]) < 11:
        return None
    with torch.no_grad():
        x = torch.from_numpy(p.ref_rgb.astype(np.float32) / p.rgb_max)[None]
        y = torch.from_numpy(p.dec_rgb.astype(np.float32) / p.rgb_max)[None]
        return float(ms_ssim(x, y).mean())


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("psnr_rgb", "PSNR RGB", "dB", lambda p: frame_psnr(p.ref_rgb, p.dec_rgb, p.rgb_max)),
    Metric("psnr_y", "PSNR Y", "dB", _plane_psnr(0)),
    Metric("psnr_u", "PSNR U", "dB", _plane_psnr(1)),
    Metric("psnr_v", "PSNR V", "dB", _plane_psnr(2)),
    Metric("psnr_yuv611", "PSNR YUV 6:1:1", "dB", lambda p: psnr_yuv611(p.ref_planes, p.dec_planes, p.plane_max)),
    Metric("ms_ssim", "MS-SSIM", "", _ms_ssim_frame),
)}


def frame_metrics(pair: FramePair, names: tuple[str, ...] | None = None) -> dict[str, float | None]:
    """The registered metrics `names` (None: all) of one frame pair."""
    return {n: METRICS[n].compute(pair) for n in (names or tuple(METRICS))}


def mean_of(values: list[float | None]) -> float | None:
    """The mean over frames of one metric; None when no frame had a value."""
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
