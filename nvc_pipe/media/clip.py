"""What a clip is (``VideoInfo``, ``Segment``) and the pixel-format policy.

This module owns the pixel-format policy of nvc-pipe. It does no file I/O and no pixel conversion.

Pixel formats
-------------
``VideoInfo.pix_fmt`` is always one of :data:`SUPPORTED_PIX_FMTS`: the layout we reproduce on output. Any other
FFmpeg input format is mapped to the nearest one that loses nothing (see :func:`normalize_pix_fmt`):

* ``yuvj420p/yuvj422p/yuvj444p`` -> ``yuv420p/yuv422p/yuv444p`` with ``color_range="pc"``;
* semi-planar and packed YUV (``nv12``, ``nv21``, ``nv16``, ``nv24``, ``yuyv422``, ``uyvy422``, ``p010le``, ``p210``,
  ``y210``, ``v210`` ...) -> the planar YUV layout with the same subsampling and depth;
* other subsamplings -> one that keeps every chroma sample: ``yuv411p -> yuv422p``, ``yuv410p -> yuv420p``,
  ``yuv440p -> yuv444p``;
* depth: 8 bit -> 8, 9-10 bit -> 10, 11 bit and deeper YUV/gray -> 12 (16-bit YUV/gray is truncated to 12 bit);
* alpha is dropped (``yuva420p -> yuv420p``, ``rgba/bgra/argb/... -> rgb24``, ``gbrap -> gbrp``,
  ``rgba64le -> rgb48le``);
* packed/planar RGB: 8 bit (``bgr24``, ``rgb0``, ``pal8``, ``rgb565`` ...) -> ``rgb24``; ``gbrp9/10 -> gbrp10le``,
  ``gbrp12 -> gbrp12le``, 14-16 bit RGB -> ``rgb48le``; ``gray9 -> gray10le``, ``gray12/14/16 -> gray12le``,
  ``monob/monow/ya8 -> gray``.

Conversions between frames, planes and RGB live in :mod:`nvc_pipe.media.convert`.
"""


from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
import numpy as np

from ..errors import ConfigError, InputError

log = logging.getLogger(__name__)

SUPPORTED_PIX_FMTS: tuple[str, ...] = (
    "yuv420p",
    "yuv422p",
    "yuv444p",
    "yuv420p10le",
    "yuv422p10le",
    "yuv444p10le",
    "yuv420p12le",
    "yuv422p12le",
    "yuv444p12le",
    "rgb24",
    "gbrp",
    "gbrp10le",
    "gbrp12le",
    "rgb48le",
    "gray",
    "gray10le",
    "gray12le",
)

# pix_fmt -> (family, bit depth, log2 chroma width, log2 chroma height)
_LAYOUTS: dict[str, tuple[str, int, int, int]] = {
    "yuv420p": ("yuv", 8, 1, 1),
    "yuv422p": ("yuv", 8, 1, 0),
    "yuv444p": ("yuv", 8, 0, 0),
    "yuv420p10le": ("yuv", 10, 1, 1),
    "yuv422p10le": ("yuv", 10, 1, 0),
    "yuv444p10le": ("yuv", 10, 0, 0),
    "yuv420p12le": ("yuv", 12, 1, 1),
    "yuv422p12le": ("yuv", 12, 1, 0),
    "yuv444p12le": ("yuv", 12, 0, 0),
    "rgb24": ("rgb", 8, 0, 0),
    "gbrp": ("rgb", 8, 0, 0),
    "gbrp10le": ("rgb", 10, 0, 0),
    "gbrp12le": ("rgb", 12, 0, 0),
    "rgb48le": ("rgb", 16, 0, 0),
    "gray": ("gray", 8, 0, 0),
    "gray10le": ("gray", 10, 0, 0),
    "gray12le": ("gray", 12, 0, 0),
}

_YUV_NAMES = {(1, 1): "420", (1, 0): "422", (0, 0): "444"}
_DEPTH_SUFFIX = {8: "", 10: "10le", 12: "12le"}

COLORSPACES: tuple[str, ...] = ("bt709", "bt601", "smpte240m", "fcc", "bt2020")
_COLORSPACE_ALIASES = {
    "bt709": "bt709",
    "itu709": "bt709",
    "bt601": "bt601",
    "itu601": "bt601",
    "smpte170m": "bt601",
    "bt470bg": "bt601",
    "smpte240m": "smpte240m",
    "fcc": "fcc",
    "bt2020": "bt2020",
    "bt2020nc": "bt2020",
    "bt2020ncl": "bt2020",
    "bt2020_ncl": "bt2020",
}
# AVColorSpace values (libavutil/pixfmt.h), stable across FFmpeg versions.
_AVCOL_SPC_TO_NAME = {1: "bt709", 4: "fcc", 5: "bt601", 6: "bt601", 7: "smpte240m", 9: "bt2020", 10: "bt2020"}
# SWS_CS_* values (libswscale/swscale.h): what PyAV's reformat() takes as src/dst_colorspace.
_AVCOL_RANGE = {"tv": 1, "pc": 2}  # AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG

# Explicit mappings the generic rule in normalize_pix_fmt would get wrong or that read better spelled out.
_PIX_FMT_MAP: dict[str, tuple[str, str | None]] = {
    "yuvj420p": ("yuv420p", "pc"),
    "yuvj422p": ("yuv422p", "pc"),
    "yuvj444p": ("yuv444p", "pc"),
    "yuvj440p": ("yuv444p", "pc"),
    "yuvj411p": ("yuv422p", "pc"),
    "pal8": ("rgb24", None),
    "monob": ("gray", None),
    "monow": ("gray", None),
    "ya8": ("gray", None),
    "ya16le": ("gray12le", None),
    "ya16be": ("gray12le", None),
    "v210": ("yuv422p10le", None),
}


def normalize_pix_fmt(name: str) -> tuple[str, str | None]:
    """Map any FFmpeg pixel format to the supported layout we reproduce it with.

    Args:
        name: an FFmpeg pixel format name (``"nv12"``, ``"yuvj420p"``, ``"p010le"`` ...).

    Returns:
        ``(pix_fmt, range)``: a member of :data:`SUPPORTED_PIX_FMTS` and ``"pc"`` when the input name implies full
        range (``yuvj*``), else ``None``.

    Raises:
        InputError: unknown, hardware-only or otherwise unusable format.
    """
    if name in _LAYOUTS:
        return name, None
    if name in _PIX_FMT_MAP:
        return _PIX_FMT_MAP[name]
    try:
        fmt = av.VideoFormat(name, 64, 64)
    except (ValueError, TypeError, av.FFmpegError) as exc:
        raise InputError(f"unknown pixel format {name!r}") from exc
    comps = [c for c in fmt.components if not c.is_alpha]
    if not comps:
        raise InputError(f"pixel format {name!r} has no image data in memory (hardware surface?)")
    depth = max(int(c.bits) for c in comps)
    if fmt.is_rgb or getattr(fmt, "is_bayer", False) or getattr(fmt, "has_palette", False):
        if depth <= 8:
            return ("gbrp" if fmt.is_planar and not getattr(fmt, "has_palette", False) else "rgb24"), None
        if depth <= 10:
            return "gbrp10le", None
        if depth <= 12:
            return "gbrp12le", None
        return "rgb48le", None
    if len(comps) == 1:
        return ("gray" if depth <= 8 else "gray10le" if depth <= 10 else "gray12le"), None
    if len(comps) != 3:
        raise InputError(f"unsupported pixel format {name!r}")
    luma = next((c for c in comps if c.is_luma), comps[0])
    chroma = next((c for c in comps if c.is_chroma), comps[1])
    sw = max(1, int(luma.width) // max(1, int(chroma.width)))
    sh = max(1, int(luma.height) // max(1, int(chroma.height)))
    lw = 1 if sw >= 2 else 0
    lh = 1 if sh >= 2 and sw >= 2 else 0  # 4:4:0 -> 4:4:4, 4:1:1 -> 4:2:2, 4:1:0 -> 4:2:0: no sample lost
    bits = 8 if depth <= 8 else 10 if depth <= 10 else 12  # deeper: the demuxer warns once, naming the file
    out = f"yuv{_YUV_NAMES[(lw, lh)]}p{_DEPTH_SUFFIX[bits]}"
    return out, ("pc" if name.startswith("yuvj") else None)


def normalize_colorspace(name: str) -> str:
    """Canonical matrix name (one of :data:`COLORSPACES`) for an alias such as ``"smpte170m"`` or ``"bt470bg"``.

    Raises:
        ConfigError: unknown name.
    """
    key = str(name).strip().lower().replace("-", "").replace(".", "")
    if key not in _COLORSPACE_ALIASES:
        raise ConfigError(f"unknown colorspace {name!r} (known: {', '.join(COLORSPACES)})")
    return _COLORSPACE_ALIASES[key]


def guess_colorspace(avcol_spc: Any, width: int, height: int) -> str:
    """Matrix name for an FFmpeg ``AVColorSpace`` value; unspecified -> bt709 for HD (w >= 1280 or h > 576), else bt601.

    The fallback follows what players assume for untagged video, so an untagged source and our tagged output look
    the same.
    """
    try:
        value = int(avcol_spc)
    except (TypeError, ValueError):
        value = 2
    if value in _AVCOL_SPC_TO_NAME:
        return _AVCOL_SPC_TO_NAME[value]
    return "bt709" if (width >= 1280 or height > 576) else "bt601"


@dataclass(frozen=True)
class VideoInfo:
    """What we know about a clip and reproduce on output.

    Attributes:
        width: picture width in pixels (> 0).
        height: picture height in pixels (> 0).
        pix_fmt: source layout, one of :data:`SUPPORTED_PIX_FMTS` (see :func:`normalize_pix_fmt`).
        fps: nominal frame rate (> 0).
        time_base: unit of the pts values (> 0).
        color_range: ``"tv"`` (limited) or ``"pc"`` (full); what YUV <-> RGB assumes.
        colorspace: YUV matrix, one of :data:`COLORSPACES` (aliases are normalised).
        color_primaries: ISO/IEC 23091-4 colour primaries code (AVColorPrimaries; 2 = unspecified), carried to the
            MKV and to decoded outputs, never used for conversion.
        color_trc: ISO/IEC 23091-4 transfer characteristics code (AVColorTransferCharacteristic; 2 = unspecified).
        rotation: display rotation in degrees, counter-clockwise (FFmpeg's display-matrix angle), 0 for none.
        interlaced: the source was flagged interlaced (we code and output frames as progressive).
    """

    width: int
    height: int
    pix_fmt: str
    fps: Fraction
    time_base: Fraction
    color_range: str = "tv"
    colorspace: str = "bt601"
    color_primaries: int = 2
    color_trc: int = 2
    rotation: int = 0
    interlaced: bool = False

    def __post_init__(self) -> None:
        try:
            width, height = int(self.width), int(self.height)
            fps, time_base = _to_fraction(self.fps), _to_fraction(self.time_base)
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise ConfigError(f"bad video info: {exc}") from exc
        if width <= 0 or height <= 0:
            raise ConfigError(f"bad video size {self.width}x{self.height}")
        if fps <= 0 or time_base <= 0:
            raise ConfigError(f"bad frame rate {self.fps} or time base {self.time_base}")
        if self.pix_fmt not in _LAYOUTS:
            raise ConfigError(f"pixel format {self.pix_fmt!r} is not one of {', '.join(SUPPORTED_PIX_FMTS)}")
        if self.color_range not in _AVCOL_RANGE:
            raise ConfigError(f"color_range must be 'tv' or 'pc', not {self.color_range!r}")
        object.__setattr__(self, "width", width)
        object.__setattr__(self, "height", height)
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "time_base", time_base)
        object.__setattr__(self, "colorspace", normalize_colorspace(self.colorspace))
        for name in ("color_primaries", "color_trc"):
            code = int(getattr(self, name))
            object.__setattr__(self, name, code if 0 <= code <= 255 else 2)
        object.__setattr__(self, "rotation", int(self.rotation) % 360)
        object.__setattr__(self, "interlaced", bool(self.interlaced))

    @property
    def family(self) -> str:
        """``"yuv"``, ``"rgb"`` or ``"gray"``."""
        return _LAYOUTS[self.pix_fmt][0]

    @property
    def bit_depth(self) -> int:
        """Bits per sample of :attr:`pix_fmt` (8, 10, 12 or 16)."""
        return _LAYOUTS[self.pix_fmt][1]

    @property
    def max_value(self) -> int:
        """Full scale of :attr:`Segment.rgb`: 255 for 8-bit layouts, else 65535."""
        return 255 if self.bit_depth == 8 else 65535

    @property
    def rgb_dtype(self) -> np.dtype:
        """``uint8`` for 8-bit layouts, else ``uint16``."""
        return np.dtype(np.uint8) if self.bit_depth == 8 else np.dtype(np.uint16)

    @property
    def rgb_pix_fmt(self) -> str:
        """FFmpeg name of the RGB arrays: ``"rgb24"`` or ``"rgb48le"``."""
        return "rgb24" if self.bit_depth == 8 else "rgb48le"

    @property
    def chroma_shift(self) -> tuple[int, int]:
        """log2 of the chroma subsampling (horizontal, vertical): (1, 1) for 4:2:0."""
        _, _, lw, lh = _LAYOUTS[self.pix_fmt]
        return lw, lh

    @property
    def frame_duration(self) -> Fraction:
        """Nominal duration of one frame in :attr:`time_base` units (``1 / (fps * time_base)``)."""
        return 1 / (self.fps * self.time_base)


@dataclass
class Segment:
    """A block of consecutive frames, the unit a codec plugin encodes.

    Attributes:
        rgb: ``(T, H, W, 3)``, ``uint8`` if ``bit_depth == 8`` else ``uint16`` on the rgb48le scale.
        pts: ``(T,)`` int64 in ``VideoInfo.time_base``.
        start: index of the first frame in the whole video.
        index: segment index (0, 1, ...).
    """

    rgb: np.ndarray
    pts: np.ndarray
    start: int
    index: int

    def __len__(self) -> int:
        return int(self.rgb.shape[0])


def _to_fraction(value: Any) -> Fraction:
    """Fraction from a Fraction, int, str ("30000/1001"), PyAV AVRational or anything with numerator/denominator."""
    if isinstance(value, Fraction):
        return value
    if isinstance(value, (int, str)):
        return Fraction(value)
    if hasattr(value, "numerator") and hasattr(value, "denominator"):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, float):
        return Fraction(value).limit_denominator(1 << 20)
    raise TypeError(f"not a rational number: {value!r}")


def to_fraction(value: Any) -> Fraction | None:
    """Convert a PyAV rational (``Fraction`` in av 18, ``AVRational`` in av 19) to ``Fraction``; unset/0 -> ``None``."""
    if value is None:
        return None
    try:
        frac = _to_fraction(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return frac if frac != 0 else None
