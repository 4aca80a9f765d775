"""Pixel conversion between FFmpeg frames, planes and RGB arrays (the policy is in :mod:`.clip`).

Colour conversion
-----------------
``Segment.rgb`` is ``uint8`` for 8-bit layouts and ``uint16`` (FFmpeg ``rgb48le``) otherwise. The matrix and the range
are FFmpeg's (swscale through PyAV, flags ``POINT|ACCURATE_RND|BITEXACT``), the same in both directions; chroma is
resampled here in numpy so that ``yuv -> rgb -> yuv`` is the identity up to rounding:

* up: each chroma sample is repeated over its 2x2 (4:2:0) or 2x1 (4:2:2) block, then swscale converts 4:4:4 -> RGB;
* down: swscale converts RGB -> 4:4:4, then each block is averaged (round half up; edge blocks of odd sizes
  average the pixels they have). Repeated samples average back to themselves.

Measured (FFmpeg 8.1 / PyAV 18.1 and FFmpeg 9.0 / PyAV 19.0, identical): swscale's direct 4:2:0 -> RGB paths are not
safe to use: ``BILINEAR|ACCURATE_RND|BITEXACT`` on ``yuv420p10le -> rgb48le`` is garbage (errors of 600+ codes),
``ACCURATE_RND`` without ``FULL_CHR_H_INT`` shifts 8-bit luma (235 -> 253 instead of 255). The two-step path above
avoids both. Round trip on natural content (Big Buck Bunny 256x144): ``yuv420p`` tv range, luma differs in 0.3 % of
samples by at most 2 (out-of-gamut clipping), chroma in < 1 %; ``yuv420p10le`` tv range, luma 0.6 %, <= 6 codes.
Full range (``pc``) is coarser because RGB of the same depth cannot represent every full-range YUV triple (8-bit:
chroma off by 1 in about half of the samples; deeper: swscale scales full-range white as ``255 << (depth - 8)``, so
luma is off by <= 3 codes at 10 bit and <= 15 at 12 bit, 0.4 %). swscale's ``rgb48le`` output puts tv-range peak
white at 65283 (255 << 8 + 3), not 65535; 10/12-bit RGB inputs (``gbrp10le``...) are scaled by bit replication
(1023 -> 65535).

Gray layouts are converted here, not by swscale (whose ``rgb48le -> gray10le/gray12le`` goes through 8 bits: errors
of 3 and 15 codes): R = G = B = Y scaled to the full RGB scale, and back Y = the matrix's luma weights of R, G, B,
rounded. The round trip is exact; the range is not applied (FFmpeg treats gray as full range too).
"""

from __future__ import annotations

import logging

import av
import numpy as np

from .clip import _AVCOL_RANGE, _DEPTH_SUFFIX, _LAYOUTS, VideoInfo, normalize_pix_fmt

log = logging.getLogger(__name__)

_NAME_TO_AVCOL_SPC = {"bt709": 1, "bt601": 6, "fcc": 4, "smpte240m": 7, "bt2020": 9}
_NAME_TO_SWS_CS = {"bt709": 1, "fcc": 4, "bt601": 5, "smpte240m": 7, "bt2020": 9}
_RANGE_JPEG = 2
_sws_flags_cache: int | None = None


def _sws_flags() -> int:
    """swscale flags used for every conversion: point sampling, accurate rounding, bit-exact (reproducible)."""
    global _sws_flags_cache
    if _sws_flags_cache is None:
        from av.video.reformatter import Interpolation

        _sws_flags_cache = int(Interpolation.POINT | Interpolation.ACCURATE_RND | Interpolation.BITEXACT)
    return _sws_flags_cache


def plane_shapes(pix_fmt: str, width: int, height: int) -> list[tuple[int, int]]:
    """Shapes ``(rows, samples per row)`` of the planes of a supported layout, in FFmpeg's plane order.

    YUV: Y, U, V (chroma rounded up for odd sizes); ``gbrp*``: G, B, R; ``rgb24``/``rgb48le``: one packed plane of
    ``3 * width`` samples per row; gray: one plane.
    """
    family, _, lw, lh = _LAYOUTS[pix_fmt]
    if family == "yuv":
        cw, ch = -(-width // (1 << lw)), -(-height // (1 << lh))
        return [(height, width), (ch, cw), (ch, cw)]
    if pix_fmt in ("rgb24", "rgb48le"):
        return [(height, 3 * width)]
    if family == "rgb":
        return [(height, width)] * 3
    return [(height, width)]


def frame_to_planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """Copy the planes of a planar (or ``rgb24``/``rgb48le``/gray) frame into numpy arrays without padding.

    Samples deeper than 8 bits come back as native ``uint16``. Concatenating ``p.tobytes()`` of the result gives
    FFmpeg's rawvideo layout on a little-endian machine.
    """
    fmt = frame.format
    planes = []
    for i, plane in enumerate(frame.planes):
        comps = [c for c in fmt.components if int(c.plane) == i]
        bits = max((int(c.bits) for c in comps), default=8)
        dtype = np.dtype("<u2") if bits > 8 else np.dtype(np.uint8)
        samples = int(plane.width) * max(1, len(comps))
        line, rows = int(plane.line_size), int(plane.height)
        raw = np.frombuffer(plane, dtype=np.uint8)[: line * rows].reshape(rows, line)
        data = np.ascontiguousarray(raw[:, : samples * dtype.itemsize]).view(dtype).reshape(rows, samples)
        planes.append(data.astype(np.uint16) if dtype.itemsize == 2 else data)
    return planes


def planes_to_frame(planes: list[np.ndarray], pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """Build a frame of a supported layout from planes shaped as :func:`plane_shapes` says."""
    shapes = plane_shapes(pix_fmt, width, height)
    if len(planes) != len(shapes):
        raise ValueError(f"{pix_fmt} needs {len(shapes)} planes, got {len(planes)}")
    frame = av.VideoFrame(width, height, pix_fmt)
    fill_frame(frame, planes, pix_fmt)
    return frame


def fill_frame(frame: av.VideoFrame, planes: list[np.ndarray], layout: str | None = None) -> None:
    """Copy planes into an allocated frame (row padding kept).

    ``layout`` names the supported layout whose :func:`plane_shapes` the planes follow; default the frame's own
    format. It lets a frame of an identical memory layout (``yuvj420p`` for ``yuv420p``) be filled.
    """
    layout = layout or frame.format.name
    width, height = int(frame.width), int(frame.height)
    shapes = plane_shapes(layout, width, height)
    if len(planes) != len(shapes):
        raise ValueError(f"{layout} needs {len(shapes)} planes, got {len(planes)}")
    wide = _LAYOUTS[layout][1] > 8
    for plane, arr, shape in zip(frame.planes, planes, shapes):
        arr = np.asarray(arr)
        if arr.shape != shape:
            raise ValueError(f"{layout} plane must be {shape}, got {arr.shape}")
        data = np.ascontiguousarray(arr, dtype="<u2" if wide else np.uint8)
        raw = data.view(np.uint8).reshape(shape[0], -1)
        line, rows = int(plane.line_size), int(plane.height)
        buf = np.frombuffer(plane, dtype=np.uint8)
        if buf.flags.writeable and buf.size >= line * rows:
            buf[: line * rows].reshape(rows, line)[:, : raw.shape[1]] = raw
        else:  # pragma: no cover - PyAV builds whose plane buffers are read-only
            padded = np.zeros((rows, line), np.uint8)
            padded[:, : raw.shape[1]] = raw
            plane.update(padded.tobytes())


def pix_fmt_layout(pix_fmt: str) -> tuple[str, int, int, int]:
    """``(family, bit depth, log2 chroma width, log2 chroma height)`` of a supported layout.

    Raises:
        KeyError: not one of :data:`SUPPORTED_PIX_FMTS`.
    """
    return _LAYOUTS[pix_fmt]


def _upsample(c: np.ndarray, lw: int, lh: int, width: int, height: int) -> np.ndarray:
    if lw:
        c = np.repeat(c, 2, axis=1)[:, :width]
    if lh:
        c = np.repeat(c, 2, axis=0)[:height]
    return c


def _downsample(c: np.ndarray, lw: int, lh: int) -> np.ndarray:
    acc = c.astype(np.uint32)
    if lw:
        if acc.shape[1] % 2:
            acc = np.concatenate([acc, acc[:, -1:]], axis=1)
        acc = acc[:, 0::2] + acc[:, 1::2]
    if lh:
        if acc.shape[0] % 2:
            acc = np.concatenate([acc, acc[-1:]], axis=0)
        acc = acc[0::2] + acc[1::2]
    n = (1 << lw) * (1 << lh)
    return ((acc + n // 2) // n).astype(c.dtype)


def _yuv444_name(info: VideoInfo) -> str:
    return f"yuv444p{_DEPTH_SUFFIX[info.bit_depth]}"


def frame_to_rgb(frame: av.VideoFrame, info: VideoInfo) -> np.ndarray:
    """Convert a decoded frame to an RGB array with the matrix and range of ``info``.

    Args:
        frame: a frame of size ``info.width x info.height``, in ``info.pix_fmt`` or any format FFmpeg can convert
            to it (``nv12``, ``yuvj420p``, ``p010le``...).
        info: the clip; its ``pix_fmt``/``color_range``/``colorspace`` drive the conversion.

    Returns:
        ``(H, W, 3)`` ``uint8`` (8-bit layouts) or ``uint16`` (rgb48le scale).

    Raises:
        ValueError: the frame size differs from ``info``.
    """
    width, height = info.width, info.height
    if (int(frame.width), int(frame.height)) != (width, height):
        raise ValueError(f"frame is {frame.width}x{frame.height}, clip is {width}x{height}")
    cs = _NAME_TO_SWS_CS[info.colorspace]
    rng = _AVCOL_RANGE[info.color_range]
    flags = _sws_flags()
    family = info.family
    if family == "yuv":
        src = frame.format.name
        if src != info.pix_fmt and not (src.startswith("yuvj") and normalize_pix_fmt(src)[0] == info.pix_fmt):
            frame = frame.reformat(
                format=info.pix_fmt,
                src_colorspace=cs,
                dst_colorspace=cs,
                src_color_range=rng,
                dst_color_range=rng,
                interpolation=flags,
            )
        lw, lh = info.chroma_shift
        if lw or lh or frame.format.name != _yuv444_name(info):
            y, u, v = frame_to_planes(frame)
            u, v = _upsample(u, lw, lh, width, height), _upsample(v, lw, lh, width, height)
            frame = planes_to_frame([y, u, v], _yuv444_name(info), width, height)
        rgbf = frame.reformat(
            format=info.rgb_pix_fmt,
            src_colorspace=cs,
            dst_colorspace=cs,
            src_color_range=rng,
            dst_color_range=_RANGE_JPEG,
            interpolation=flags,
        )
    elif family == "gray":
        if frame.format.name != info.pix_fmt:
            frame = frame.reformat(format=info.pix_fmt, interpolation=flags)
        return _gray_to_rgb(frame_to_planes(frame)[0], info)
    else:
        rgbf = frame.reformat(
            format=info.rgb_pix_fmt,
            src_colorspace=cs,
            dst_colorspace=cs,
            src_color_range=_RANGE_JPEG if frame.format.is_rgb else rng,
            dst_color_range=_RANGE_JPEG,
            interpolation=flags,
        )
    return frame_to_planes(rgbf)[0].reshape(height, width, 3)


# Luma weights (Kr, Kb) of each matrix, for gray layouts.
_LUMA_WEIGHTS = {
    "bt709": (0.2126, 0.0722),
    "bt601": (0.299, 0.114),
    "smpte240m": (0.212, 0.087),
    "fcc": (0.30, 0.11),
    "bt2020": (0.2627, 0.0593),
}


def _gray_to_rgb(y: np.ndarray, info: VideoInfo) -> np.ndarray:
    top = (1 << info.bit_depth) - 1
    if info.bit_depth == 8:
        v = y.astype(np.uint8)
    else:
        v = ((y.astype(np.uint32) * 65535 + top // 2) // top).astype(np.uint16)
    return np.repeat(v[:, :, None], 3, axis=2)


def _rgb_to_gray(rgb: np.ndarray, info: VideoInfo) -> np.ndarray:
    kr, kb = _LUMA_WEIGHTS[info.colorspace]
    c = rgb.astype(np.float64)
    luma = kr * c[..., 0] + (1.0 - kr - kb) * c[..., 1] + kb * c[..., 2]
    top = (1 << info.bit_depth) - 1
    scaled = luma * (top / info.max_value)
    return np.clip(np.floor(scaled + 0.5), 0, top).astype(info.rgb_dtype if info.bit_depth == 8 else np.uint16)


def _check_rgb(rgb: np.ndarray, info: VideoInfo) -> np.ndarray:
    arr = np.asarray(rgb)
    if arr.shape != (info.height, info.width, 3):
        raise ValueError(f"rgb must be ({info.height}, {info.width}, 3), got {arr.shape}")
    if arr.dtype != info.rgb_dtype:
        raise ValueError(f"rgb must be {info.rgb_dtype} for {info.pix_fmt}, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def yuv_planes(rgb: np.ndarray, info: VideoInfo) -> list[np.ndarray]:
    """Convert one RGB picture to the planes of ``info.pix_fmt`` (for y4m/raw output and YUV PSNR).

    Args:
        rgb: ``(H, W, 3)`` array of ``info.rgb_dtype``.
        info: target layout, matrix and range.

    Returns:
        Planes shaped as :func:`plane_shapes` says (``uint8`` or ``uint16``): Y, U, V for YUV; G, B, R for
        ``gbrp*``; one packed plane for ``rgb24``/``rgb48le``; one plane for gray.
    """
    arr = _check_rgb(rgb, info)
    family = info.family
    if info.pix_fmt == info.rgb_pix_fmt:
        return [arr.reshape(info.height, 3 * info.width)]
    cs = _NAME_TO_SWS_CS[info.colorspace]
    if family == "gray":
        return [_rgb_to_gray(arr, info)]
    src = av.VideoFrame.from_ndarray(arr, format=info.rgb_pix_fmt)
    if family != "yuv":
        out = src.reformat(
            format=info.pix_fmt,
            src_colorspace=cs,
            dst_colorspace=cs,
            src_color_range=_RANGE_JPEG,
            dst_color_range=_RANGE_JPEG,
            interpolation=_sws_flags(),
        )
        return frame_to_planes(out)
    f444 = src.reformat(
        format=_yuv444_name(info),
        src_colorspace=cs,
        dst_colorspace=cs,
        src_color_range=_RANGE_JPEG,
        dst_color_range=_AVCOL_RANGE[info.color_range],
        interpolation=_sws_flags(),
    )
    y, u, v = frame_to_planes(f444)
    lw, lh = info.chroma_shift
    if lw or lh:
        u, v = _downsample(u, lw, lh), _downsample(v, lw, lh)
    return [y, u, v]


def rgb_to_frame(rgb: np.ndarray, info: VideoInfo) -> av.VideoFrame:
    """Convert one RGB picture to an ``av.VideoFrame`` in ``info.pix_fmt`` (inverse of :func:`frame_to_rgb`).

    The frame carries ``color_range`` and ``colorspace`` metadata so encoders tag their output.
    """
    frame = planes_to_frame(yuv_planes(rgb, info), info.pix_fmt, info.width, info.height)
    family = info.family
    try:
        if family == "yuv":
            frame.color_range = _AVCOL_RANGE[info.color_range]
            frame.colorspace = _NAME_TO_AVCOL_SPC[info.colorspace]
        elif family == "rgb":
            frame.color_range = _RANGE_JPEG
            frame.colorspace = 0  # AVCOL_SPC_RGB
        else:
            frame.color_range = _AVCOL_RANGE[info.color_range]
    except (AttributeError, TypeError, ValueError):  # pragma: no cover - very old PyAV without the setters
        pass
    return frame


def avcol_spc(info: VideoInfo) -> int:
    """FFmpeg ``AVColorSpace`` value to tag an encoded stream of ``info`` with (``AVCOL_SPC_RGB`` for RGB)."""
    return 0 if info.family == "rgb" else _NAME_TO_AVCOL_SPC[info.colorspace]


def avcol_range(info: VideoInfo) -> int:
    """FFmpeg ``AVColorRange`` value for ``info`` (RGB is always full range)."""
    return _RANGE_JPEG if info.family == "rgb" else _AVCOL_RANGE[info.color_range]
