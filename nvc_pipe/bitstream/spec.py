"""The NVC elementary stream: magic, version, CRC-protected boxes, sequence header and access units.

Layout (all integers little-endian; docs/bitstream.md is the normative text):

    stream      = stream_header access_unit*
    stream_header = MAGIC (4 bytes "\\x8bNVC") major:u8 minor:u8 box("SEQH")
    access_unit = box("AU01")
    box         = type:4 ASCII bytes, length:u32, payload[length], crc32:u32 over type|length|payload

In Matroska the stream header is the track's CodecPrivate and each access unit is one block. A box is the unit
of integrity: a flipped bit anywhere is caught by its CRC before a single field is parsed. This module knows
nothing of torch or of what a codec plugin puts inside an access unit.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterator, Sequence

from ..errors import BitstreamError
from .fields import ByteReader, ByteWriter

MAGIC = b"\x8bNVC"
VERSION = (1, 1)  # 1.1: optional intra field in the sequence header
BOX_SEQUENCE = b"SEQH"
BOX_ACCESS_UNIT = b"AU01"
MAX_DIMENSION = 1 << 16
MAX_FRAMES = 1 << 24  # 77 hours at 60 fps
_BOX_OVERHEAD = 12

TS_CONSTANT, TS_TABLE = 0, 1


@dataclass(frozen=True, eq=False)
class SequenceHeader:
    """Everything a decoder needs before the first access unit."""

    width: int
    height: int
    pix_fmt: str
    color_range: str
    colorspace: str
    fps: Fraction
    time_base: Fraction
    frame_count: int
    segment_count: int
    pts: Sequence[int]  # a range for constant frame rates
    codec: str
    payload_version: int
    codec_config: dict = field(default_factory=dict)
    intra: dict = field(default_factory=dict)  # intra-frame coding (nvc_pipe/intra/frames.py); {} = none

    def __eq__(self, other: object) -> bool:  # pts may be a range on one side and a tuple on the other
        if not isinstance(other, SequenceHeader):
            return NotImplemented
        mine, theirs = vars(self).copy(), vars(other).copy()
        return tuple(mine.pop("pts")) == tuple(theirs.pop("pts")) and mine == theirs

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        w = ByteWriter()
        w.u32(self.width, "width")
        w.u32(self.height, "height")
        w.string(self.pix_fmt, "pix_fmt")
        w.string(self.color_range, "color_range")
        w.string(self.colorspace, "colorspace")
        for name, frac in (("fps", self.fps), ("time_base", self.time_base)):
            w.u32(frac.numerator, f"{name} numerator")
            w.u32(frac.denominator, f"{name} denominator")
        w.u32(self.frame_count, "frame_count")
        w.u32(self.segment_count, "segment_count")
        _write_pts(w, self.pts)
        w.string(self.codec, "codec")
        w.u16(self.payload_version, "payload_version")
        config = json.dumps(self.codec_config, sort_keys=True, separators=(",", ":"))
        w.blob(config.encode("utf-8"), "codec_config")
        if self.intra:  # optional trailing field (version 1.1)
            w.blob(json.dumps(self.intra, sort_keys=True, separators=(",", ":")).encode("utf-8"), "intra")
        return w.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "SequenceHeader":
        r = ByteReader(data, "sequence header")
        width, height = r.u32("width"), r.u32("height")
        if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
            raise BitstreamError(f"corrupt sequence header: size {width}x{height} out of range")
        pix_fmt, color_range, colorspace = r.string("pix_fmt"), r.string("color_range"), r.string("colorspace")
        fps = _fraction(r, "fps")
        time_base = _fraction(r, "time_base")
        frame_count = r.u32("frame_count")
        segment_count = r.u32("segment_count")
        if not 0 < frame_count <= MAX_FRAMES or not 0 < segment_count <= frame_count:
            raise BitstreamError("corrupt sequence header: frame or segment count out of range")
        pts = _read_pts(r, frame_count)
        codec = r.string("codec")
        payload_version = r.u16("payload_version")
        config = _json_object(r, "codec_config")
        intra = _json_object(r, "intra") if r.remaining else {}
        r.expect_end()
        return cls(width, height, pix_fmt, color_range, colorspace, fps, time_base, frame_count,
                   segment_count, pts, codec, payload_version, config, intra)


def _json_object(r: ByteReader, name: str) -> dict:
    try:
        value = json.loads(r.blob(name).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise BitstreamError(f"corrupt sequence header: {name} is not JSON") from None
    if not isinstance(value, dict):
        raise BitstreamError(f"corrupt sequence header: {name} is not an object")
    return value


@dataclass(frozen=True)
class AccessUnit:
    """One coded segment: frames [first_frame, first_frame + frame_count) and the plugin's payload."""

    segment_index: int
    first_frame: int
    frame_count: int
    payload: bytes

    def to_bytes(self) -> bytes:
        w = ByteWriter()
        w.u32(self.segment_index, "segment_index")
        w.u32(self.first_frame, "first_frame")
        w.u32(self.frame_count, "frame_count")
        w.raw(self.payload)
        return pack_box(BOX_ACCESS_UNIT, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> "AccessUnit":
        body, rest = unpack_box(data, BOX_ACCESS_UNIT)
        if rest:
            raise BitstreamError("corrupt access unit: trailing bytes after the box")
        r = ByteReader(body, "access unit")
        seg, first, count = r.u32("segment_index"), r.u32("first_frame"), r.u32("frame_count")
        return cls(seg, first, count, r.take(r.remaining))


def pack_box(kind: bytes, payload: bytes) -> bytes:
    head = kind + struct.pack("<I", len(payload))
    return head + payload + struct.pack("<I", zlib.crc32(head + payload))


def unpack_box(data: bytes, kind: bytes) -> tuple[bytes, bytes]:
    """Check one box at the start of `data`; return (payload, bytes after the box)."""
    name = kind.decode("ascii").strip()
    if len(data) < _BOX_OVERHEAD:
        raise BitstreamError(f"truncated stream: {name} box needs at least {_BOX_OVERHEAD} bytes")
    if data[:4] != kind:
        raise BitstreamError(f"corrupt stream: expected a {name} box, found {data[:4]!r}")
    (length,) = struct.unpack("<I", data[4:8])
    end = 8 + length
    if end + 4 > len(data):
        raise BitstreamError(f"truncated stream: {name} box declares {length} bytes, {len(data) - 12} present")
    (crc,) = struct.unpack("<I", data[end : end + 4])
    if zlib.crc32(data[:end]) != crc:
        raise BitstreamError(f"corrupt stream: CRC mismatch in {name} box")
    return bytes(data[8:end]), bytes(data[end + 4 :])


def pack_stream_header(seq: SequenceHeader) -> bytes:
    return MAGIC + bytes(VERSION) + pack_box(BOX_SEQUENCE, seq.to_bytes())


def parse_stream_header(data: bytes) -> tuple[SequenceHeader, bytes]:
    """Parse magic, version and SEQH; return the header and the bytes that follow it."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise BitstreamError("not an NVC stream (bad magic)")
    major, minor = data[4], data[5]
    if major != VERSION[0]:
        raise BitstreamError(f"unsupported NVC stream version {major}.{minor} (this decoder reads {VERSION[0]}.x)")
    body, rest = unpack_box(data[6:], BOX_SEQUENCE)
    return SequenceHeader.from_bytes(body), rest


def split_access_units(data: bytes) -> Iterator[bytes]:
    """Split the bytes after the stream header into AU boxes (each still CRC-checked by AccessUnit)."""
    pos = 0
    while pos < len(data):
        if len(data) - pos < _BOX_OVERHEAD:
            raise BitstreamError("truncated stream: incomplete access unit at the end")
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        end = pos + _BOX_OVERHEAD + length
        if end > len(data):
            raise BitstreamError("truncated stream: last access unit is cut short")
        yield data[pos:end]
        pos = end


def check_access_unit(au: AccessUnit, seq: SequenceHeader, expected_index: int) -> None:
    """Validate an AU against the sequence header (order, frame range)."""
    if au.segment_index != expected_index:
        raise BitstreamError(f"corrupt stream: access unit {au.segment_index} where {expected_index} was expected")
    if au.frame_count == 0 or au.first_frame + au.frame_count > seq.frame_count:
        raise BitstreamError(f"corrupt stream: access unit {au.segment_index} covers frames beyond the sequence")


def _fraction(r: ByteReader, name: str) -> Fraction:
    num, den = r.u32(f"{name} numerator"), r.u32(f"{name} denominator")
    if num == 0 or den == 0:
        raise BitstreamError(f"corrupt sequence header: {name} {num}/{den}")
    return Fraction(num, den)


def _write_pts(w: ByteWriter, pts: tuple[int, ...]) -> None:
    if not pts:
        raise ValueError("a sequence needs at least one frame")
    steps = {b - a for a, b in zip(pts, pts[1:])}
    if len(steps) <= 1 and all(d > 0 for d in steps):
        w.u8(TS_CONSTANT, "pts mode")
        w.i64(pts[0], "first pts")
        w.i64(steps.pop() if steps else 1, "pts step")
    else:
        w.u8(TS_TABLE, "pts mode")
        w.i64(pts[0], "first pts")
        for a, b in zip(pts, pts[1:]):
            w.svarint(b - a, "pts delta")


def _read_pts(r: ByteReader, n: int) -> Sequence[int]:
    mode = r.u8("pts mode")
    first = r.i64("first pts")
    if mode == TS_CONSTANT:
        step = r.i64("pts step")
        if step <= 0:
            raise BitstreamError(f"corrupt sequence header: pts step {step}")
        return range(first, first + n * step, step)  # lazy: a header claiming 2^24 frames costs nothing
    if mode != TS_TABLE:
        raise BitstreamError(f"corrupt sequence header: unknown pts mode {mode}")
    if n - 1 > r.remaining:  # each delta takes at least one byte
        raise BitstreamError("truncated sequence header: pts table")
    out = [first]
    for _ in range(n - 1):
        out.append(out[-1] + r.svarint("pts delta", limit=2**40))
    return tuple(out)
