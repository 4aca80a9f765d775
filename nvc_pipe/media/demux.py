"""Open a video input and hand out RGB frames and segments: the only place nvc-pipe decodes source video.

Inputs: anything PyAV (FFmpeg) opens (mp4, mkv, webm, avi, y4m ...), raw ``.yuv``/``.rgb`` files described by
:class:`RawOptions`, and y4m on standard input (``path == "-"``). A :class:`VideoSource` is one pass over the video:
it decodes the first frame when opened (to learn the layout and colours), then streams the rest.

Timestamps: ``pts`` are the stream's own, as ints in ``VideoInfo.time_base``; a frame without pts gets the previous
one plus a nominal frame duration, and a pts that does not increase is replaced the same way (logged). Raw and y4m
inputs carry no timestamps: their time base is ``1/fps`` and frame ``i`` has pts ``i``.

Every failure a user can cause (missing file, not a video, no video stream, zero frames, corrupt data) is an
:class:`~nvc_pipe.errors.InputError` with a one-line message; a raw input without ``--size/--fps/--pix-fmt`` is a
:class:`~nvc_pipe.errors.ConfigError`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, BinaryIO, Iterator

import av
import numpy as np

from ..errors import ConfigError, InputError, one_line
from .clip import Segment, VideoInfo, guess_colorspace, normalize_pix_fmt, to_fraction
from .convert import frame_to_rgb
from .rawname import raw_params_from_name
from .spool import spool_stdin
from .streamcopy import open_input

log = logging.getLogger(__name__)

RAW_EXTENSIONS = (".yuv", ".rgb", ".raw")
_DEFAULT_FPS = Fraction(25)


@dataclass(frozen=True)
class RawOptions:
    """How to read a headerless raw file (the CLI's ``--size``, ``--fps``, ``--pix-fmt``).

    Attributes:
        size: ``(width, height)``.
        fps: frame rate.
        pix_fmt: FFmpeg pixel format of the file (``yuv420p``, ``yuv420p10le``, ``rgb24``, ``nv12`` ...).
            ``.rgb`` files default to ``rgb24``.
    """

    size: tuple[int, int] | None = None
    fps: Fraction | None = None
    pix_fmt: str | None = None



@dataclass(frozen=True)
class Selection:
    """Which frames to encode (the CLI's ``-ss``, ``-t``, ``-frames:v``), in seconds from the first frame.

    Attributes:
        start: skip frames before this time (``-ss``).
        duration: keep frames before ``start + duration`` (``-t``).
        frames: keep at most this many frames (``-frames:v``).
    """

    start: Fraction = Fraction(0)
    duration: Fraction | None = None
    frames: int | None = None

    def __post_init__(self) -> None:
        if self.start < 0 or (self.duration is not None and self.duration <= 0) or \
                (self.frames is not None and self.frames <= 0):
            raise ConfigError(f"bad frame selection: -ss {self.start} -t {self.duration} -frames:v {self.frames} "
                              "(start >= 0, duration and frames > 0)")


def is_raw_path(path: str) -> bool:
    """True for file names that are read as headerless raw video (``.yuv``, ``.rgb``, ``.raw``)."""
    return os.path.splitext(str(path))[1].lower() in RAW_EXTENSIONS


def _raw_params(path: str, raw: RawOptions | None) -> tuple[int, int, Fraction, str]:
    raw = raw or RawOptions()
    named_size, named_fps, named_fmt = raw_params_from_name(path)  # Beauty_1920x1080_120fps_420_8bit_YUV.yuv
    size = raw.size or named_size
    fps = raw.fps or named_fps
    pix_fmt = raw.pix_fmt or named_fmt or ("rgb24" if path.lower().endswith(".rgb") else None)
    missing = [flag for flag, value in (("--size", size), ("--fps", fps), ("--pix-fmt", pix_fmt)) if not value]
    if missing:
        raise ConfigError(f"raw input {path} needs {', '.join(missing)} (not in its name)")
    if (size, fps, pix_fmt) != (raw.size, raw.fps, raw.pix_fmt):
        log.info("%s: raw %sx%s %s fps %s (from the options and the file name)", path, size[0], size[1], fps, pix_fmt)
    raw = RawOptions(size=size, fps=fps, pix_fmt=pix_fmt)
    try:
        width, height = (int(v) for v in raw.size)  # type: ignore[union-attr]
        fps = Fraction(raw.fps) if not isinstance(raw.fps, Fraction) else raw.fps
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise ConfigError(f"bad raw options for {path}: {one_line(exc)}") from exc
    if width <= 0 or height <= 0 or fps <= 0:
        raise ConfigError(f"bad raw options for {path}: size {width}x{height}, fps {fps}")
    try:
        av.VideoFormat(pix_fmt, width, height)
    except (ValueError, TypeError, av.FFmpegError) as exc:
        raise ConfigError(f"unknown pixel format {pix_fmt!r} for {path}") from exc
    return width, height, fps, pix_fmt


def _open_raw(path: str, raw: RawOptions | None) -> tuple[Any, Fraction]:
    width, height, fps, pix_fmt = _raw_params(path, raw)
    if not os.path.isfile(path):
        raise InputError(f"cannot open {path}: no such file")
    options = {
        "video_size": f"{width}x{height}",
        "pixel_format": pix_fmt,
        "framerate": f"{fps.numerator}/{fps.denominator}",
    }
    try:
        container = av.open(path, format="rawvideo", options=options)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot open {path} as raw {pix_fmt} {width}x{height}: {one_line(exc)}") from exc
    return container, fps


_SEQUENCE = re.compile(r"%0?\d*d")


def is_image_sequence(path: str) -> bool:
    """True for ``printf``-style image-sequence names such as ``img%03d.png`` (FFmpeg's image2 demuxer)."""
    return bool(_SEQUENCE.search(os.path.basename(str(path))))


class _Prefixed:
    """A read-only file object: ``head`` (bytes already read to sniff the format), then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self._head = head
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        if self._head:
            if n is None or n < 0:
                data, self._head = self._head + self._stream.read(), b""
                return data
            data, self._head = self._head[:n], self._head[n:]
            return data
        return self._stream.read(n)


def _open_stdin() -> tuple[Any, str | None]:
    """Standard input: y4m is read as it streams; any other container is first spooled to a temporary file (so
    FFmpeg can seek, e.g. an mp4 whose index is at the end, and its audio can be copied). Returns
    ``(container, spool path or None)``."""
    stdin = sys.stdin.buffer
    try:
        head = stdin.read(9)
    except OSError as exc:
        raise InputError(f"cannot read standard input: {one_line(exc)}") from exc
    if not head:
        raise InputError("no data on standard input")
    if head == b"YUV4MPEG2":
        try:
            return av.open(_Prefixed(head, stdin), format="yuv4mpegpipe"), None
        except (av.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"cannot read y4m from standard input: {one_line(exc)}") from exc
    path = spool_stdin(head)
    return open_input(path, "standard input", lambda reason: InputError(
        f"cannot read standard input: not a format FFmpeg knows ({reason})")), path


def _open_sequence(path: str, raw: RawOptions | None) -> tuple[Any, Fraction]:
    raw = raw or RawOptions()
    if raw.size or raw.pix_fmt:
        raise ConfigError(f"--size and --pix-fmt do not apply to the image sequence {path} (its images say)")
    fps = Fraction(raw.fps) if raw.fps else _DEFAULT_FPS
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise InputError(f"cannot open image sequence {path}: directory {directory} does not exist")
    try:
        container = av.open(path, format="image2", options={"framerate": f"{fps.numerator}/{fps.denominator}"})
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise InputError(f"cannot open image sequence {path}: {one_line(exc)}") from exc
    return container, fps


def _refuse_raw_options(path: str, raw: RawOptions | None) -> None:
    """A container or y4m says its own size, rate and layout: options that would be ignored are refused."""
    if raw is None:
        return
    given = [flag for flag, value in (("--size", raw.size), ("--fps", raw.fps), ("--pix-fmt", raw.pix_fmt)) if value]
    if given:
        what = "standard input" if path == "-" else path
        verb = "does" if len(given) == 1 else "do"
        raise ConfigError(f"{', '.join(given)} {verb} not apply to {what}: it states its own size, rate and layout "
                          "(these options are for raw .yuv/.rgb/.raw input, --fps also for image sequences)")


def _open_container(path: str) -> Any:
    if path == "-":
        return _open_stdin()[0]
    return open_input(path)


class VideoSource:
    """One pass over a video: :attr:`info`, then :meth:`frames` or :meth:`segments` (use as a context manager).

    Attributes:
        info: layout, rate, time base and colours of the video.
        path: the file to copy audio/subtitles from (``None`` for standard input and raw files).
        name: the path as given (``"-"`` for standard input), for messages.
    """

    def __init__(self, container: Any, name: str, *, raw_fps: Fraction | None = None, copyable: bool = True,
                 drop_alpha: bool = False, sequence_fps: Fraction | None = None,
                 copy_path: str | None = None) -> None:
        self._container = container
        self.name = name
        self.path: str | None = copy_path or (None if (name == "-" or not copyable) else name)
        self.selection: Selection | None = None
        self._window: tuple[Fraction, Fraction | None] | None = None
        self._used = False
        self._warned_pts = False
        self._warned_size = False
        try:
            streams = list(container.streams.video)
        except (av.FFmpegError, AttributeError) as exc:  # pragma: no cover - defensive
            self.close()
            raise InputError(f"cannot read streams of {name}: {one_line(exc)}") from exc
        if not streams:
            self.close()
            raise InputError(f"no video stream in {name}")
        self._stream = streams[0]
        try:
            self._stream.thread_type = "AUTO"
        except (AttributeError, ValueError, av.FFmpegError):  # pragma: no cover - codec without threading
            pass
        self._raw = raw_fps is not None
        self._synthetic_pts = self._raw or sequence_fps is not None or (name == "-" and copy_path is None) \
            or self._is_y4m()
        self._decoder = self._decode_frames()
        try:
            first = next(self._decoder, None)
        except InputError:
            self.close()
            raise
        if first is None:
            self.close()
            raise InputError(f"no video frames in {name}")
        self._first = first
        try:
            self.info = self._make_info(first, raw_fps or sequence_fps)
            _check_source(first, self.info, name, drop_alpha)
        except BaseException:
            self.close()
            raise

    # -- setup ---------------------------------------------------------------------------------------------------
    def _is_y4m(self) -> bool:
        try:
            return "yuv4mpeg" in self._container.format.name
        except AttributeError:  # pragma: no cover
            return False

    def _make_info(self, frame: av.VideoFrame, raw_fps: Fraction | None) -> VideoInfo:
        stream = self._stream
        fps = raw_fps
        for attr in ("average_rate", "guessed_rate", "base_rate"):
            if fps is not None:
                break
            candidate = to_fraction(getattr(stream, attr, None))
            if candidate is not None and 0 < candidate <= 1000:
                fps = candidate
        if fps is None:
            log.warning("%s has no usable frame rate; assuming %s fps", self.name, _DEFAULT_FPS)
            fps = _DEFAULT_FPS
        if self._synthetic_pts:
            time_base = 1 / fps
        else:
            time_base = to_fraction(stream.time_base) or (1 / fps)
        self._time_base = time_base
        self._frame_step = max(1, round(1 / (fps * time_base)))
        pix_fmt, forced_range = normalize_pix_fmt(frame.format.name)
        family = VideoInfo(1, 1, pix_fmt, fps, time_base).family
        if family == "yuv":
            color_range = "pc" if (forced_range == "pc" or _int(frame.color_range) == 2) else "tv"
            colorspace = guess_colorspace(frame.colorspace, frame.width, frame.height)
        else:
            color_range = "pc"
            colorspace = guess_colorspace(2, frame.width, frame.height)
        info = VideoInfo(int(frame.width), int(frame.height), pix_fmt, fps, time_base, color_range, colorspace,
                         color_primaries=_int(getattr(frame, "color_primaries", 2)) or 2,
                         color_trc=_int(getattr(frame, "color_trc", 2)) or 2,
                         rotation=round(float(getattr(frame, "rotation", 0) or 0)),
                         interlaced=bool(getattr(frame, "interlaced_frame", False)))
        log.debug("opened %s: %s", self.name, info)
        return info

    # -- decoding ------------------------------------------------------------------------------------------------
    def _decode_frames(self) -> Iterator[av.VideoFrame]:
        try:
            if self._raw:
                yield from self._decode_raw()
                return
            for frame in self._container.decode(self._stream):
                yield frame
        except InputError:
            raise
        except (av.FFmpegError, OSError, ValueError, EOFError) as exc:
            raise InputError(f"cannot decode {self.name}: {one_line(exc)}") from exc

    def _decode_raw(self) -> Iterator[av.VideoFrame]:
        # The rawvideo demuxer cuts the file into frame-sized packets; a short last packet is a partial frame.
        frame_size = 0
        for packet in self._container.demux(self._stream):
            if not packet.size:
                continue
            if packet.size < frame_size:
                log.warning("%s: ignoring %d trailing bytes (not a whole frame)", self.name, packet.size)
                return
            frame_size = max(frame_size, packet.size)
            try:
                frames = packet.decode()
            except av.FFmpegError as exc:
                raise InputError(f"{self.name} is smaller than one frame of the given --size/--pix-fmt") from exc
            yield from frames

    def _all_frames(self) -> Iterator[av.VideoFrame]:
        if self._used:
            raise RuntimeError("a VideoSource can be read once")
        self._used = True
        first, self._first = self._first, None
        yield first
        yield from self._decoder

    def frames(self) -> Iterator[tuple[np.ndarray, int]]:
        """Yield ``(rgb, pts)`` for every frame in display order (see the module docstring for pts rules).

        Raises:
            InputError: the video is corrupt or unreadable part-way.
            RuntimeError: the source was already read.
        """
        info = self.info
        prev: int | None = None
        sel = self.selection
        origin: int | None = None  # pts of the input's first frame: -ss/-t count from there
        first_kept: int | None = None
        kept = 0
        for index, frame in enumerate(self._all_frames()):
            if self._synthetic_pts:
                pts = index
            else:
                pts = frame.pts
                if pts is None or (prev is not None and pts <= prev):
                    guess = 0 if prev is None else prev + self._frame_step
                    if pts is not None and not self._warned_pts:
                        log.warning("%s: non-increasing timestamps; retiming from frame %d", self.name, index)
                        self._warned_pts = True
                    pts = guess
                pts = int(pts)
            prev = pts
            if sel is not None:
                origin = pts if origin is None else origin
                t = (pts - origin) * self._time_base
                if t < sel.start:
                    continue
                if (sel.duration is not None and t >= sel.start + sel.duration) or \
                        (sel.frames is not None and kept >= sel.frames):
                    self._window = (self._window or (Fraction(0), None))[0], pts * self._time_base
                    break
                if first_kept is None:
                    first_kept = pts
                    self._window = (pts * self._time_base, None)
                kept += 1
                pts -= first_kept  # the selection starts at 0, like ffmpeg's output
            if (int(frame.width), int(frame.height)) != (info.width, info.height):
                if not self._warned_size:
                    log.warning(
                        "%s: frame size changes to %dx%d at frame %d; scaling to %dx%d",
                        self.name, frame.width, frame.height, index, info.width, info.height,
                    )
                    self._warned_size = True
                frame = frame.reformat(width=info.width, height=info.height)
            try:
                rgb = frame_to_rgb(frame, info)
            except (av.FFmpegError, ValueError) as exc:
                raise InputError(f"cannot convert frame {index} of {self.name}: {one_line(exc)}") from exc
            yield rgb, pts

    @property
    def copied_streams(self) -> int:
        """How many audio/subtitle streams an MKV output would copy from :attr:`path` (0 without a path)."""
        if self.path is None:
            return 0
        return sum(1 for s in self._container.streams if s.type in ("audio", "subtitle"))

    @property
    def copy_window(self) -> tuple[Fraction, Fraction | None] | None:
        """With a :attr:`selection`, after reading: ``(start, end)`` of the kept frames in the input's seconds
        (``end`` ``None`` when the input ran out first), for cutting the copied audio the same way."""
        return self._window

    def segments(self, frames_per_segment: int | None) -> Iterator[Segment]:
        """Group the frames into :class:`Segment` blocks.

        Args:
            frames_per_segment: frames per segment (the last one may be shorter); ``None`` = one segment holding
                the whole clip.

        Raises:
            ConfigError: ``frames_per_segment`` is not positive.
            InputError: as :meth:`frames`.
        """
        if frames_per_segment is not None and int(frames_per_segment) <= 0:
            raise ConfigError(f"frames per segment must be positive, not {frames_per_segment}")
        limit = None if frames_per_segment is None else int(frames_per_segment)
        rgbs: list[np.ndarray] = []
        pts: list[int] = []
        start = 0
        index = 0
        for rgb, p in self.frames():
            rgbs.append(rgb)
            pts.append(p)
            if limit is not None and len(rgbs) == limit:
                yield Segment(np.stack(rgbs), np.asarray(pts, dtype=np.int64), start, index)
                start += len(rgbs)
                index += 1
                rgbs, pts = [], []
        if rgbs:
            yield Segment(np.stack(rgbs), np.asarray(pts, dtype=np.int64), start, index)

    # -- lifetime ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Release the input (idempotent)."""
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            try:
                container.close()
            except (av.FFmpegError, OSError):  # pragma: no cover - closing a broken input
                pass

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"VideoSource({self.name!r}, {getattr(self, 'info', None)})"


def _check_source(frame: av.VideoFrame, info: VideoInfo, name: str, drop_alpha: bool) -> None:
    """What the source has and we do not keep: alpha is an error (unless ``drop_alpha``), the rest one warning each.

    Raises:
        InputError: the source has an alpha channel and ``drop_alpha`` is false.
    """
    fmt = frame.format
    comps = list(fmt.components)
    if any(c.is_alpha for c in comps):
        if not drop_alpha:
            raise InputError(f"{name} has an alpha channel ({fmt.name}), which is not coded; "
                             "pass --drop-alpha to encode the picture without it")
        log.info("%s: alpha channel dropped (--drop-alpha)", name)
    depth = max((int(c.bits) for c in comps if not c.is_alpha), default=8)
    if depth > info.bit_depth:
        log.warning("%s: %d-bit samples (%s) are kept as %d-bit (%s)", name, depth, fmt.name, info.bit_depth,
                    info.pix_fmt)
    if info.interlaced:
        log.warning("%s is interlaced: its frames are coded as progressive pictures (not deinterlaced)", name)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def open_video(path: str, raw: RawOptions | None = None, *, drop_alpha: bool = False,
               select: Selection | None = None) -> VideoSource:
    """Open a video for one pass.

    Args:
        path: a file PyAV can open, a raw ``.yuv``/``.rgb``/``.raw`` file, or ``"-"`` for y4m on standard input.
        raw: size/fps/pix_fmt of a raw file (ignored for other inputs).
        drop_alpha: accept a source with an alpha channel and code its picture only (else an ``InputError``).
        select: keep only these frames (their pts then start at 0; see :attr:`VideoSource.copy_window`).

    Returns:
        A :class:`VideoSource` whose first frame is already decoded (so :attr:`VideoSource.info` is exact).

    Raises:
        InputError: missing/unreadable file, no video stream, zero frames, alpha without ``drop_alpha``.
        ConfigError: a raw input without ``--size``, ``--fps`` or ``--pix-fmt``.
    """
    path = os.fspath(path)
    source = _open_video(path, raw, drop_alpha)
    source.selection = select
    return source


def _open_video(path: str, raw: RawOptions | None, drop_alpha: bool) -> VideoSource:
    if path != "-" and is_raw_path(path):
        container, fps = _open_raw(path, raw)
        if os.path.getsize(path) == 0:
            container.close()
            raise InputError(f"no video frames in {path}")
        return VideoSource(container, path, raw_fps=fps, copyable=False, drop_alpha=drop_alpha)
    if path != "-" and is_image_sequence(path) and not os.path.exists(path):
        container, fps = _open_sequence(path, raw)
        return VideoSource(container, path, sequence_fps=fps, copyable=False, drop_alpha=drop_alpha)
    _refuse_raw_options(path, raw)
    if path == "-":
        container, spooled = _open_stdin()
        return VideoSource(container, path, copy_path=spooled, drop_alpha=drop_alpha)
    return VideoSource(open_input(path), path, drop_alpha=drop_alpha)


def count_frames(path: str, raw: RawOptions | None = None) -> int:
    """Number of frames, for sizing, without decoding.

    Raw files: ``file size // frame size`` (a trailing partial frame is not counted). Containers: the stream's
    frame count when the container stores one (mp4/mov; exact unless the file lies about it), otherwise the number
    of video packets, read with the demuxer only (mkv, webm, y4m, avi...). The count can differ from what
    :meth:`VideoSource.frames` yields only for broken files (undecodable packets, bogus headers).

    Raises:
        InputError: ``path`` is ``"-"`` (a pipe cannot be counted in advance) or cannot be read.
        ConfigError: raw options missing.
    """
    path = os.fspath(path)
    if path == "-":
        raise InputError("cannot count the frames of standard input in advance")
    if is_raw_path(path):
        container, _ = _open_raw(path, raw)
        try:
            size = os.path.getsize(path)
            if size == 0:
                return 0
            try:
                packet = next((p for p in container.demux(container.streams.video[0]) if p.size), None)
            except (av.FFmpegError, OSError) as exc:
                raise InputError(f"cannot read {path}: {one_line(exc)}") from exc
            frame_size = packet.size if packet is not None else 0
            if frame_size <= 0:
                return 0
            if size % frame_size:
                log.warning("%s: %d trailing bytes are not a whole frame", path, size % frame_size)
            return size // frame_size
        finally:
            container.close()
    container = _open_container(path)
    try:
        if not container.streams.video:
            raise InputError(f"no video stream in {path}")
        stream = container.streams.video[0]
        stored = _int(getattr(stream, "frames", 0))
        if stored > 0:
            return stored
        try:
            return sum(1 for p in container.demux(stream) if p.size)
        except (av.FFmpegError, OSError) as exc:
            raise InputError(f"cannot read {path}: {one_line(exc)}") from exc
    finally:
        container.close()
