"""A small, strict Matroska reader: the tracks, the tags and the blocks of a file, for the NVC track's sake.

FFmpeg demuxes our track, but PyAV gives no codec context (hence no CodecPrivate) for a codec FFmpeg does not
know, so the NVC track is read here. The reader walks the EBML tree with every size checked against its parent and
the file: a file cut short or an element that does not fit raises :class:`MatroskaError` (never a crash, never a
read beyond the end). It reads what it needs and skips the rest:

* EBML header: DocType ``matroska`` or ``webm``;
* Segment (known or unknown size): SeekHead (to find Tags written after the clusters, one level of indirection),
  Info (TimestampScale), Tracks (TrackEntry: number, UID, type, CodecID, CodecPrivate, Name, DefaultDuration),
  Tags (SimpleTags per TagTrackUID), Clusters (known or unknown size) with SimpleBlock and BlockGroup
  (Block + BlockDuration).

Laced blocks are refused for the track being read (no writer laces video). Timestamps are returned in
TimestampScale units (ns).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

from .matroska import (BLOCK, BLOCK_DURATION, BLOCK_GROUP, CLUSTER, CUES, EBML, INFO, SEEK, SEEK_ID, SEEK_POSITION,
                       SEEKHEAD, SEGMENT, SIMPLE_BLOCK, SIMPLE_TAG, TAG, TAG_NAME, TAG_STRING, TAG_TRACK_UID, TAGS,
                       TARGETS, TIMESTAMP, TIMESTAMP_SCALE, TRACK_ENTRY, TRACKS)

_TOP_LEVEL = {SEEKHEAD, INFO, TRACKS, CLUSTER, CUES, TAGS, 0x1941A469, 0x1043A770}  # + Attachments, Chapters
_MAX_HEAD = 64 << 20  # Info/Tracks/Tags/SeekHead larger than this are not credible
_MAX_SEEKHEADS = 4


class MatroskaError(ValueError):
    """Not Matroska, or a corrupt/truncated Matroska file (one-line message)."""


@dataclass
class Track:
    """A TrackEntry (the fields nvc-pipe uses)."""

    number: int
    uid: int
    type: int
    codec_id: str = ""
    codec_private: bytes = b""
    name: str = ""
    default_duration: int = 0  # ns
    tags: dict[str, str] = field(default_factory=dict)
    interlaced: int = 0  # FlagInterlaced: 0 undetermined, 1 interlaced, 2 progressive
    primaries: int = 2  # Colour/Primaries (2 = unspecified)
    transfer: int = 2  # Colour/TransferCharacteristics
    roll: float = 0.0  # Projection/ProjectionPoseRoll, degrees


@dataclass
class Block:
    """One frame of one track: ``time`` and ``duration`` in TimestampScale units (duration 0 when not stored)."""

    track: int
    time: int
    duration: int
    key: bool
    data: bytes


class _Reader:
    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f = f
        self.size = size

    def read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise MatroskaError("truncated file")
        return data

    def vint(self, is_id: bool) -> tuple[int, int]:
        """An element ID (with its marker) or a size (``-1`` for unknown); returns (value, length)."""
        first = self.read(1)[0]
        if first == 0:
            raise MatroskaError("bad EBML variable-length number")
        length = 8 - first.bit_length() + 1
        if is_id and length > 4:
            raise MatroskaError("bad EBML element id")
        rest = self.read(length - 1) if length > 1 else b""
        if is_id:
            return int.from_bytes(bytes([first]) + rest, "big"), length
        value = first & ((1 << (8 - length)) - 1)
        for b in rest:
            value = (value << 8) | b
        if value == (1 << (7 * length)) - 1:
            return -1, length
        return value, length

    def header(self, end: int | None) -> tuple[int, int, int]:
        """(id, payload start, payload size or -1) of the next element; its payload must fit in ``end``."""
        ident, _ = self.vint(True)
        size, _ = self.vint(False)
        start = self.f.tell()
        limit = self.size if end is None else end
        if size >= 0 and start + size > limit:
            raise MatroskaError("truncated file" if limit == self.size else "element larger than its parent")
        return ident, start, size

    def children(self, start: int, size: int) -> Iterator[tuple[int, int, int]]:
        """The children of a master of known size (the caller reads or skips each payload)."""
        end = start + size
        pos = start
        while pos < end:
            self.f.seek(pos)
            ident, cstart, csize = self.header(end)
            if csize < 0:
                raise MatroskaError("unknown-size element inside a master")
            yield ident, cstart, csize
            pos = cstart + csize

    def payload(self, start: int, size: int, limit: int = _MAX_HEAD) -> bytes:
        if size > limit:
            raise MatroskaError("element too large")
        self.f.seek(start)
        return self.read(size)


def _uint(data: bytes) -> int:
    if len(data) > 8:
        raise MatroskaError("integer element longer than 8 bytes")
    return int.from_bytes(data, "big")


def _text(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass
class MatroskaFile:
    """The head of a Matroska file, and an iterator over its blocks (:meth:`blocks`)."""

    tracks: list[Track]
    timestamp_scale: int
    first_cluster: int  # file offset of the first Cluster (or of the end of the Segment)
    segment_end: int | None  # None when the Segment has an unknown size
    _r: _Reader

    def track(self, number: int) -> Track | None:
        return next((t for t in self.tracks if t.number == number), None)

    def blocks(self, track: int | None = None) -> Iterator[Block]:
        """Blocks in file order (of one track when given). Raises MatroskaError on corrupt/truncated data."""
        r = self._r
        end = self.segment_end if self.segment_end is not None else r.size
        pos = self.first_cluster
        while pos < end:
            r.f.seek(pos)
            if end - pos < 2:
                raise MatroskaError("truncated file")
            ident, start, size = r.header(end)
            if ident == EBML:  # a second file concatenated (unknown-size segment): stop here
                return
            if ident == CLUSTER:
                stop = yield from self._cluster(start, size, end, track)
                pos = stop
                continue
            if size < 0:
                raise MatroskaError("unknown-size element in the segment")
            pos = start + size

    def _cluster(self, start: int, size: int, end: int, track: int | None):
        r = self._r
        cend = start + size if size >= 0 else end
        base: int | None = None
        pos = start
        while pos < cend:
            r.f.seek(pos)
            if size < 0:  # unknown size: the cluster ends where a top-level element starts
                ident, _ = r.vint(True)
                if ident in _TOP_LEVEL or ident == EBML:
                    return pos
                r.f.seek(pos)
            ident, cstart, csize = r.header(cend)
            if csize < 0:
                raise MatroskaError("unknown-size element inside a cluster")
            pos = cstart + csize
            if ident == TIMESTAMP:
                base = _uint(r.payload(cstart, csize))
            elif ident in (SIMPLE_BLOCK, BLOCK_GROUP):
                if base is None:
                    raise MatroskaError("block before the cluster timestamp")
                block = self._block(ident, cstart, csize, base, track)
                if block is not None:
                    yield block
        return cend

    def _block(self, ident: int, start: int, size: int, base: int, want: int | None) -> Block | None:
        r = self._r
        duration = 0
        if ident == BLOCK_GROUP:
            body = None
            for cid, cstart, csize in list(r.children(start, size)):
                if cid == BLOCK:
                    body = (cstart, csize)
                elif cid == BLOCK_DURATION:
                    duration = _uint(r.payload(cstart, csize))
            if body is None:
                raise MatroskaError("BlockGroup without a Block")
            start, size = body
        r.f.seek(start)
        number, length = r.vint(False)
        if size < length + 3:
            raise MatroskaError("block too short")
        if want is not None and number != want:
            return None
        head = r.read(3)
        rel = int.from_bytes(head[:2], "big", signed=True)
        flags = head[2]
        if flags & 0x06:
            raise MatroskaError(f"laced block in track {number} (not supported)")
        data = r.read(size - length - 3)
        key = bool(flags & 0x80) if ident == SIMPLE_BLOCK else True
        time = base + rel
        if time < 0:
            raise MatroskaError("negative block timestamp")
        return Block(number, time, duration, key, data)


def open_matroska(f: BinaryIO) -> MatroskaFile:
    """Parse the head of a Matroska file open in binary mode (seekable).

    Raises:
        MatroskaError: not an EBML/Matroska file, or a corrupt/truncated head.
    """
    f.seek(0, 2)
    r = _Reader(f, f.tell())
    f.seek(0)
    try:
        ident, start, size = r.header(None)
    except MatroskaError:
        raise MatroskaError("not a Matroska file") from None
    if ident != EBML or size < 0:
        raise MatroskaError("not a Matroska file")
    doctype = ""
    for cid, cstart, csize in r.children(start, size):
        if cid == 0x4282:
            doctype = _text(r.payload(cstart, csize, 64))
    if doctype not in ("matroska", "webm"):
        raise MatroskaError(f"not a Matroska file (DocType {doctype[:20]!r})")
    f.seek(start + size)
    ident, seg_start, seg_size = r.header(None)
    if ident != SEGMENT:
        raise MatroskaError("no Segment after the EBML header")
    seg_end = seg_start + seg_size if seg_size >= 0 else None
    end = seg_end if seg_end is not None else r.size
    tracks: list[Track] = []
    tags: dict[int, dict[str, str]] = {}
    scale = 1_000_000
    seeks: list[int] = []
    seen: set[int] = set()
    first_cluster: int | None = None
    pos = seg_start
    while pos < end:
        f.seek(pos)
        ident, start, size = r.header(end)
        if ident in (CLUSTER, EBML):
            first_cluster = pos
            break
        if size < 0:
            raise MatroskaError("unknown-size element in the segment")
        _head_element(r, ident, start, size, seg_start, tracks, tags, seeks, seen)
        if ident == INFO:
            for cid, cstart, csize in r.children(start, size):
                if cid == TIMESTAMP_SCALE:
                    scale = _uint(r.payload(cstart, csize)) or 1_000_000
        pos = start + size
    if first_cluster is None:
        first_cluster = end
    # Tags (or Tracks) written after the clusters, found through the SeekHead(s).
    done = 0
    while seeks and done < 16:
        at = seeks.pop(0)
        done += 1
        if at in seen or not seg_start <= at < end:
            continue
        f.seek(at)
        ident, start, size = r.header(end)
        if size < 0:
            continue
        if ident in (TAGS, TRACKS, SEEKHEAD) and not (ident == TRACKS and tracks):
            _head_element(r, ident, start, size, seg_start, tracks, tags, seeks, seen)
            seen.add(at)
    uids = {t.uid: t for t in tracks}
    for uid, values in tags.items():
        if uid in uids:
            uids[uid].tags.update(values)
    return MatroskaFile(tracks, scale, first_cluster, seg_end, r)


def _head_element(r: _Reader, ident: int, start: int, size: int, seg_start: int, tracks: list[Track],
                  tags: dict[int, dict[str, str]], seeks: list[int], seen: set[int]) -> None:
    seen.add(start)
    if ident == SEEKHEAD:
        if size > _MAX_HEAD or len(seen) > 64:
            return
        for cid, cstart, csize in r.children(start, size):
            if cid != SEEK:
                continue
            target, position = 0, None
            for sid, sstart, ssize in r.children(cstart, csize):
                if sid == SEEK_ID:
                    target = _uint(r.payload(sstart, ssize, 8))
                elif sid == SEEK_POSITION:
                    position = _uint(r.payload(sstart, ssize, 8))
            if target in (TAGS, SEEKHEAD, TRACKS) and position is not None and len(seeks) < _MAX_SEEKHEADS * 8:
                seeks.append(seg_start + position)
    elif ident == TRACKS:
        for cid, cstart, csize in r.children(start, size):
            if cid == TRACK_ENTRY:
                tracks.append(_track(r, cstart, csize))
    elif ident == TAGS:
        if size > _MAX_HEAD:
            raise MatroskaError("Tags element too large")
        for cid, cstart, csize in r.children(start, size):
            if cid == TAG:
                _tag(r, cstart, csize, tags)


def _track(r: _Reader, start: int, size: int) -> Track:
    t = Track(0, 0, 0)
    for cid, cstart, csize in r.children(start, size):
        if cid == 0xD7:
            t.number = _uint(r.payload(cstart, csize))
        elif cid == 0x73C5:
            t.uid = _uint(r.payload(cstart, csize))
        elif cid == 0x83:
            t.type = _uint(r.payload(cstart, csize))
        elif cid == 0x86:
            t.codec_id = _text(r.payload(cstart, csize, 256))
        elif cid == 0x63A2:
            t.codec_private = r.payload(cstart, csize)
        elif cid == 0x536E:
            t.name = _text(r.payload(cstart, csize, 4096))
        elif cid == 0x23E383:
            t.default_duration = _uint(r.payload(cstart, csize))
        elif cid == 0xE0:
            _video(r, cstart, csize, t)
    return t


def _float(data: bytes) -> float:
    if len(data) == 4:
        return struct.unpack(">f", data)[0]
    if len(data) == 8:
        return struct.unpack(">d", data)[0]
    if not data:
        return 0.0
    raise MatroskaError("float element of a bad size")


def _video(r: _Reader, start: int, size: int, t: Track) -> None:
    for cid, cstart, csize in r.children(start, size):
        if cid == 0x9A:
            t.interlaced = _uint(r.payload(cstart, csize))
        elif cid == 0x55B0:
            for kid, kstart, ksize in r.children(cstart, csize):
                if kid == 0x55BB:
                    t.primaries = _uint(r.payload(kstart, ksize))
                elif kid == 0x55BA:
                    t.transfer = _uint(r.payload(kstart, ksize))
        elif cid == 0x7670:
            for kid, kstart, ksize in r.children(cstart, csize):
                if kid == 0x7675:
                    roll = _float(r.payload(kstart, ksize, 8))
                    t.roll = roll if math.isfinite(roll) else 0.0


def _tag(r: _Reader, start: int, size: int, tags: dict[int, dict[str, str]]) -> None:
    uids: list[int] = []
    simple: dict[str, str] = {}
    for cid, cstart, csize in r.children(start, size):
        if cid == TARGETS:
            for tid, tstart, tsize in r.children(cstart, csize):
                if tid == TAG_TRACK_UID:
                    uids.append(_uint(r.payload(tstart, tsize)))
        elif cid == SIMPLE_TAG:
            name, value = None, ""
            for sid, sstart, ssize in r.children(cstart, csize):
                if sid == TAG_NAME:
                    name = _text(r.payload(sstart, ssize, 1 << 16))
                elif sid == TAG_STRING:
                    value = _text(r.payload(sstart, ssize, 1 << 20))
            if name is not None:
                simple[name] = value
    for uid in uids:
        tags.setdefault(uid, {}).update(simple)
