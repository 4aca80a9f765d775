"""Containers of an NVC stream: reading one from an MKV or a bare `.nvc` file, and writing one of them.

    read_stream:  file (sniffed by content) → sequence header + access-unit bytes
    write_stream: sequence header bytes + access units → bare `.nvc` (file or stdout) or MKV (audio copied)

This module knows the container layouts (through `media/mux.py` for Matroska); it never looks inside an access
unit and never runs a codec.
"""

from __future__ import annotations

import json
import os

from .bitstream.spec import MAGIC, SequenceHeader, parse_stream_header, split_access_units
from .errors import BitstreamError, InputError
from .intra.image import MAGIC_IMAGE
from .media.atomic import atomic_output
from .media.clip import VideoInfo
from .media.mux import Packet, read_mkv, write_mkv
from .media.spool import write_stdout


def read_stream(path: str) -> tuple[SequenceHeader, list[bytes], str]:
    """Sequence header and AU bytes of an MKV or bare NVC file (sniffed by content, not by name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if head == MAGIC:
        with open(path, "rb") as f:
            data = f.read()
        seq, rest = parse_stream_header(data)
        return seq, list(split_access_units(rest)), "nvc"
    if head == MAGIC_IMAGE:
        raise InputError(f"{path} is an NVC image, not a video stream: use `nvc image decode`")
    header, _tags, packets = read_mkv(path)
    seq, rest = parse_stream_header(header)
    if rest:
        raise BitstreamError("corrupt stream: unexpected bytes after the sequence header")
    return seq, [p.payload for p in packets], "mkv"


def info_from_header(seq: SequenceHeader) -> VideoInfo:
    """The `VideoInfo` a sequence header describes (BitstreamError when its fields are not a valid format)."""
    try:
        return VideoInfo(seq.width, seq.height, seq.pix_fmt, seq.fps, seq.time_base, seq.color_range,
                         seq.colorspace)
    except (ValueError, KeyError) as exc:
        raise BitstreamError(f"corrupt sequence header: {exc}") from None


def stored_target(path: str) -> dict | None:
    """The rate target an MKV was encoded for (its NVC_TARGET tag), or None."""
    _header, tags, packets = read_mkv(path)
    close = getattr(packets, "close", None)
    if close is not None:
        close()
    try:
        target = json.loads(tags.get("NVC_TARGET", "null"))
    except ValueError:
        return None
    return target if isinstance(target, dict) else None


def segment_duration(pts: list[int], first: int, frames: int, info: VideoInfo) -> int:
    """Duration of a segment in time_base units (to the next segment's first pts, or one frame past its last)."""
    last = first + frames
    frame_dur = max(1, round(1 / (info.fps * info.time_base)))
    end = pts[last] if last < len(pts) else pts[last - 1] + frame_dur
    return max(1, end - pts[first])


def write_stream(output_path: str, container: str, header: bytes, aus: list[bytes],
                 spans: list[tuple[int, int]], pts: list[int], info: VideoInfo, tags: dict, *,
                 copy_from: str | None, copy_window=None, overwrite: bool = True) -> int:
    """Write the stream as a bare `.nvc` (`container="nvc"`) or an MKV; '-' is standard output. Returns the bytes
    written. `spans` are the (first frame, frame count) of each AU. The file appears whole or not at all
    (`atomic_output`); the MKV copies `copy_from`'s audio/subtitles."""
    if container == "nvc" and output_path == "-":
        return write_stdout([header, *aus])
    if container == "nvc":
        with atomic_output(output_path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            f.write(header)
            for a in aus:
                f.write(a)
        return os.path.getsize(output_path)
    packets = [Packet(a, pts[first], segment_duration(pts, first, n, info)) for a, (first, n) in zip(aus, spans)]
    written = write_mkv(output_path, header, packets, info, tags, copy_from=copy_from, overwrite=overwrite,
                        copy_window=copy_window)
    return written if output_path == "-" else os.path.getsize(output_path)
