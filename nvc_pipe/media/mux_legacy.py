"""Files of earlier versions: the NVC stream in a tagged DVB-subtitle track (``S_DVBSUB``) written by FFmpeg.

Such files still decode. FFmpeg knows that codec, so this reader goes through PyAV: the sequence header is the
track's extradata, the access units its packets, timed back into the original time base by the same tags as the
``NVC1`` track (:mod:`nvc_pipe.media.mux_tags`). A file cut short is caught against the track's ``DURATION`` tag.
:mod:`nvc_pipe.media.mux` falls back to this module for any file without an ``NVC1`` track; nothing writes this
layout any more.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any, Iterator

import av

from ..errors import BitstreamError, one_line
from .clip import to_fraction
from .mux_tags import SNAP_TOLERANCE, TAG_CODEC, Packet, mux_params, original_tags, snap_to_grid, tag_value
from .streamcopy import open_input, packet_time

LEGACY_CARRIER = "dvb_subtitle"


def _open(path: str) -> Any:
    return open_input(path, "input", lambda reason: BitstreamError(
        f"cannot read {path}: not a readable Matroska file ({reason})"))


def _find(container: Any, path: str) -> Any:
    for stream in container.streams:
        if any(str(k).upper() == TAG_CODEC for k in stream.metadata):
            return stream
    raise BitstreamError(f"no NVC stream in {path}")


def legacy_offset(path: str) -> Fraction | None:
    """:func:`nvc_pipe.media.mux.carrier_offset` for a file of an earlier version (``None``: no NVC track)."""
    container = _open(path)
    try:
        return _offset(container, path)
    finally:
        container.close()


def _offset(container: Any, path: str) -> Fraction | None:
    try:
        stream = _find(container, path)
    except BitstreamError:
        return None
    tb, _, pts0 = mux_params(dict(stream.metadata), path)
    try:
        for packet in container.demux(stream):
            t = packet_time(packet) if packet.size else None
            if t is not None:
                return t - pts0 * tb
    except (av.FFmpegError, OSError) as exc:
        raise BitstreamError(f"corrupt or truncated MKV {path}: {one_line(exc)}") from exc
    return Fraction(0)


def parse_duration(text: str | None) -> Fraction | None:
    """Seconds of a Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), ``None`` if absent or unreadable."""
    if not text:
        return None
    m = re.fullmatch(r"(\d{1,9}):(\d{1,2}):(\d{1,2}(?:\.\d{1,12})?)", str(text).strip())
    if not m:
        return None
    return int(m[1]) * 3600 + int(m[2]) * 60 + Fraction(m[3])


def read_legacy(path: str) -> tuple[bytes, dict[str, str], Iterator[Packet]]:
    """:func:`read_mkv` for a file whose NVC stream rides in a tagged (DVB subtitle) track."""
    container = _open(path)
    try:
        stream = _find(container, path)
        meta = {str(k): str(v) for k, v in stream.metadata.items()}
        tb, fps, pts0 = mux_params(meta, path)
        header = bytes(stream.codec_context.extradata or b"") if stream.codec_context is not None else b""
        tags = original_tags(meta)
    except BaseException:
        container.close()
        raise
    return header, tags, _packets(container, stream, path, tb, fps, pts0)


def _packets(
    container: Any, stream: Any, path: str, tb: Fraction, fps: Fraction | None, pts0: int
) -> Iterator[Packet]:
    step = (1 / (fps * tb)) if fps else None
    first_t: Fraction | None = None
    last_end: Fraction | None = None
    expected_end = parse_duration(tag_value({str(k): str(v) for k, v in stream.metadata.items()}, "DURATION"))
    try:
        for packet in container.demux(stream):
            if not packet.size:
                continue
            if getattr(packet, "is_corrupt", False):
                raise BitstreamError(f"corrupt block in {path} (truncated file?)")
            ptb = to_fraction(packet.time_base)
            if packet.pts is None or ptb is None:
                raise BitstreamError(f"NVC block without a timestamp in {path}")
            t = packet.pts * ptb
            if first_t is None:
                first_t = t
            pts = pts0 + snap_to_grid((t - first_t) / tb, step, tb)
            duration = snap_to_grid((packet.duration or 0) * ptb / tb, step, tb)
            last_end = t + (packet.duration or 0) * ptb
            yield Packet(bytes(packet), pts, duration)
        # A Matroska file cut short still has its header, where the muxer wrote the track's DURATION tag at close;
        # the demuxer silently drops a partial cluster, so compare.
        if expected_end is not None and (last_end or Fraction(0)) < expected_end - SNAP_TOLERANCE:
            ends = "has no NVC block" if last_end is None else f"ends at {float(last_end):.3f} s"
            raise BitstreamError(
                f"truncated MKV {path}: the NVC track {ends}, its header says {float(expected_end):.3f} s"
            )
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise BitstreamError(f"corrupt or truncated MKV {path}: {one_line(exc)}") from exc
    finally:
        container.close()
