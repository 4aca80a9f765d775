"""The NVC track's tags and timing, shared by the Matroska writer and both readers (:mod:`nvc_pipe.media.mux`
for the ``NVC1`` track, :mod:`nvc_pipe.media.mux_legacy` for files of earlier versions).

It owns the tag names (``NVC_CODEC``, the reserved ``NVC_MUX_*`` set), the check of user tags before writing, the
parsing of the timing tags (time base, frame rate, first pts: small rationals only) and of the user tags'
original spelling, the :class:`Packet` both readers yield, and the snap of a stored millisecond to the nominal
frame grid. It opens no file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from fractions import Fraction

from ..errors import BitstreamError, ConfigError, one_line

TAG_CODEC = "NVC_CODEC"
MUX_VERSION = "2"
TAG_VERSION = "NVC_MUX_VERSION"
TAG_TIME_BASE = "NVC_MUX_TIME_BASE"
TAG_FPS = "NVC_MUX_FPS"
TAG_PTS0 = "NVC_MUX_PTS0"
TAG_KEYS = "NVC_MUX_KEYS"
RESERVED_PREFIX = "NVC_MUX_"
SNAP_TOLERANCE = Fraction(1, 1000)  # seconds


@dataclass(frozen=True)
class Packet:
    """One access unit of the NVC stream.

    Attributes:
        payload: the access unit's bytes (non-empty).
        pts: presentation time of its first frame, in ``VideoInfo.time_base``.
        duration: duration it covers, in ``VideoInfo.time_base``.
    """

    payload: bytes
    pts: int
    duration: int


def tag_value(meta: dict[str, str], key: str) -> str | None:
    """The value of tag ``key`` in ``meta``, whatever the case of its name (FFmpeg upper-cases names on remux)."""
    for k, v in meta.items():
        if str(k).upper() == key.upper():
            return v
    return None


_RATIONAL = re.compile(r"-?\d{1,18}(/\d{1,18})?")


def parse_rational(text: str) -> Fraction:
    """A tag value "N" or "N/D" with at most 18 digits each (never `Fraction("1e99999999")`, which hangs)."""
    if not _RATIONAL.fullmatch(text.strip()):
        raise ValueError(f"not a small rational: {text[:40]!r}")
    return Fraction(text.strip())


def mux_params(meta: dict[str, str], path: str) -> tuple[Fraction, Fraction | None, int]:
    """``(time base, fps or None, first pts)`` from the timing tags; :class:`BitstreamError` when they are bad."""
    try:
        tb = parse_rational(tag_value(meta, TAG_TIME_BASE) or "1/1000")
        fps_text = tag_value(meta, TAG_FPS)
        fps = parse_rational(fps_text) if fps_text else None
        pts0 = int(parse_rational(tag_value(meta, TAG_PTS0) or "0"))
    except (ValueError, ZeroDivisionError) as exc:
        raise BitstreamError(f"bad NVC track tags in {path}: {one_line(exc)}") from exc
    if tb <= 0 or (fps is not None and fps <= 0):
        raise BitstreamError(f"bad NVC track tags in {path}: time base {tb}, fps {fps}")
    return tb, fps, pts0


def check_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """The user tags to write, checked (names, NUL bytes, the reserved prefix, case-insensitive repeats)."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key or any(c in key for c in "=\n\r\0") or not key.isprintable():
            raise ConfigError(f"bad tag name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"tag {key} must be a string without NUL bytes")
        if key.upper().startswith(RESERVED_PREFIX):
            raise ConfigError(f"tag names starting with {RESERVED_PREFIX} are reserved ({key})")
        if key.upper() in seen:
            raise ConfigError(f"tag {key} given twice (Matroska tag names ignore case)")
        seen.add(key.upper())
        out[key] = value
    return out


def original_tags(meta: dict[str, str]) -> dict[str, str]:
    """The user tags of a read track as written (spelling from ``NVC_MUX_KEYS``; container-added ones dropped)."""
    keys_text = tag_value(meta, TAG_KEYS)
    try:
        keys = json.loads(keys_text) if keys_text else None
    except (ValueError, RecursionError):
        keys = None
    if isinstance(keys, list):
        return {str(k): (tag_value(meta, str(k)) or "") for k in keys}
    return {k: v for k, v in meta.items() if not k.upper().startswith(RESERVED_PREFIX) and k.upper() != "DURATION"}


def snap_to_grid(value: Fraction, step: Fraction | None, tb: Fraction) -> int:
    """Nearest int to ``value`` (in time-base units), or the nearest frame-grid point when within 1 ms of it."""
    if step:
        grid = round(round(value / step) * step)
        if abs(grid - value) * tb <= SNAP_TOLERANCE:
            return int(grid)
    return int(round(value))
