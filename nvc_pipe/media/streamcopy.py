"""Stream copy with PyAV: open an input, copy its audio/subtitle streams into an output, interleave their packets.

Used by the MKV writer (the source's audio beside the NVC track) and by the decoded-video sinks (the original audio
beside the decoded frames). Packets are copied byte for byte; only timestamps may be shifted by a known offset.
"""

from __future__ import annotations

import logging
import os
from fractions import Fraction
from typing import Any, Callable, Iterator

import av

from ..errors import InputError, one_line
from .clip import to_fraction

log = logging.getLogger(__name__)


def open_input(path: str, what: str = "input", unreadable: Callable[[str], Exception] | None = None) -> Any:
    """Open a media file with PyAV, turning failures into one-line errors.

    ``unreadable(reason)`` builds the error for a file that exists but FFmpeg cannot open (default: an
    ``InputError`` naming ``what``); the MKV reader turns it into a ``BitstreamError``.

    Raises:
        InputError: missing file, directory, or (by default) a file FFmpeg cannot open.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"cannot open {what} {path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"cannot open {what} {path}: is a directory")
    try:
        return av.open(path)
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        reason = one_line(exc)
        raise (unreadable(reason) if unreadable else InputError(f"cannot open {what} {path}: {reason}")) from exc


def packet_time(packet: Any) -> Fraction | None:
    """Decode-order time of a demuxed packet in seconds (dts, else pts), or ``None`` when it has neither."""
    ts = packet.dts if packet.dts is not None else packet.pts
    tb = to_fraction(packet.time_base)
    if ts is None or tb is None:
        return None
    return ts * tb


def format_accepts(container: Any, codec_name: str) -> bool:
    """Whether an output container can hold a stream copy of ``codec_name``.

    Matroska takes every codec it has an id for, but PyAV's ``supported_codecs`` lists only some of them (not
    ``dvb_subtitle``, ``hdmv_pgs_subtitle``...), so for Matroska anything is tried; other formats are asked.
    """
    if str(getattr(container.format, "name", "")) == "matroska":
        return True
    try:
        return codec_name in container.supported_codecs
    except (AttributeError, av.FFmpegError):  # pragma: no cover - PyAV without supported_codecs
        return True


def copy_streams(source: Any, output: Any, *, skip: Callable[[Any], bool] | None = None,
                 label: str = "") -> dict[int, Any]:
    """Add a stream-copy output stream for every audio and subtitle stream of ``source`` that ``output`` can hold.

    Streams for which ``skip(stream)`` is true are left out; streams the output format cannot hold are skipped
    with a warning. Stream tags (language, title...) and the
    disposition are copied too.

    Returns:
        ``{source stream index: output stream}``.
    """
    mapping: dict[int, Any] = {}
    for stream in source.streams:
        if stream.type not in ("audio", "subtitle"):
            continue
        if skip is not None and skip(stream):
            continue
        codec = getattr(getattr(stream, "codec_context", None), "name", None) or "?"
        try:
            codec_id_name = stream.codec_context.codec.name if stream.codec_context is not None else codec
        except (AttributeError, av.FFmpegError):
            codec_id_name = codec
        if not (format_accepts(output, codec) or format_accepts(output, codec_id_name)):
            log.warning("%s: %s stream %d (%s) cannot go into %s; dropped", label, stream.type, stream.index, codec,
                        output.format.name)
            continue
        try:
            out = output.add_stream_from_template(stream)
        except (ValueError, TypeError, av.FFmpegError) as exc:
            log.warning("%s: cannot copy %s stream %d (%s): %s; dropped", label, stream.type, stream.index, codec,
                        one_line(exc))
            continue
        for key, value in stream.metadata.items():
            if str(key).upper() not in ("DURATION", "ENCODER") and not str(key).upper().startswith("_STATISTICS"):
                out.metadata[key] = value
        try:
            out.disposition = stream.disposition
        except (AttributeError, TypeError, ValueError):  # pragma: no cover - PyAV without dispositions
            pass
        mapping[stream.index] = out
    return mapping


class PacketPump:
    """Feeds stream-copied packets into an output, interleaved by time with what the caller writes.

    ``offset`` (seconds) is subtracted from every copied timestamp: the lead that a carrier MKV's clock has over the
    original clock (see :func:`carrier_offset`), 0 for an ordinary source. Packets go to ``output.mux`` with
    ``packet.stream`` set to the mapped stream, or, when ``emit`` is given, to ``emit(packet, mapped value)``.
    """

    def __init__(self, source: Any, mapping: dict[int, Any], output: Any, offset: Fraction, label: str,
                 emit: Callable[[Any, Any], None] | None = None,
                 window: tuple[Fraction, Fraction | None] | None = None) -> None:
        self._output = output
        self._emit = emit
        self._mapping = mapping
        # ``window`` (seconds, after ``offset``): copy only packets inside it, and start the clock at its start.
        self._start = window[0] if window else Fraction(0)
        self._end = window[1] if window else None
        self._clock = offset  # source clock -> original clock
        self._offset = offset + self._start
        self._label = label
        self._pending: Any = None
        self._iter = self._packets(source) if mapping else iter(())

    def _packets(self, source: Any) -> Iterator[Any]:
        streams = [s for s in source.streams if s.index in self._mapping]
        try:
            for packet in source.demux(streams):
                if packet.dts is None and packet.pts is None:
                    continue  # demux() ends every stream with an empty flush packet
                if self._start or self._end is not None:
                    t = packet_time(packet)
                    if t is not None and not self._inside(t - self._clock, packet):
                        continue
                yield packet
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read {self._label}: {one_line(exc)}") from exc

    def _inside(self, t: Fraction, packet: Any) -> bool:
        """Whether a packet at ``t`` (original clock) belongs to the window: it ends after the start (when there
        is a start) and begins before the end."""
        tb = to_fraction(packet.time_base) or Fraction(0)
        if self._start and t + (packet.duration or 0) * tb <= self._start:
            return False
        return self._end is None or t < self._end

    def _mux(self, packet: Any) -> None:
        out = self._mapping[packet.stream.index]
        if self._offset:
            tb = to_fraction(packet.time_base)
            shift = round(self._offset / tb) if tb else 0
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
        if self._emit is not None:
            self._emit(packet, out)
            return
        packet.stream = out
        self._output.mux(packet)

    def first_time(self) -> Fraction | None:
        """Time (seconds, offset removed) of the first packet still to come, without consuming it."""
        if self._pending is None:
            self._pending = next(self._iter, None)
        if self._pending is None:
            return None
        t = packet_time(self._pending)
        return None if t is None else t - self._offset

    def until(self, seconds: Fraction | None) -> None:
        """Mux every pending packet whose time is <= ``seconds`` (everything when ``None``)."""
        while True:
            if self._pending is None:
                self._pending = next(self._iter, None)
                if self._pending is None:
                    return
            t = packet_time(self._pending)
            if seconds is not None and t is not None and t - self._offset > seconds:
                return
            packet, self._pending = self._pending, None
            self._mux(packet)
