"""A small Matroska writer: EBML header, Segment, SeekHead, Info, Tracks, Tags, Clusters of blocks, Cues.

PyAV can only write codec ids FFmpeg knows, and our video track has an id of its own (``V_NVC``), so the MKV is
written here, element by element (:mod:`nvc_pipe.media.ebml`). The writer knows nothing about NVC or about the
copied codecs: a caller describes each track (:class:`TrackSpec`) and hands blocks over in time order.

Layout written (the order mkvmerge and FFmpeg use)::

    EBML header (DocType matroska, version 4, read version 2)
    Segment (size patched at the end; "unknown" when the output cannot seek)
      SeekHead  -> Info, Tracks, Tags, Cues (no Cues entry on a pipe)
      Info      TimestampScale 1 ms, Duration (patched at the end), MuxingApp, WritingApp
      Tracks    one TrackEntry per track
      Tags      per-track SimpleTags, with a DURATION tag per track (patched at the end)
      Cluster*  Timestamp + SimpleBlock / BlockGroup(Block, BlockDuration); a new cluster at every key block of
                the cue track, and whenever a relative timestamp would leave int16 or a cluster passes 8 MiB
      Cues      one CuePoint per key block of the cue track

Timestamps are in milliseconds (TimestampScale 1,000,000 ns); the caller passes seconds (exact fractions) and
they are rounded half up and must be >= 0; a block earlier than its cluster's start (interleaved audio) gets a
negative relative timestamp, as the specification allows. Nothing here depends on the wall clock or on
randomness: the same input gives the same bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from fractions import Fraction
from typing import BinaryIO

from . import ebml as E

# Element IDs (Matroska specification, RFC 9559).
EBML = 0x1A45DFA3
SEGMENT = 0x18538067
SEEKHEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
INFO, TIMESTAMP_SCALE, DURATION, MUXING_APP, WRITING_APP = 0x1549A966, 0x2AD7B1, 0x4489, 0x4D80, 0x5741
TRACKS, TRACK_ENTRY = 0x1654AE6B, 0xAE
CLUSTER, TIMESTAMP, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK, BLOCK_DURATION = 0x1F43B675, 0xE7, 0xA3, 0xA0, 0xA1, 0x9B
CUES, CUE_POINT, CUE_TIME, CUE_TRACK_POSITIONS = 0x1C53BB6B, 0xBB, 0xB3, 0xB7
CUE_TRACK, CUE_CLUSTER_POSITION, CUE_RELATIVE_POSITION = 0xF7, 0xF1, 0xF0
TAGS, TAG, TARGETS, TAG_TRACK_UID, SIMPLE_TAG, TAG_NAME, TAG_STRING = 0x1254C367, 0x7373, 0x63C0, 0x63C5, 0x67C8, \
    0x45A3, 0x4487
VOID = 0xEC

TRACK_TYPES = {"video": 1, "audio": 2, "subtitle": 0x11}
_MS = 1_000_000  # TimestampScale in ns
_CLUSTER_BYTES = 8 << 20
_DURATION_TAG = "00:00:00.000000000"  # placeholder of the patched per-track DURATION tag (fixed length)


@dataclass
class TrackSpec:
    """One track as the caller describes it.

    ``entry`` holds the TrackEntry children beyond TrackNumber/TrackUID/TrackType/CodecID/CodecPrivate, already
    encoded (Video or Audio master, Name, Language, flags, DefaultDuration...). ``tags`` become SimpleTags.
    """

    kind: str
    codec_id: str
    codec_private: bytes = b""
    entry: list[bytes] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


def to_ms(seconds: Fraction) -> int:
    """Seconds -> Matroska milliseconds, rounded half up."""
    return math.floor(Fraction(seconds) * 1000 + Fraction(1, 2))


def duration_text(ms: int) -> str:
    """A DURATION tag value as FFmpeg writes it: ``HH:MM:SS.nnnnnnnnn``."""
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}000000"


class MatroskaWriter:
    """Writes one Matroska file to a binary file object.

    Use: ``w = MatroskaWriter(f, tracks, app, cue_track=1, seekable=True)``, ``w.start()``, then
    ``w.block(track, seconds, data, key, duration)`` in time order, then ``w.finish()``. Track numbers are the
    1-based positions in ``tracks``. With ``seekable=False`` (a pipe) nothing is patched: the Segment has an
    unknown size, Info has no Duration and there are no DURATION tags; Cues still come last.
    """

    def __init__(self, out: BinaryIO, tracks: list[TrackSpec], app: str, *, cue_track: int | None = 1,
                 seekable: bool = True) -> None:
        if not tracks:
            raise ValueError("a Matroska file needs at least one track")
        for spec in tracks:
            if spec.kind not in TRACK_TYPES:
                raise ValueError(f"bad track kind {spec.kind!r}")
        self._out = out
        self._tracks = tracks
        self._app = app
        self._cue_track = cue_track
        self._seekable = seekable
        self._pos = 0  # bytes written so far
        self._segment_data = 0  # file offset of the Segment's payload
        self._patches: dict[str, int] = {}
        self._cluster: bytearray | None = None
        self._cluster_ms = 0
        self._cluster_pos = 0  # segment-relative position of the open cluster
        self._cues: list[tuple[int, int, int]] = []  # (ms, cluster position, relative position)
        self._end_ms = [0] * len(tracks)
        self._last_ms = 0
        self._started = False
        self._duration_tags: dict[int, int] = {}

    # -- output -------------------------------------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._pos += len(data)

    # -- header -------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Write everything before the first cluster."""
        header = E.master(EBML, E.uint(0x4286, 1), E.uint(0x42F7, 1), E.uint(0x42F2, 4), E.uint(0x42F3, 8),
                          E.string(0x4282, "matroska"), E.uint(0x4287, 4), E.uint(0x4285, 2))
        self._write(header)
        self._write(E.element_id(SEGMENT))
        self._patches["segment_size"] = self._pos
        self._write(E.size_field(0, 8) if self._seekable else E.UNKNOWN_SIZE)
        self._segment_data = self._pos

        info, duration_at = self._info()
        tracks = E.master(TRACKS, *(self._track_entry(i + 1, spec) for i, spec in enumerate(self._tracks)))
        tags, duration_tags = self._tags()
        # SeekHead with fixed-width positions, so the Cues position can be patched in place.
        # (a pipe gets no Cues entry: its position is only known at the end)
        seek_ids = [INFO, TRACKS] + ([TAGS] if tags else []) + ([CUES] if self._seekable else [])
        at = len(self._seekhead(seek_ids, [0] * len(seek_ids)))
        positions = []
        for part in (info, tracks, tags):
            if part:
                positions.append(at)
                at += len(part)
        if self._seekable:
            positions.append(0)
        seekhead = self._seekhead(seek_ids, positions)
        self._patches["cues_position"] = self._pos + len(seekhead) - 8
        self._write(seekhead)
        self._patches["duration"] = self._pos + duration_at
        self._write(info)
        self._write(tracks)
        self._duration_tags = {n: self._pos + off for n, off in duration_tags.items()}
        self._write(tags)
        self._started = True

    @staticmethod
    def _seekhead(ids: list[int], positions: list[int]) -> bytes:
        seeks = [E.master(SEEK, E.binary(SEEK_ID, E.element_id(i)), E.uint(SEEK_POSITION, p, 8))
                 for i, p in zip(ids, positions)]
        return E.master(SEEKHEAD, *seeks)

    def _info(self) -> tuple[bytes, int]:
        """The Info element and the offset of its Duration value inside it (-1 when not seekable)."""
        scale = E.uint(TIMESTAMP_SCALE, _MS)
        duration = E.double(DURATION, 0.0) if self._seekable else b""
        apps = E.string(MUXING_APP, self._app) + E.string(WRITING_APP, self._app)
        info = E.master(INFO, scale, duration, apps)
        head = len(info) - len(scale) - len(duration) - len(apps)
        return info, (head + len(scale) + len(duration) - 8) if duration else -1

    @staticmethod
    def _track_entry(number: int, spec: TrackSpec) -> bytes:
        parts = [E.uint(0xD7, number), E.uint(0x73C5, number), E.uint(0x83, TRACK_TYPES[spec.kind]),
                 E.uint(0x9C, 0), E.string(0x86, spec.codec_id)]
        if spec.codec_private:
            parts.append(E.binary(0x63A2, spec.codec_private))
        parts += spec.entry
        return E.master(TRACK_ENTRY, *parts)

    def _tags(self) -> tuple[bytes, dict[int, int]]:
        """The Tags element (b"" when empty) and, per track number, the offset of its DURATION value inside it.

        The DURATION SimpleTag is the last child of its Tag, so its placeholder value is the Tag's last bytes.
        """
        tags: list[bytes] = []
        ends: dict[int, int] = {}
        for number, spec in enumerate(self._tracks, start=1):
            simple = [E.master(SIMPLE_TAG, E.string(TAG_NAME, k), E.string(TAG_STRING, v))
                      for k, v in spec.tags.items()]
            if self._seekable:
                simple.append(E.master(SIMPLE_TAG, E.string(TAG_NAME, "DURATION"),
                                       E.string(TAG_STRING, _DURATION_TAG)))
                ends[number] = sum(len(t) for t in tags) + len(E.master(TAG, E.master(TARGETS,
                    E.uint(TAG_TRACK_UID, number)), *simple))
            if simple:
                tags.append(E.master(TAG, E.master(TARGETS, E.uint(TAG_TRACK_UID, number)), *simple))
        if not tags:
            return b"", {}
        whole = E.master(TAGS, *tags)
        head = len(whole) - sum(len(t) for t in tags)
        return whole, {n: head + end - len(_DURATION_TAG) for n, end in ends.items()}

    # -- blocks -------------------------------------------------------------------------------------------------
    def block(self, track: int, seconds: Fraction, data: bytes, key: bool = True,
              duration: Fraction | None = None) -> None:
        """Add one frame/packet of ``track`` (1-based) at ``seconds`` (>= 0), with an optional duration."""
        if not self._started:
            raise RuntimeError("start() first")
        if not 1 <= track <= len(self._tracks):
            raise ValueError(f"no track {track}")
        ms = to_ms(seconds)
        if ms < 0:
            raise ValueError(f"negative timestamp {float(seconds):.3f} s")
        dur = to_ms(duration) if duration is not None and duration > 0 else None  # as FFmpeg rescales it
        cue = track == self._cue_track and key
        if (self._cluster is None or cue or len(self._cluster) > _CLUSTER_BYTES
                or not -0x8000 <= ms - self._cluster_ms <= 0x7FFF):
            self._close_cluster()
            self._open_cluster(ms)
        assert self._cluster is not None
        rel = ms - self._cluster_ms
        head = E.size_field(track) + struct.pack(">h", rel)
        if dur is None:
            body = E.element(SIMPLE_BLOCK, head + bytes([0x80 if key else 0]) + data)
        else:
            body = E.master(BLOCK_GROUP, E.element(BLOCK, head + b"\x00" + data), E.uint(BLOCK_DURATION, dur))
        if cue:
            self._cues.append((ms, self._cluster_pos, len(self._cluster)))
        self._cluster += body
        end = ms + (dur or 0)
        self._end_ms[track - 1] = max(self._end_ms[track - 1], end)
        self._last_ms = max(self._last_ms, end, ms)

    def _open_cluster(self, ms: int) -> None:
        self._cluster_ms = ms
        self._cluster_pos = self._pos - self._segment_data
        self._cluster = bytearray(E.uint(TIMESTAMP, ms))

    def _close_cluster(self) -> None:
        if self._cluster is not None:
            self._write(E.element(CLUSTER, bytes(self._cluster)))
            self._cluster = None

    # -- end ----------------------------------------------------------------------------------------------------
    def finish(self) -> None:
        """Write the last cluster and the Cues; patch sizes and durations when the output can seek."""
        self._close_cluster()
        cues_pos = self._pos - self._segment_data
        if self._cues:
            points = [E.master(CUE_POINT, E.uint(CUE_TIME, ms),
                               E.master(CUE_TRACK_POSITIONS, E.uint(CUE_TRACK, self._cue_track or 1),
                                        E.uint(CUE_CLUSTER_POSITION, pos), E.uint(CUE_RELATIVE_POSITION, rel)))
                      for ms, pos, rel in self._cues]
            self._write(E.master(CUES, *points))
        else:
            self._write(E.void(11))  # keeps the SeekHead entry pointing at a valid element
        self._out.flush()
        if not self._seekable:
            return
        end = self._pos
        self._patch(self._patches["segment_size"], E.size_field(end - self._segment_data, 8))
        self._patch(self._patches["duration"], struct.pack(">d", float(self._last_ms)))
        self._patch(self._patches["cues_position"], cues_pos.to_bytes(8, "big"))
        for number, offset in self._duration_tags.items():
            text = duration_text(self._end_ms[number - 1])
            if len(text) == len(_DURATION_TAG):  # more than 99 hours: the placeholder stays (no check on read)
                self._patch(offset, text.encode("ascii"))
        self._out.seek(end)
        self._out.flush()

    def _patch(self, offset: int, data: bytes) -> None:
        self._out.seek(offset)
        self._out.write(data)
