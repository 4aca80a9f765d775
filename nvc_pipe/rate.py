"""Rate targets: what a user asks for (`--bitrate`, `--bpp`, `--quality`) and the clip it is asked for.

    Target("bitrate", 500_000)  bits/s of the video stream (ffmpeg suffixes: 500k, 2M, 1.5M)
    Target("bpp", 0.1)          bits per pixel of the video stream
    Target("quality", 28)       0..51, lower is better (CRF-like); each plugin maps it to a rate of its own

`Clip` is what a plugin needs to turn a target into a configuration before any training: frame size and rate,
frames, frames per segment, the bytes of the stream no plugin controls (sequence header, access-unit headers) and
the device the encode runs on.
`Clip.payload_bytes` is the byte budget of one segment's payload; `rate_miss` words a finished encode that
missed its bitrate / bpp target by more than RATE_MISS. Nothing here knows a codec.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from .errors import ConfigError

KINDS = ("bitrate", "bpp", "quality")
QUALITY_RANGE = (0, 51)
DEFAULT_QUALITY = 28
RATE_MISS = 0.10  # rate control's promise: a bitrate / bpp target the plan accepts lands within this
_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([kmg]?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Target:
    """One rate or quality target (`kind` in KINDS)."""

    kind: str
    value: float

    def to_dict(self) -> dict:
        return {"kind": self.kind, "value": self.value}

    def __str__(self) -> str:
        if self.kind == "bitrate":
            return f"{format_bitrate(self.value)}b/s"
        if self.kind == "bpp":
            return f"{self.value:g} bpp"
        return f"quality {int(self.value)}"


def parse_bitrate(text: str) -> float:
    """'500k' → 500000.0, '2M', '1.5M', '800000'; ConfigError for anything else or a rate <= 0."""
    m = _RATE.match(str(text))
    if not m:
        raise ConfigError(f"invalid bitrate {text!r} (expected bits/s like 500k, 2M, 1.5M)")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"bitrate must be > 0, got {text!r}")
    return value


def format_bitrate(bits: float) -> str:
    for suffix, scale in (("M", 1e6), ("k", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.4g}{suffix}"
    return f"{bits:.4g}"


def make_target(bitrate: str | float | None = None, bpp: float | None = None,
                quality: int | None = None) -> Target | None:
    """The one target given (None if none); ConfigError for two at once or a value out of range."""
    given = [(k, v) for k, v in (("bitrate", bitrate), ("bpp", bpp), ("quality", quality)) if v is not None]
    if len(given) > 1:
        names = {"bitrate": "--bitrate/-b:v", "bpp": "--bpp", "quality": "--quality/-crf"}
        raise ConfigError(f"give one rate target, not {' and '.join(names[k] for k, _ in given)}")
    if not given:
        return None
    kind, value = given[0]
    if kind == "bitrate":
        return Target("bitrate", parse_bitrate(value) if isinstance(value, str) else _positive(value, "bitrate"))
    if kind == "bpp":
        return Target("bpp", _positive(value, "--bpp"))
    if isinstance(value, bool) or not isinstance(value, int) or not QUALITY_RANGE[0] <= value <= QUALITY_RANGE[1]:
        raise ConfigError(f"--quality must be a whole number in {QUALITY_RANGE[0]}..{QUALITY_RANGE[1]}, got {value!r}")
    return Target("quality", value)


def _positive(value: float, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be > 0, got {value!r}")
    return v


def parse_duration(text: str) -> float:
    """'90' / '90s' → 90.0, '10m' → 600.0, '1.5h' → 5400.0 (seconds); ConfigError otherwise or if <= 0."""
    m = re.match(r"^\s*([0-9]*\.?[0-9]+)\s*([smh]?)\s*$", str(text), re.IGNORECASE)
    if not m:
        raise ConfigError(f"invalid time limit {text!r} (expected e.g. 90s, 10m, 1.5h)")
    seconds = float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2).lower()]
    if seconds <= 0:
        raise ConfigError(f"time limit must be > 0, got {text!r}")
    return seconds


@dataclass(frozen=True)
class Clip:
    """The video a configuration is chosen for (known before any training)."""

    width: int
    height: int
    frames: int  # whole clip
    fps: Fraction
    segment_frames: int  # frames of the longest segment (= frames without --segment-frames)
    overhead_bytes: int = 0  # stream bytes outside the payloads: sequence header + access-unit headers
    device: str = "cpu"  # where it will be encoded (time estimates are measured there)

    @property
    def pixels(self) -> int:
        return self.frames * self.width * self.height

    @property
    def segment_pixels(self) -> int:
        return self.segment_frames * self.width * self.height

    def bpp(self, target: Target) -> float:
        """The stream bpp a bitrate or bpp target asks for (quality targets have none: the plugin decides)."""
        if target.kind == "bitrate":
            return target.value / (float(self.fps) * self.width * self.height)
        if target.kind == "bpp":
            return target.value
        raise ValueError("a quality target has no bpp until a plugin maps it")

    def bitrate(self, bpp: float) -> float:
        return bpp * float(self.fps) * self.width * self.height

    def payload_bytes(self, stream_bpp: float, frames: int | None = None) -> int:
        """Bytes one segment of `frames` frames (default: the longest) may spend so the stream meets `stream_bpp`.

        The fixed overhead is spread over the frames; the result is <= 0 when the overhead alone is over budget.
        """
        frames = self.segment_frames if frames is None else frames
        per_frame = stream_bpp * self.width * self.height / 8 - self.overhead_bytes / max(self.frames, 1)
        return math.floor(per_frame * frames)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "frames": self.frames, "fps": str(self.fps),
                "segment_frames": self.segment_frames, "overhead_bytes": self.overhead_bytes, "device": self.device}


def quality_bpp(quality: int, bpp_at_default: float, halving: float = 6.0) -> float:
    """CRF-like map shared by plugins that use it: every `halving` quality steps halve the rate."""
    return bpp_at_default * 2.0 ** ((DEFAULT_QUALITY - quality) / halving)


def rate_miss(codec: str, target_info: dict, achieved_bpp: float, clip: Clip) -> str | None:
    """One line when a bitrate or bpp target (not a quality) missed by more than RATE_MISS, else None: the
    stream is valid and kept; the user learns how far off it is. `target_info` is the report's "target"."""
    error = achieved_bpp / target_info["stream_bpp"] - 1
    if target_info["kind"] not in ("bitrate", "bpp") or abs(error) <= RATE_MISS:
        return None
    return (f"the video stream is {clip.bitrate(achieved_bpp) / 1000:.1f} kb/s ({achieved_bpp:.4g} bpp), "
            f"{100 * error:+.0f} % from the {Target(target_info['kind'], target_info['value'])} asked, kept as "
            f"coded: {codec}'s rate corrections could not reach the target on this clip")
