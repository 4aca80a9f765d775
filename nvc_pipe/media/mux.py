"""The NVC elementary stream in Matroska: a video track of its own (``V_MS/VFW/FOURCC``, FourCC ``NVC1``).

This module carries bytes it does not interpret: the stream's global header goes to the track's CodecPrivate (after
a BITMAPINFOHEADER), each access unit (one segment) is one Matroska block at the segment's first timestamp, and
every audio and subtitle stream of the source is copied byte for byte beside it. What is inside the header and the
access units is ``nvc_pipe.bitstream``'s business. The file is written by our own Matroska writer
(:mod:`nvc_pipe.media.matroska`), because FFmpeg/PyAV only write codec ids they know; our track is read back by
our own reader (:mod:`nvc_pipe.media.matroska_read`), because PyAV gives no CodecPrivate for an unknown codec.

Why ``V_MS/VFW/FOURCC`` + ``NVC1`` and not ``V_NVC`` (measured 2026-12-01 on the 2-core CPU box with Debian's
ffmpeg/ffprobe 5.1.9 and mkvtoolnix 74.0.0, ``tests/test_mux.py`` repeats it): both are listed by ffprobe as a video
stream with size, frame rate (from DefaultDuration) and duration, and both pass ``mkvinfo`` and ``mkvmerge -J`` /
``mkvmerge -o`` without errors, but ``ffmpeg -i x.mkv -map 0 -c copy re.mkv`` refuses ``V_NVC`` ("codec none is
not supported by this format ... No bmp codec tag found", exit 1) and keeps the VfW track with its FourCC and
CodecPrivate. No FFmpeg decoder claims ``NVC1``, so nothing ever decodes our stream as another codec.

The track: PixelWidth/Height, DisplayWidth/Height, DefaultDuration (one frame), FlagInterlaced, Colour
(MatrixCoefficients, Range, TransferCharacteristics, Primaries, BitsPerChannel, chroma subsampling), a rotation
as Projection/ProjectionPoseRoll; Name = the ``title`` tag; every block a key block (a BlockGroup with the segment's
BlockDuration); Cues point at every block.

Timestamps: Matroska stores milliseconds, and blocks may not be negative, so the writer shifts every track by the
same amount when copied audio starts before zero (AAC priming, -21 ms). The exact original timing travels in track
tags: the time base (``NVC_MUX_TIME_BASE``), the frame rate (``NVC_MUX_FPS``) and the pts of the first packet
(``NVC_MUX_PTS0``). :func:`read_mkv` rebuilds ``pts = PTS0 + (t - t_first)`` in the original time base, snapping to
the nominal frame grid when the stored millisecond is within 1 ms of a grid point (exact for segments of a
constant-rate clip). :func:`carrier_offset` gives the shift between the file's clock and the original one.

Tags: FFmpeg upper-cases tag names on remux; the original spelling of every user tag is kept in ``NVC_MUX_KEYS``
so :func:`read_mkv` returns the dict that was written.

Files of earlier versions carried the stream in a DVB subtitle track (``S_DVBSUB``) written by FFmpeg; they are
still read (through PyAV, which does know that codec) by :mod:`nvc_pipe.media.mux_legacy`. The tag names and
the timing tags' parsing, shared by the writer and both readers, are :mod:`nvc_pipe.media.mux_tags`.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import sys
from dataclasses import replace
from fractions import Fraction
from typing import Any, BinaryIO, Iterable, Iterator

import av

from .. import __version__
from ..errors import BitstreamError, OutputError, one_line
from . import ebml as E
from .atomic import atomic_output
from .clip import VideoInfo, to_fraction
from .matroska import MatroskaWriter, TrackSpec
from .matroska_read import MatroskaError, MatroskaFile, Track, open_matroska
from .mkvtracks import track_for
from .mux_legacy import legacy_offset, read_legacy
from .mux_tags import (MUX_VERSION, TAG_CODEC, TAG_FPS, TAG_KEYS, TAG_PTS0, TAG_TIME_BASE, TAG_VERSION, Packet,
                       check_tags, mux_params, original_tags, snap_to_grid, tag_value)
from .streamcopy import PacketPump, open_input

log = logging.getLogger(__name__)

CODEC_ID = "V_MS/VFW/FOURCC"
FOURCC = b"NVC1"
_BIH = struct.Struct("<IiiHHIIiiII")  # BITMAPINFOHEADER, 40 bytes

# VideoInfo.colorspace -> ISO/IEC 23091-4 MatrixCoefficients (the values FFmpeg's AVColorSpace uses)
_MATRIX = {"bt709": 1, "fcc": 4, "bt601": 6, "smpte240m": 7, "bt2020": 9}

# ---------------------------------------------------------------------------------------------------------------
# tags
# ---------------------------------------------------------------------------------------------------------------
def is_nvc_stream(stream: Any) -> bool:
    """True when a PyAV stream may be an NVC track: an ``NVC_CODEC`` tag, or a video stream FFmpeg has no codec
    for (as for ``NVC1``; PyAV does not show the FourCC). Used to skip our track when copying streams."""
    try:
        if any(str(k).upper() == TAG_CODEC for k in stream.metadata):
            return True
        return stream.type == "video" and stream.codec_context is None
    except (AttributeError, av.FFmpegError):  # pragma: no cover
        return False


# ---------------------------------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------------------------------
def _as_packet(obj: Any, index: int) -> Packet:
    try:
        payload, pts, duration = bytes(obj.payload), int(obj.pts), int(obj.duration)
    except (AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"access unit {index} is not a Packet: {one_line(exc)}") from exc
    if not payload:
        raise ValueError(f"access unit {index} is empty")
    if duration < 0:
        raise ValueError(f"access unit {index} has a negative duration")
    return Packet(payload, pts, duration)


def write_mkv(
    path: str,
    header: bytes,
    packets: Iterable[Packet],
    info: VideoInfo,
    tags: dict[str, str],
    copy_from: str | None = None,
    *,
    overwrite: bool = True,
    copy_window: tuple[Fraction, Fraction | None] | None = None,
) -> int:
    """Write an NVC stream into a Matroska file (atomically), or as streamable Matroska to standard output.

    Args:
        path: output ``.mkv`` path, or ``"-"`` for standard output (no Duration, sizes unknown, Cues last).
        header: the stream's global header (CodecPrivate, after the BITMAPINFOHEADER).
        packets: access units in increasing pts order, one Matroska block each (at least one); consumed lazily,
            so the caller can encode while this writes.
        info: the clip (its ``time_base`` is the unit of the packets' pts/duration; ``fps`` is stored too; size,
            colour description and rotation go to the track's Video element).
        tags: stream tags (strings). ``NVC_CODEC`` (default ``"nvc"``) and ``title`` (default
            ``"NVC video (<codec>)"``) are added when missing. Names starting with ``NVC_MUX_`` are reserved.
        copy_from: a media file whose audio and subtitle streams are all copied byte for byte (an NVC MKV's own
            track is skipped and its clock offset undone); ``None`` for none. A stream of a codec Matroska cannot
            carry here is dropped with one warning line.
        copy_window: ``(start, end)`` in ``copy_from``'s seconds: copy only the packets in it, moved back by
            ``start`` (the frames were cut by ``-ss``/``-t``/``-frames:v`` and start at 0); ``None`` = all.
        overwrite: replace an existing ``path``; when false, a file that appeared while this was writing (another
            encode) is an ``OutputError`` at the final rename and stays untouched.

    Returns:
        The number of bytes written.

    Raises:
        OutputError: the file cannot be written (no partial file is left), or exists and ``overwrite`` is false.
        InputError: ``copy_from`` cannot be read.
        ConfigError: bad tags.
        ValueError: no packets, or packets that are not access units (empty payload, pts going backwards).
    """
    header = bytes(header or b"")
    user_tags = check_tags(tags)
    stream_tags = dict(user_tags)
    codec = tag_value(stream_tags, TAG_CODEC)
    if codec is None:
        codec = "nvc"
        stream_tags[TAG_CODEC] = codec
    if tag_value(stream_tags, "title") is None:
        stream_tags["title"] = f"NVC video ({codec})"
    keys = list(stream_tags)
    source_iter = iter(packets)
    first = next(source_iter, None)
    if first is None:
        raise ValueError(f"no access units to write to {path}")
    first_packet = _as_packet(first, 0)
    stream_tags.update(
        {
            TAG_VERSION: MUX_VERSION,
            TAG_TIME_BASE: f"{info.time_base.numerator}/{info.time_base.denominator}",
            TAG_FPS: f"{info.fps.numerator}/{info.fps.denominator}",
            TAG_PTS0: str(first_packet.pts),
            TAG_KEYS: json.dumps(keys, ensure_ascii=False, separators=(",", ":")),
        }
    )
    source = None
    try:
        if copy_from is not None:
            source = open_input(copy_from, "audio source")
        if path == "-":  # a pipe: streamable Matroska (unknown sizes, nothing patched), not atomic
            out = _CountingWriter(sys.stdout.buffer)
            try:
                _write(out, "standard output", header, first_packet, source_iter, info, stream_tags, source,
                       copy_from, copy_window)
                out.flush()
            except BrokenPipeError as exc:
                raise OutputError("standard output closed by the reader (broken pipe)") from exc
            return out.written
        with atomic_output(path, overwrite=overwrite) as tmp:
            try:
                f = open(tmp, "wb")
            except OSError as exc:
                raise OutputError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc
            with f:
                _write(f, path, header, first_packet, source_iter, info, stream_tags, source, copy_from,
                       copy_window)
                written = f.tell()
        return written
    finally:
        if source is not None:
            source.close()


class _CountingWriter:
    """A non-seekable binary writer that counts what it writes (standard output)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.written = 0

    def write(self, data: bytes) -> int:
        self._stream.write(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        self._stream.flush()

    @staticmethod
    def seekable() -> bool:
        return False


def bitmapinfoheader(width: int, height: int, extra: bytes) -> bytes:
    """The VfW CodecPrivate: a 40-byte BITMAPINFOHEADER with FourCC ``NVC1``, then ``extra`` (the NVC header)."""
    size_image = min(width * height * 3, 0xFFFFFFFF)
    return _BIH.pack(_BIH.size + len(extra), width, height, 1, 24, int.from_bytes(FOURCC, "little"), size_image,
                     0, 0, 0, 0) + extra


def video_track(info: VideoInfo, header: bytes, stream_tags: dict[str, str]) -> TrackSpec:
    """Our track: VfW CodecPrivate, Video element (size, colour, rotation), DefaultDuration, tags."""
    depth, cw, ch = info.bit_depth, *info.chroma_shift
    colour = [E.uint(0x55B1, 0 if info.family == "rgb" else _MATRIX.get(info.colorspace, 2)),
              E.uint(0x55B2, depth), E.uint(0x55B9, 2 if info.color_range == "pc" else 1)]
    if info.family == "yuv":
        colour += [E.uint(0x55B3, cw), E.uint(0x55B4, ch)]
    colour += [E.uint(0x55BA, info.color_trc), E.uint(0x55BB, info.color_primaries)]
    video = [E.uint(0x9A, 1 if info.interlaced else 2), E.uint(0xB0, info.width), E.uint(0xBA, info.height),
             E.uint(0x54B0, info.width), E.uint(0x54BA, info.height), E.uint(0x54B2, 0), E.master(0x55B0, *colour)]
    if info.rotation:
        # Matroska's roll is counter-clockwise like FFmpeg's display matrix angle.
        video.append(E.master(0x7670, E.uint(0x7671, 0), E.double(0x7675, float(info.rotation))))
    title = tag_value(stream_tags, "title") or "NVC video"
    frame_ns = round(Fraction(1_000_000_000) / info.fps)
    entry = [E.string(0x536E, title), E.string(0x22B59C, "und"), E.uint(0x88, 1), E.string(0x258688, "NVC"),
             E.uint(0x23E383, frame_ns), E.master(0xE0, *video)]
    tags = {k: v for k, v in stream_tags.items() if k.lower() != "title"}
    return TrackSpec("video", CODEC_ID, bitmapinfoheader(info.width, info.height, header), entry, tags)


def _write(
    f: BinaryIO,
    path: str,
    header: bytes,
    first: Packet,
    rest: Iterator[Any],
    info: VideoInfo,
    stream_tags: dict[str, str],
    source: Any,
    source_name: str | None,
    window: tuple[Fraction, Fraction | None] | None = None,
) -> None:
    tracks = [video_track(info, header, stream_tags)]
    mapping: dict[int, int] = {}
    pump = None
    shift = Fraction(0)
    tb = info.time_base
    if source is not None:
        for stream in source.streams:
            if stream.type not in ("audio", "subtitle") or is_nvc_stream(stream):
                continue
            spec, why = track_for(stream)
            if spec is None:
                log.warning("%s: %s stream %d not copied: %s", source_name, stream.type, stream.index, why)
                continue
            tracks.append(spec)
            mapping[stream.index] = len(tracks)
        offset = source_offset(str(source_name))
        pump = PacketPump(source, mapping, None, offset, str(source_name),
                          emit=lambda p, number: _copy(writer, p, number, shift), window=window)
        earliest = pump.first_time()
        if earliest is not None:
            shift = max(Fraction(0), -earliest)
    shift = max(shift, -first.pts * tb)  # Matroska times are >= 0: every track moves by the same amount
    writer = MatroskaWriter(f, tracks, f"nvc-pipe {__version__}", cue_track=1, seekable=f.seekable())
    try:
        writer.start()
        last_pts: int | None = None
        index = 0
        packet: Packet | None = first
        while packet is not None:
            if last_pts is not None and packet.pts < last_pts:
                raise ValueError(f"access unit {index} goes back in time ({packet.pts} < {last_pts})")
            last_pts = packet.pts
            if pump is not None:
                pump.until(packet.pts * tb)
            writer.block(1, packet.pts * tb + shift, packet.payload, True, packet.duration * tb)
            index += 1
            nxt = next(rest, None)
            packet = _as_packet(nxt, index) if nxt is not None else None
        if pump is not None:
            pump.until(None)
        writer.finish()
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or one_line(exc)}") from exc


def _copy(writer: MatroskaWriter, packet: Any, track: int, shift: Fraction) -> None:
    """One stream-copied packet into ``writer``: bytes as they are, time = pts (else dts) + ``shift``."""
    ts = packet.pts if packet.pts is not None else packet.dts
    tb = to_fraction(packet.time_base)
    if ts is None or tb is None:
        return
    t = ts * tb + shift
    if t < 0:
        t = Fraction(0)
    duration = packet.duration * tb if packet.duration else None
    writer.block(track, t, bytes(packet), bool(packet.is_keyframe), duration)


# ---------------------------------------------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------------------------------------------


def nvc_track(mkv: MatroskaFile) -> Track | None:
    """The NVC track of a parsed Matroska file: a video track ``V_MS/VFW/FOURCC`` with FourCC ``NVC1``."""
    for track in mkv.tracks:
        cp = track.codec_private
        if track.type == 1 and track.codec_id == CODEC_ID and len(cp) >= _BIH.size and cp[16:20] == FOURCC:
            return track
    return None


def _vfw_extra(codec_private: bytes) -> bytes:
    """The bytes after the BITMAPINFOHEADER, ``biSize - 40`` of them (FFmpeg pads odd ones with a zero byte)."""
    bi_size = int.from_bytes(codec_private[:4], "little")
    if _BIH.size <= bi_size <= len(codec_private):
        return codec_private[_BIH.size:bi_size]
    return codec_private[_BIH.size:]


def _open_new(path: str) -> tuple[BinaryIO, MatroskaFile, Track] | None:
    """Our own reader on ``path`` when it is a Matroska file with an NVC1 track; ``None`` for anything else."""
    if not os.path.isfile(path):
        return None
    try:
        f = open(path, "rb")
    except OSError:
        return None
    try:
        mkv = open_matroska(f)
        track = nvc_track(mkv)
    except MatroskaError as exc:
        f.close()
        if str(exc).startswith("not a Matroska file"):
            return None
        raise BitstreamError(f"corrupt or truncated MKV {path}: {exc}") from exc
    except BaseException:
        f.close()
        raise
    if track is None:
        f.close()
        return None
    return f, mkv, track


def _track_meta(track: Track) -> dict[str, str]:
    meta = dict(track.tags)
    if track.name and tag_value(meta, "title") is None:
        meta["title"] = track.name
    return meta


def read_mkv(path: str) -> tuple[bytes, dict[str, str], Iterator[Packet]]:
    """Read an NVC stream written by :func:`write_mkv` (or a remux of one, or a file of an earlier version).

    Returns:
        ``(header, tags, packets)``: the sequence header bytes (CodecPrivate after the BITMAPINFOHEADER), the
        stream tags as written (original key spelling, container-added tags such as ``DURATION`` removed), and a
        lazy iterator of :class:`Packet` with pts and durations back in the original time base. The file stays
        open until the iterator is exhausted or closed.

    Raises:
        InputError: the file does not exist.
        BitstreamError: not a readable Matroska file, no NVC track (``"no NVC stream in X"``), bad NVC tags;
            while iterating: corrupt or truncated data.
    """
    path = os.fspath(path)
    opened = _open_new(path)
    if opened is None:
        return read_legacy(path)
    f, mkv, track = opened
    try:
        meta = _track_meta(track)
        tb, fps, pts0 = mux_params(meta, path)
        header = _vfw_extra(track.codec_private)
        tags = original_tags(meta)
    except BaseException:
        f.close()
        raise
    return header, tags, _read_blocks(f, mkv, track, path, tb, fps, pts0)


def _read_blocks(f: BinaryIO, mkv: MatroskaFile, track: Track, path: str, tb: Fraction, fps: Fraction | None,
                 pts0: int) -> Iterator[Packet]:
    """Packets of our track. A block without BlockDuration (an ffmpeg remux) lasts until the next one; the last
    such block lasts one frame (DefaultDuration)."""
    step = (1 / (fps * tb)) if fps else None
    unit = Fraction(mkv.timestamp_scale, 1_000_000_000)
    first_t: Fraction | None = None
    pending: tuple[Fraction, Fraction | None, bytes] | None = None

    def packet(t: Fraction, duration: Fraction, data: bytes) -> Packet:
        return Packet(data, pts0 + snap_to_grid((t - first_t) / tb, step, tb), snap_to_grid(duration / tb, step, tb))

    try:
        for block in mkv.blocks(track.number):
            t = block.time * unit
            if first_t is None:
                first_t = t
            if pending is not None:
                pt, pd, pdata = pending
                yield packet(pt, pd if pd is not None else t - pt, pdata)
            pending = (t, block.duration * unit if block.duration else None, block.data)
        if pending is not None:
            pt, pd, pdata = pending
            yield packet(pt, pd if pd is not None else Fraction(track.default_duration, 1_000_000_000), pdata)
    except MatroskaError as exc:
        raise BitstreamError(f"corrupt or truncated MKV {path}: {exc}") from exc
    except OSError as exc:
        raise BitstreamError(f"cannot read {path}: {one_line(exc)}") from exc
    finally:
        f.close()


def with_track_metadata(info: VideoInfo, path: str) -> VideoInfo:
    """``info`` with the colour primaries, transfer, rotation and interlaced flag of the MKV's NVC track.

    The sequence header holds size, layout, matrix and range; these four live in the track (§6 of
    docs/bitstream.md). A file of an earlier version, or one without them, leaves ``info`` as it is.
    """
    opened = _open_new(os.fspath(path))
    if opened is None:
        return info
    f, _mkv, track = opened
    f.close()
    return replace(info, color_primaries=track.primaries if 0 <= track.primaries <= 255 else 2,
                   color_trc=track.transfer if 0 <= track.transfer <= 255 else 2,
                   rotation=round(track.roll) % 360 if abs(track.roll) < 1e6 else 0,
                   interlaced=track.interlaced == 1)


def carrier_offset(path: str) -> Fraction | None:
    """Seconds by which the clock of an NVC MKV leads the original clock (``None`` if it has no NVC track).

    Subtract it from the timestamps of streams copied out of that file to keep them in sync with frames timed by
    the original pts (what :func:`read_mkv` returns).
    """
    path = os.fspath(path)
    opened = _open_new(path)
    if opened is None:
        return legacy_offset(path)
    f, mkv, track = opened
    try:
        tb, _, pts0 = mux_params(_track_meta(track), path)
        for block in mkv.blocks(track.number):
            return block.time * Fraction(mkv.timestamp_scale, 1_000_000_000) - pts0 * tb
        return Fraction(0)
    except MatroskaError as exc:
        raise BitstreamError(f"corrupt or truncated MKV {path}: {exc}") from exc
    finally:
        f.close()


def source_offset(path: str) -> Fraction:
    """:func:`carrier_offset` for any media file: 0 when it is not an NVC MKV (or cannot tell)."""
    try:
        return carrier_offset(path) or Fraction(0)
    except BitstreamError:
        open_input(path, "audio source").close()  # a missing/unreadable file is an InputError
        return Fraction(0)
