"""The NVC elementary stream in Matroska.

This module carries bytes it does not interpret: the stream's global header goes to the track's CodecPrivate,
each access unit (one segment) is one Matroska block, and every audio and subtitle stream of the source is copied
byte for byte beside it. What is inside the header and the access units is ``nvc_pipe.bitstream``'s business.

Carrier: a ``dvb_subtitle`` track (Matroska ``S_DVBSUB``)
---------------------------------------------------------
Matroska accepts only audio, video and subtitle tracks, and PyAV can only write codec ids the Matroska muxer knows
natively (data streams, ``bin_data`` and custom FourCCs are refused; see shared/reference/io_building_blocks.md §2).
The requirements were: ffprobe lists every stream without errors, ``ffmpeg -map 0 -c copy`` keeps our track byte
exact with its timestamps, the tags name the codec, and no tool may decode our track as another codec into garbage
pictures. A fake video track (msmpeg4v3, the notes' first pick) fails the last point: any transcode would decode it
into garbage frames. A DVB subtitle track meets all of them:

* it has a decoder *and* an encoder in FFmpeg, so the stream has a codec context: ``codec_context.extradata`` is
  written to CodecPrivate and read back exactly, and PyAV's ``add_stream_from_template`` can remux it;
* FFmpeg's dvbsub decoder rejects any packet whose first byte is not the DVB sync byte ``0x0f``
  (``AVERROR_INVALIDDATA``), and NVC access units start with the box type ``AU01``; nothing is ever drawn.
  ``ffmpeg -i x.mkv out.mkv`` does not even map the track (bitmap subtitles cannot become the default text codec);
  ``-map 0`` to mp4 stops with "Automatic encoder selection failed" instead of writing something wrong;
* Matroska subtitle blocks lose keyframe flags (all blocks are key), which does not matter: every access unit is
  self-contained.

Measured with Debian ffmpeg/ffprobe 5.1.9, PyAV 18.1 (FFmpeg 8.1) and PyAV 19.0.2 (FFmpeg 9.0), payloads of random
bytes with ``00 00 01``, ``00 00 01 b3`` and ``0x0f`` planted at the start, middle and end, a 50-byte header, AAC
audio copied from an mp4 (tests/test_mux.py repeats all of it):

* ``ffprobe -v error`` prints nothing; ``ffprobe`` shows ``Subtitle: dvb_subtitle`` with ``title``/``NVC_CODEC``;
* ``ffmpeg -i x.mkv -map 0 -c copy re.mkv``: header, payloads, pts, durations and tags identical after
  :func:`read_mkv`; every AAC packet byte-identical with identical timestamps;
* PyAV remux (``add_stream_from_template`` for every stream) keeps the same;
* decoding our track with FFmpeg (``-c:s dvb_subtitle`` transcode, PyAV ``decode``) yields errors and no subtitle.

Not used: a copy of the header as an attachment. CodecPrivate already survives every remux that keeps the track,
and an ``application/octet-stream`` attachment makes ffmpeg/ffprobe 5.1 warn "Could not find codec parameters for
stream N (Attachment: none): unknown codec" on every open.

Timestamps
----------
Matroska stores milliseconds. The muxer also shifts all tracks when the copied audio starts before zero (AAC
priming), and FFmpeg versions disagree on whether a subtitle track is shifted with the others (FFmpeg 8.1 moves
our first block to 21 ms, 9.0 leaves it at 0). So the exact original timing travels in stream tags: the time base
(``NVC_MUX_TIME_BASE``), the frame rate (``NVC_MUX_FPS``) and the pts of the first packet (``NVC_MUX_PTS0``).
:func:`read_mkv` rebuilds ``pts = PTS0 + (t - t_first)`` in the original time base, snapping to the nominal frame
grid when the stored millisecond is within 1 ms of a grid point. That is exact whenever the time base is 1 ms or
coarser or the packets lie on the frame grid (always, for segments of a constant-rate clip); otherwise it is exact
to the millisecond. :func:`carrier_offset` gives the shift between the file's clock and the original one, for
putting copied audio back in sync.

Tags: Matroska upper-cases tag names (``title`` is the track name and stays ``title``); the original spelling of
every user tag is kept in ``NVC_MUX_KEYS`` so :func:`read_mkv` returns the dict that was written.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Iterator

import av

from ..errors import BitstreamError, ConfigError, OutputError, one_line
from .atomic import atomic_output
from .clip import VideoInfo, to_fraction
from .streamcopy import PacketPump, copy_streams, open_input, packet_time

log = logging.getLogger(__name__)

CARRIER_CODEC = "dvb_subtitle"
TAG_CODEC = "NVC_CODEC"
MUX_VERSION = "1"
_TAG_VERSION = "NVC_MUX_VERSION"
_TAG_TIME_BASE = "NVC_MUX_TIME_BASE"
_TAG_FPS = "NVC_MUX_FPS"
_TAG_PTS0 = "NVC_MUX_PTS0"
_TAG_KEYS = "NVC_MUX_KEYS"
_RESERVED_PREFIX = "NVC_MUX_"
_DVB_SYNC_BYTE = 0x0F
_SNAP_TOLERANCE = Fraction(1, 1000)  # seconds


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



# ---------------------------------------------------------------------------------------------------------------
# the carrier track
# ---------------------------------------------------------------------------------------------------------------
def is_nvc_stream(stream: Any) -> bool:
    """True when a PyAV stream is an NVC carrier track (it has an ``NVC_CODEC`` tag)."""
    try:
        return any(str(k).upper() == TAG_CODEC for k in stream.metadata)
    except (AttributeError, av.FFmpegError):  # pragma: no cover
        return False


def _find_nvc(container: Any, path: str) -> Any:
    for stream in container.streams:
        if is_nvc_stream(stream):
            return stream
    raise BitstreamError(f"no NVC stream in {path}")


def _tag(meta: dict[str, str], key: str) -> str | None:
    for k, v in meta.items():
        if str(k).upper() == key.upper():
            return v
    return None


_RATIONAL = re.compile(r"-?\d{1,18}(/\d{1,18})?")


def _rational(text: str) -> Fraction:
    """A tag value "N" or "N/D" with at most 18 digits each (never `Fraction("1e99999999")`, which hangs)."""
    if not _RATIONAL.fullmatch(text.strip()):
        raise ValueError(f"not a small rational: {text[:40]!r}")
    return Fraction(text.strip())


def _mux_params(meta: dict[str, str], path: str) -> tuple[Fraction, Fraction | None, int]:
    try:
        tb = _rational(_tag(meta, _TAG_TIME_BASE) or "1/1000")
        fps_text = _tag(meta, _TAG_FPS)
        fps = _rational(fps_text) if fps_text else None
        pts0 = int(_rational(_tag(meta, _TAG_PTS0) or "0"))
    except (ValueError, ZeroDivisionError) as exc:
        raise BitstreamError(f"bad NVC track tags in {path}: {one_line(exc)}") from exc
    if tb <= 0 or (fps is not None and fps <= 0):
        raise BitstreamError(f"bad NVC track tags in {path}: time base {tb}, fps {fps}")
    return tb, fps, pts0


def _open_mkv(path: str) -> Any:
    path = os.fspath(path)
    return open_input(path, "input", lambda reason: BitstreamError(
        f"cannot read {path}: not a readable Matroska file ({reason})"))


def carrier_offset(path: str) -> Fraction | None:
    """Seconds by which the clock of an NVC MKV leads the original clock (``None`` if it has no NVC track).

    Subtract it from the timestamps of streams copied out of that file to keep them in sync with frames timed by
    the original pts (what :func:`read_mkv` returns).
    """
    container = _open_mkv(path)
    try:
        return _carrier_offset(container, path)
    finally:
        container.close()


def source_offset(path: str) -> Fraction:
    """:func:`carrier_offset` for any media file: 0 when it is not an NVC MKV (or cannot tell)."""
    container = open_input(path, "audio source")
    try:
        return _carrier_offset(container, path) or Fraction(0)
    finally:
        container.close()


def _carrier_offset(container: Any, path: str) -> Fraction | None:
    try:
        stream = _find_nvc(container, path)
    except BitstreamError:
        return None
    tb, _, pts0 = _mux_params(dict(stream.metadata), path)
    try:
        for packet in container.demux(stream):
            t = packet_time(packet) if packet.size else None
            if t is not None:
                return t - pts0 * tb
    except (av.FFmpegError, OSError) as exc:
        raise BitstreamError(f"corrupt or truncated MKV {path}: {one_line(exc)}") from exc
    return Fraction(0)


# ---------------------------------------------------------------------------------------------------------------
# write
# ---------------------------------------------------------------------------------------------------------------
def _check_tags(tags: dict[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    seen: set[str] = set()
    for key, value in (tags or {}).items():
        if not isinstance(key, str) or not key or any(c in key for c in "=\n\r\0") or not key.isprintable():
            raise ConfigError(f"bad tag name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"tag {key} must be a string without NUL bytes")
        if key.upper().startswith(_RESERVED_PREFIX):
            raise ConfigError(f"tag names starting with {_RESERVED_PREFIX} are reserved ({key})")
        if key.upper() in seen:
            raise ConfigError(f"tag {key} given twice (Matroska tag names ignore case)")
        seen.add(key.upper())
        out[key] = value
    return out


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
) -> None:
    """Write an NVC stream into a Matroska file (atomically).

    Args:
        path: output ``.mkv`` path.
        header: the stream's global header (CodecPrivate).
        packets: access units in increasing pts order, one Matroska block each (at least one); consumed lazily,
            so the caller can encode while this writes.
        info: the clip (its ``time_base`` is the unit of the packets' pts/duration; ``fps`` is stored too).
        tags: stream tags (strings). ``NVC_CODEC`` (default ``"nvc"``) and ``title`` (default
            ``"NVC video (<codec>)"``) are added when missing. Names starting with ``NVC_MUX_`` are reserved.
        copy_from: a media file whose audio and subtitle streams are all copied byte for byte (an NVC MKV's own
            carrier track is skipped and its clock offset undone); ``None`` for none.

    Raises:
        OutputError: the file cannot be written (no partial file is left).
        InputError: ``copy_from`` cannot be read.
        ConfigError: bad tags.
        ValueError: no packets, or packets that are not access units (empty payload, pts going backwards).
    """
    header = bytes(header or b"")
    user_tags = _check_tags(tags)
    stream_tags = dict(user_tags)
    codec = _tag(stream_tags, TAG_CODEC)
    if codec is None:
        codec = "nvc"
        stream_tags[TAG_CODEC] = codec
    if _tag(stream_tags, "title") is None:
        stream_tags["title"] = f"NVC video ({codec})"
    keys = list(stream_tags)
    source_iter = iter(packets)
    first = next(source_iter, None)
    if first is None:
        raise ValueError(f"no access units to write to {path}")
    first_packet = _as_packet(first, 0)
    stream_tags.update(
        {
            _TAG_VERSION: MUX_VERSION,
            _TAG_TIME_BASE: f"{info.time_base.numerator}/{info.time_base.denominator}",
            _TAG_FPS: f"{info.fps.numerator}/{info.fps.denominator}",
            _TAG_PTS0: str(first_packet.pts),
            _TAG_KEYS: json.dumps(keys, ensure_ascii=False, separators=(",", ":")),
        }
    )
    source = None
    try:
        if copy_from is not None:
            source = open_input(copy_from, "audio source")
        with atomic_output(path) as tmp:
            _write(tmp, path, header, first_packet, source_iter, info, stream_tags, source, copy_from)
    finally:
        if source is not None:
            source.close()


def _write(
    tmp: str,
    path: str,
    header: bytes,
    first: Packet,
    rest: Iterator[Any],
    info: VideoInfo,
    stream_tags: dict[str, str],
    source: Any,
    source_name: str | None,
) -> None:
    try:
        output = av.open(tmp, "w", format="matroska", container_options={"fflags": "+bitexact"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc
    try:
        try:
            stream = output.add_stream(CARRIER_CODEC)
            if header:
                stream.codec_context.extradata = header
            for key, value in stream_tags.items():
                stream.metadata[key] = value
        except (av.FFmpegError, ValueError, TypeError) as exc:
            raise OutputError(f"cannot set up the NVC track of {path}: {one_line(exc)}") from exc
        pump = None
        if source is not None:
            mapping = copy_streams(source, output, skip=is_nvc_stream, label=str(source_name))
            offset = source_offset(str(source_name))
            pump = PacketPump(source, mapping, output, offset, str(source_name))
        try:
            output.start_encoding()  # writes the header now, so an empty stream is still a valid file
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc
        tb = info.time_base
        last_pts: int | None = None
        warned = False
        index = 0
        packet: Packet | None = first
        while packet is not None:
            if last_pts is not None and packet.pts < last_pts:
                raise ValueError(f"access unit {index} goes back in time ({packet.pts} < {last_pts})")
            last_pts = packet.pts
            if packet.payload[0] == _DVB_SYNC_BYTE and not warned:
                log.warning("access unit %d starts with 0x0f, the DVB sync byte; a dvbsub decoder may try it", index)
                warned = True
            if pump is not None:
                pump.until(packet.pts * tb)
            av_packet = av.Packet(packet.payload)
            av_packet.stream = stream
            av_packet.time_base = tb
            av_packet.pts = av_packet.dts = packet.pts
            av_packet.duration = packet.duration
            try:
                output.mux(av_packet)
            except (av.FFmpegError, OSError, ValueError) as exc:
                raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc
            index += 1
            nxt = next(rest, None)
            packet = _as_packet(nxt, index) if nxt is not None else None
        if pump is not None:
            pump.until(None)
        try:
            output.close()
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc
    except BaseException:
        try:
            output.close()
        except Exception:  # noqa: BLE001 - already failing; the temp file is removed by atomic_output
            pass
        raise


# ---------------------------------------------------------------------------------------------------------------
# read
# ---------------------------------------------------------------------------------------------------------------
def _snap(value: Fraction, step: Fraction | None, tb: Fraction) -> int:
    """Nearest int to ``value`` (in time-base units), or the nearest frame-grid point when within 1 ms of it."""
    if step:
        grid = round(round(value / step) * step)
        if abs(grid - value) * tb <= _SNAP_TOLERANCE:
            return int(grid)
    return int(round(value))


def _parse_duration(text: str | None) -> Fraction | None:
    """Seconds of a Matroska ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``), ``None`` if absent or unreadable."""
    if not text:
        return None
    m = re.fullmatch(r"(\d{1,9}):(\d{1,2}):(\d{1,2}(?:\.\d{1,12})?)", str(text).strip())
    if not m:
        return None
    return int(m[1]) * 3600 + int(m[2]) * 60 + Fraction(m[3])


def read_mkv(path: str) -> tuple[bytes, dict[str, str], Iterator[Packet]]:
    """Read an NVC stream written by :func:`write_mkv` (or a remux of one).

    Returns:
        ``(header, tags, packets)``: the CodecPrivate bytes, the stream tags as written (original key spelling,
        container-added tags such as ``DURATION`` removed), and a lazy iterator of :class:`Packet` with pts and
        durations back in the original time base. The file stays open until the iterator is exhausted or closed.

    Raises:
        InputError: the file does not exist.
        BitstreamError: not a readable Matroska file, no NVC track (``"no NVC stream in X"``), bad NVC tags;
            while iterating: corrupt or truncated data.
    """
    path = os.fspath(path)
    container = _open_mkv(path)
    try:
        stream = _find_nvc(container, path)
        meta = {str(k): str(v) for k, v in stream.metadata.items()}
        tb, fps, pts0 = _mux_params(meta, path)
        header = bytes(stream.codec_context.extradata or b"") if stream.codec_context is not None else b""
        tags = _user_tags(meta)
    except BaseException:
        container.close()
        raise
    return header, tags, _read_packets(container, stream, path, tb, fps, pts0)


def _user_tags(meta: dict[str, str]) -> dict[str, str]:
    keys_text = _tag(meta, _TAG_KEYS)
    try:
        keys = json.loads(keys_text) if keys_text else None
    except (ValueError, RecursionError):
        keys = None
    if isinstance(keys, list):
        return {str(k): (_tag(meta, str(k)) or "") for k in keys}
    return {k: v for k, v in meta.items() if not k.upper().startswith(_RESERVED_PREFIX) and k.upper() != "DURATION"}


def _read_packets(
    container: Any, stream: Any, path: str, tb: Fraction, fps: Fraction | None, pts0: int
) -> Iterator[Packet]:
    step = (1 / (fps * tb)) if fps else None
    first_t: Fraction | None = None
    last_end: Fraction | None = None
    expected_end = _parse_duration(_tag({str(k): str(v) for k, v in stream.metadata.items()}, "DURATION"))
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
            pts = pts0 + _snap((t - first_t) / tb, step, tb)
            duration = _snap((packet.duration or 0) * ptb / tb, step, tb)
            last_end = t + (packet.duration or 0) * ptb
            yield Packet(bytes(packet), pts, duration)
        # A Matroska file cut short still has its header, where the muxer wrote the track's DURATION tag at close;
        # the demuxer silently drops a partial cluster, so compare.
        if expected_end is not None and (last_end or Fraction(0)) < expected_end - _SNAP_TOLERANCE:
            ends = "has no NVC block" if last_end is None else f"ends at {float(last_end):.3f} s"
            raise BitstreamError(
                f"truncated MKV {path}: the NVC track {ends}, its header says {float(expected_end):.3f} s"
            )
    except (av.FFmpegError, OSError, EOFError) as exc:
        raise BitstreamError(f"corrupt or truncated MKV {path}: {one_line(exc)}") from exc
    finally:
        container.close()
