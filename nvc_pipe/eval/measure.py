"""Measuring one decoded point against its source: the frames compared, the metrics, the decoder's time.

The source planes (cropped, frame-limited) are compared with the decoded frames, the same way for every codec:
RGB PSNR on FFmpeg's (swscale, PyAV) yuv→RGB conversion of both, per frame then averaged over frames (as HiNeRV
and C3 report); YUV PSNR (6·Y+U+V)/8 per frame, averaged; MS-SSIM on RGB in [0, 1]; every metric of
:data:`nvc_pipe.metrics.METRICS`. A plugin codec returns RGB: its YUV PSNR is measured after converting that RGB
back to the source's YUV format (same swscale). The decode time is the time spent inside the decoder producing
frames, metrics excluded. :mod:`.runner` decides what to encode and decode; this module only compares.
"""

from __future__ import annotations

import importlib
import time
from typing import Iterator

import numpy as np

from nvc_pipe.errors import OutputError

from .datasets import Planes, Source


def _metrics():
    return importlib.import_module("nvc_pipe.metrics")


def _stack_i420(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    h, w = y.shape
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)


def yuv_to_rgb(planes: Planes, pix_fmt: str) -> np.ndarray:
    """FFmpeg's (swscale) default conversion, untagged input: what ``ffmpeg -i x.yuv x.png`` does."""
    import av

    frame = av.VideoFrame.from_ndarray(_stack_i420(*planes), format=pix_fmt)
    return frame.to_ndarray(format="rgb24" if pix_fmt == "yuv420p" else "rgb48le")


def rgb_to_yuv(rgb: np.ndarray, pix_fmt: str) -> Planes:
    import av

    from .datasets import split_i420

    fmt = "rgb24" if rgb.dtype == np.uint8 else "rgb48le"
    arr = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt).reformat(format=pix_fmt).to_ndarray()
    h, w = rgb.shape[:2]
    return split_i420(arr, w, h)


class _Timed:
    """Wraps an iterator and adds up the time spent producing its items."""

    def __init__(self, it: Iterator):
        self.it = iter(it)
        self.seconds = 0.0

    def __iter__(self):
        return self

    def __next__(self):
        t0 = time.perf_counter()
        try:
            return next(self.it)
        finally:
            self.seconds += time.perf_counter() - t0


def measure(src: Source, decoded: Iterator, kind: str, with_ms_ssim: bool = True) -> dict:
    """Compare the source frames with decoded frames.

    Args:
        decoded: iterator of ``(Y, U, V)`` planes (``kind="yuv"``) or RGB ``(H, W, 3)`` arrays (``kind="rgb"``).
    Returns:
        dict with psnr_rgb, psnr_y/u/v, psnr_yuv611, ms_ssim (None when disabled), frames, decode_s.
    """
    m = _metrics()
    rgb_max = 255.0 if src.bit_depth <= 8 else 65535.0
    timed = _Timed(decoded)
    names = tuple(n for n in m.METRICS if with_ms_ssim or n != "ms_ssim")  # every registered metric
    per_frame: dict[str, list] = {n: [] for n in names}
    n = 0
    ref_iter = src.iter_planes()
    for ref in ref_iter:
        try:
            dec = next(timed)
        except StopIteration:
            raise OutputError(f"{src.name}: decoder returned {n} frames, expected {src.frames}") from None
        ref_rgb = yuv_to_rgb(ref, src.pix_fmt)
        if kind == "yuv":
            dec_planes = dec
            dec_rgb = yuv_to_rgb(dec_planes, src.pix_fmt)
        else:
            dec_rgb = np.asarray(dec)
            if dec_rgb.dtype != ref_rgb.dtype:  # e.g. uint16 output for an 8-bit source: rescale to its scale
                dec_rgb = np.round(dec_rgb.astype(np.float64) * rgb_max / np.iinfo(dec_rgb.dtype).max
                                   ).astype(ref_rgb.dtype)
            dec_planes = rgb_to_yuv(dec_rgb, src.pix_fmt)
        if dec_rgb.shape != ref_rgb.shape:
            raise OutputError(f"{src.name}: decoded frame {n} is {dec_rgb.shape[1]}x{dec_rgb.shape[0]}, "
                              f"expected {ref_rgb.shape[1]}x{ref_rgb.shape[0]}")
        pair = m.FramePair(ref_rgb, dec_rgb, list(ref), list(dec_planes), rgb_max, src.max_value)
        for name, value in m.frame_metrics(pair, names).items():
            per_frame[name].append(value)
        n += 1
    extra = 0
    for _ in timed:   # the decoder must not return more frames than were coded
        extra += 1
    if extra:
        raise OutputError(f"{src.name}: decoder returned {n + extra} frames, expected {n}")
    out = {k: m.mean_of(v) for k, v in per_frame.items()}
    if not with_ms_ssim:
        out["ms_ssim"] = None
    out["frames_measured"] = n
    out["decode_s"] = timed.seconds
    return out
