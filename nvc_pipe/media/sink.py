"""Decoded RGB frames back to FFmpeg land: y4m/raw to a pipe or file, or any encoder PyAV has.

:func:`open_sink` picks the writer from the output name:

* ``"-"``: y4m on standard output (``sys.stdout.buffer``), for ``nvc decode x.mkv - | ffmpeg -i - ...``;
* ``*.y4m``: a y4m file; ``*.yuv``/``*.raw``: raw planes in ``pix_fmt`` (default ``info.pix_fmt``);
  ``*.rgb``: packed ``rgb24``/``rgb48le``;
* anything else: encoded by PyAV into the container the extension names (default encoders: mp4/m4v/mov/mkv/ts →
  libx264 crf 18 preset medium; webm → libvpx-vp9 crf 24; avi/nut → ffv1; other extensions → the container's
  default), with the audio and subtitle streams of ``audio_from`` copied byte for byte and kept in sync.

Y4M is planar YUV or gray only (``C420jpeg``, ``C422``, ``C444``, ``C420p10``, ``C444p12``, ``Cmono``, ``Cmono10``
...), with ``XCOLORRANGE=LIMITED|FULL``. RGB clips go to y4m as 4:4:4 full range with the clip's matrix.

Every file output is written atomically (:func:`nvc_pipe.media.atomic.atomic_output`): an exception inside the
``with`` block, or :meth:`FrameSink.abort`, leaves no partial file. A reader that closes the pipe raises one
:class:`~nvc_pipe.errors.OutputError` line.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from dataclasses import replace
from fractions import Fraction
from typing import Any, BinaryIO

import av
import numpy as np

from ..errors import ConfigError, InputError, OutputError, one_line
from .clip import SUPPORTED_PIX_FMTS, VideoInfo, normalize_pix_fmt
from .convert import avcol_range, avcol_spc, fill_frame, pix_fmt_layout, rgb_to_frame, yuv_planes
from .atomic import atomic_output
from .mux import is_nvc_stream, source_offset
from .streamcopy import PacketPump, copy_streams, open_input

log = logging.getLogger(__name__)

Y4M_CHROMA: dict[str, str] = {
    "yuv420p": "420jpeg",
    "yuv422p": "422",
    "yuv444p": "444",
    "yuv420p10le": "420p10",
    "yuv422p10le": "422p10",
    "yuv444p10le": "444p10",
    "yuv420p12le": "420p12",
    "yuv422p12le": "422p12",
    "yuv444p12le": "444p12",
    "gray": "mono",
    "gray10le": "mono10",
    "gray12le": "mono12",
}

DEFAULT_VCODECS: dict[str, str] = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".ts": "libx264",
    ".m2ts": "libx264",
    ".flv": "libx264",
    ".webm": "libvpx-vp9",
    ".avi": "ffv1",
    ".nut": "ffv1",
}

DEFAULT_CODEC_OPTIONS: dict[str, dict[str, str]] = {
    "libx264": {"crf": "18", "preset": "medium"},
    "libx265": {"crf": "20", "preset": "medium", "x265-params": "log-level=error"},
    "libvpx-vp9": {"crf": "24", "b": "0", "row-mt": "1", "deadline": "good", "cpu-used": "4"},
    "libsvtav1": {"crf": "30", "preset": "8"},
    "ffv1": {"level": "3", "slicecrc": "1"},
}

RAW_EXTENSIONS = (".yuv", ".raw", ".rgb")



def _planes_bytes(planes: list[np.ndarray]) -> bytes:
    return b"".join(np.ascontiguousarray(p, dtype="<u2" if p.dtype.itemsize == 2 else np.uint8).tobytes()
                    for p in planes)


def _adapt_depth(rgb: np.ndarray, target: VideoInfo) -> np.ndarray:
    """Rescale RGB between the 8-bit (0..255) and 16-bit (0..65535) scales when the output depth differs."""
    want = target.rgb_dtype
    if rgb.dtype == want:
        return rgb
    if rgb.dtype == np.uint8 and want == np.uint16:
        return rgb.astype(np.uint16) * 257
    if rgb.dtype == np.uint16 and want == np.uint8:
        return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return rgb  # wrong dtype altogether: let clip raise its error


class _Atomic:
    """A started :func:`atomic_output` that can be committed or discarded later."""

    def __init__(self, path: str) -> None:
        self._cm = atomic_output(path)
        self.tmp = self._cm.__enter__()
        self._done = False

    def commit(self) -> None:
        if not self._done:
            self._done = True
            self._cm.__exit__(None, None, None)

    def discard(self) -> None:
        if not self._done:
            self._done = True
            reason = OutputError("aborted")
            try:
                self._cm.__exit__(OutputError, reason, None)
            except OutputError:  # pragma: no cover - the context manager re-raised our own marker
                pass


class FrameSink:
    """Where decoded frames go. Use as a context manager; :meth:`write` each frame, then :meth:`close`.

    Attributes:
        path: the output as given (``"-"`` for standard output).
        info: the clip being written.
        out_pix_fmt: the pixel layout actually written (y4m/raw) or given to the encoder.
        frames_written: frames accepted so far.
    """

    def __init__(self, path: str, info: VideoInfo) -> None:
        if not isinstance(info, VideoInfo):
            raise TypeError("info must be a VideoInfo")
        self.path = path
        self.info = info
        self.out_pix_fmt = info.pix_fmt
        self.frames_written = 0
        self._closed = False

    def write(self, rgb: np.ndarray, pts: int) -> None:
        """Write one ``(H, W, 3)`` RGB frame (``info.rgb_dtype``) with its pts in ``info.time_base``.

        Raises:
            OutputError: the output cannot be written (broken pipe, disk full, encoder failure).
            ValueError: wrong array shape or dtype.
        """
        if self._closed:
            raise OutputError(f"{self.path} is already closed")
        self._write(rgb, int(pts))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the output (flush the encoder, write the trailer, rename the file into place)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._close()
        except BaseException:
            self._abort()
            raise

    def abort(self) -> None:
        """Stop without finishing; a file output is removed."""
        if self._closed:
            return
        self._closed = True
        self._abort()

    def __enter__(self) -> "FrameSink":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _check(self, rgb: np.ndarray) -> None:
        info = self.info
        if not isinstance(rgb, np.ndarray) or rgb.shape != (info.height, info.width, 3) or rgb.dtype != info.rgb_dtype:
            shape = getattr(rgb, "shape", None)
            dtype = getattr(rgb, "dtype", type(rgb).__name__)
            raise ValueError(f"frames must be ({info.height}, {info.width}, 3) {info.rgb_dtype}, got {shape} {dtype}")

    # subclass hooks
    def _write(self, rgb: np.ndarray, pts: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _abort(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def _name(path: str) -> str:
    return "standard output" if path == "-" else path


def _warn_depth(path: str, info: VideoInfo, out: VideoInfo) -> None:
    """One warning when the output keeps fewer bits per sample than the stream has."""
    if out.bit_depth < info.bit_depth:
        log.warning("%s: the %d-bit stream is written as %d-bit %s (the output takes no deeper layout)",
                    _name(path), info.bit_depth, out.bit_depth, out.pix_fmt)


# ---------------------------------------------------------------------------------------------------------------
# y4m and raw
# ---------------------------------------------------------------------------------------------------------------
def _y4m_info(info: VideoInfo, pix_fmt: str | None) -> VideoInfo:
    if pix_fmt is not None:
        if pix_fmt not in Y4M_CHROMA:
            raise ConfigError(f"y4m cannot carry {pix_fmt} (use one of {', '.join(Y4M_CHROMA)})")
        if info.family == "rgb":
            return replace(info, pix_fmt=pix_fmt, color_range="pc")
        return replace(info, pix_fmt=pix_fmt)
    if info.pix_fmt in Y4M_CHROMA:
        return info
    suffix = {8: "", 10: "10le"}.get(info.bit_depth, "12le")
    return replace(info, pix_fmt=f"yuv444p{suffix}", color_range="pc")


def y4m_header(info: VideoInfo) -> bytes:
    """The y4m stream header for ``info`` (``info.pix_fmt`` must be a y4m layout)."""
    if info.pix_fmt not in Y4M_CHROMA:
        raise ConfigError(f"y4m cannot carry {info.pix_fmt}")
    rng = "FULL" if info.color_range == "pc" else "LIMITED"
    return (
        f"YUV4MPEG2 W{info.width} H{info.height} F{info.fps.numerator}:{info.fps.denominator} Ip A1:1 "
        f"C{Y4M_CHROMA[info.pix_fmt]} XCOLORRANGE={rng}\n"
    ).encode("ascii")


class _StreamSink(FrameSink):
    """y4m (``y4m=True``) or raw planes, to a file (atomically) or to standard output."""

    def __init__(self, path: str, info: VideoInfo, out_info: VideoInfo, *, y4m: bool) -> None:
        super().__init__(path, info)
        self._out_info = out_info
        self.out_pix_fmt = out_info.pix_fmt
        self._y4m = y4m
        self._atomic: _Atomic | None = None
        self._file: BinaryIO
        if path == "-":
            self._file = sys.stdout.buffer
        else:
            self._atomic = _Atomic(path)
            try:
                self._file = open(self._atomic.tmp, "wb", buffering=1 << 20)
            except OSError as exc:
                self._atomic.discard()
                raise OutputError(f"cannot write {path}: {one_line(exc)}") from exc
        self._last_pts: int | None = None
        self._step: int | None = None
        self._warned_vfr = False
        if y4m:
            if info.rotation:
                log.warning("%s: y4m cannot carry the %d° display rotation; frames are written unrotated",
                            _name(path), info.rotation)
            self._emit(y4m_header(out_info))
        _warn_depth(path, info, out_info)

    def _emit(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except BrokenPipeError as exc:
            self._broken_pipe()
            raise OutputError("output pipe closed by the reader (broken pipe)") from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                self._broken_pipe()
                raise OutputError("output pipe closed by the reader (broken pipe)") from exc
            raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from exc

    def _broken_pipe(self) -> None:
        self._closed = True
        if self.path == "-":
            # Python would print "Exception ignored ... BrokenPipeError" when it flushes stdout at exit.
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            except (OSError, ValueError, AttributeError):  # pragma: no cover - stdout without a descriptor
                pass
        else:
            self._abort()

    def _write(self, rgb: np.ndarray, pts: int) -> None:
        self._check(rgb)
        if self._y4m and not self._warned_vfr:
            self._check_rate(pts)
        data = _planes_bytes(yuv_planes(_adapt_depth(rgb, self._out_info), self._out_info))
        self._emit(b"FRAME\n" + data if self._y4m else data)

    def _check_rate(self, pts: int) -> None:
        """One warning when the frames are not evenly spaced: y4m has one frame rate and no timestamps."""
        if self._last_pts is not None:
            step = pts - self._last_pts
            if self._step is None:
                self._step = step
            elif abs(step - self._step) > max(1, self._step // 100):
                self._warned_vfr = True
                log.warning("%s: variable frame rate (frame durations differ); y4m stores a constant %s fps and "
                            "no timestamps", _name(self.path), self.info.fps)
        self._last_pts = pts

    def _close(self) -> None:
        try:
            self._file.flush()
        except BrokenPipeError as exc:
            self._broken_pipe()
            raise OutputError("output pipe closed by the reader (broken pipe)") from exc
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from exc
        if self._atomic is not None:
            try:
                self._file.close()
            except OSError as exc:
                raise OutputError(f"cannot write {self.path}: {one_line(exc)}") from exc
            self._atomic.commit()

    def _abort(self) -> None:
        if self._atomic is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._atomic.discard()


# ---------------------------------------------------------------------------------------------------------------
# PyAV encoders
# ---------------------------------------------------------------------------------------------------------------
def _layout(pix_fmt: str) -> tuple[str, int, int, int]:
    return pix_fmt_layout(pix_fmt)


def pick_pix_fmt(codec_name: str, info: VideoInfo) -> str:
    """The encoder-compatible layout closest to ``info.pix_fmt`` for an encoder.

    Prefers, in order: no chroma subsampling added, no bit depth lost, the same family (RGB sources get 4:4:4
    YUV when the encoder has no RGB), the fewest extra bits and samples. Encoders that do not list their formats
    get ``info.pix_fmt``.
    """
    try:
        formats = [f.name for f in (av.Codec(codec_name, "w").video_formats or [])]
    except (ValueError, av.FFmpegError):
        formats = []
    if not formats or info.pix_fmt in formats:
        return info.pix_fmt
    family, depth, lw, lh = _layout(info.pix_fmt)
    candidates = [f for f in formats if f in SUPPORTED_PIX_FMTS]
    if not candidates:
        return formats[0]

    def cost(name: str) -> tuple[int, ...]:
        c_family, c_depth, c_lw, c_lh = _layout(name)
        if c_family == family:
            fam = 0
        elif c_family == "gray":
            fam = 9  # loses colour
        elif family in ("rgb", "gray") and c_family == "yuv":
            fam = 1
        else:
            fam = 2
        loss = max(0, c_lw - lw) + max(0, c_lh - lh) if family != "gray" else 0
        extra = max(0, lw - c_lw) + max(0, lh - c_lh)
        return (fam >= 9, loss, max(0, depth - c_depth), fam, max(0, c_depth - depth), extra)

    return min(candidates, key=cost)


class _EncoderSink(FrameSink):
    """Encode with PyAV into any container; copy audio/subtitles from ``audio_from``."""

    def __init__(
        self,
        path: str,
        info: VideoInfo,
        *,
        vcodec: str | None,
        codec_options: dict | None,
        pix_fmt: str | None,
        audio_from: str | None,
        audio_offset: Fraction | None,
    ) -> None:
        super().__init__(path, info)
        ext = os.path.splitext(path)[1].lower()
        codec_name = vcodec or DEFAULT_VCODECS.get(ext)
        self._source = None
        self._pump: PacketPump | None = None
        self._atomic = _Atomic(path)
        self._output = None
        try:
            try:
                self._output = av.open(self._atomic.tmp, "w")
            except (av.FFmpegError, ValueError, OSError) as exc:
                reason = one_line(exc)
                raise OutputError(f"cannot write {path}: no FFmpeg muxer for '{ext or path}' ({reason})") from exc
            codec_name = codec_name or self._output.default_video_codec
            if not codec_name or codec_name == "none":
                raise ConfigError(f"{path}: the container has no default video encoder; pass a video codec")
            try:
                codec = av.Codec(codec_name, "w")
            except (ValueError, av.FFmpegError) as exc:
                raise ConfigError(f"unknown video encoder {codec_name!r}") from exc
            enc_fmt, conv = self._choose_format(codec.name, info, pix_fmt)
            self.out_pix_fmt = enc_fmt
            self._conv = conv
            options = dict(DEFAULT_CODEC_OPTIONS.get(codec.name, {}))
            options.update({str(k): str(v) for k, v in (codec_options or {}).items()})
            try:
                stream = self._output.add_stream(codec.name, rate=info.fps, options=options)
                stream.width, stream.height = info.width, info.height
                stream.pix_fmt = enc_fmt
                stream.time_base = info.time_base
                ctx = stream.codec_context
                ctx.time_base = info.time_base
                try:
                    ctx.color_range = avcol_range(conv)
                    ctx.colorspace = avcol_spc(conv)
                    ctx.color_primaries = info.color_primaries
                    ctx.color_trc = info.color_trc
                except (AttributeError, TypeError, ValueError):  # pragma: no cover - PyAV without setters
                    pass
                if info.rotation:
                    stream.set_display_rotation(info.rotation)
            except (av.FFmpegError, ValueError, TypeError) as exc:
                raise ConfigError(f"cannot set up {codec.name} for {path}: {one_line(exc)}") from exc
            self._stream = stream
            self._codec_name = codec.name
            _warn_depth(path, info, conv)
            if audio_from is not None:
                self._source = open_input(audio_from, "audio source")
                mapping = copy_streams(self._source, self._output, skip=is_nvc_stream, label=str(audio_from))
                offset = Fraction(audio_offset) if audio_offset is not None else source_offset(audio_from)
                self._pump = PacketPump(self._source, mapping, self._output, offset, str(audio_from))
        except BaseException:
            self._abort()
            raise

    @staticmethod
    def _choose_format(codec_name: str, info: VideoInfo, pix_fmt: str | None) -> tuple[str, VideoInfo]:
        if pix_fmt is None:
            enc_fmt = pick_pix_fmt(codec_name, info)
        else:
            try:
                formats = [f.name for f in (av.Codec(codec_name, "w").video_formats or [])]
            except (ValueError, av.FFmpegError):
                formats = []
            if formats and pix_fmt not in formats:
                raise ConfigError(f"{codec_name} cannot encode {pix_fmt} (it takes {', '.join(formats)})")
            enc_fmt = pix_fmt
        try:
            conv_fmt, forced = normalize_pix_fmt(enc_fmt)
        except InputError as exc:
            raise ConfigError(f"unknown pixel format {enc_fmt!r}") from exc
        family = _layout(conv_fmt)[0]
        if forced:
            color_range = forced
        elif family == "yuv" and info.family == "yuv":
            color_range = info.color_range
        else:
            color_range = "tv" if family == "yuv" else info.color_range
        return enc_fmt, replace(info, pix_fmt=conv_fmt, color_range=color_range)

    def _frame(self, rgb: np.ndarray) -> av.VideoFrame:
        self._check(rgb)
        rgb = _adapt_depth(rgb, self._conv)
        frame = rgb_to_frame(rgb, self._conv)
        if self.out_pix_fmt != self._conv.pix_fmt:
            if self.out_pix_fmt.startswith("yuvj") and normalize_pix_fmt(self.out_pix_fmt)[0] == self._conv.pix_fmt:
                # yuvj* has the memory layout of yuv*: fill it directly, no range conversion by swscale.
                target = av.VideoFrame(self.info.width, self.info.height, self.out_pix_fmt)
                fill_frame(target, yuv_planes(rgb, self._conv), self._conv.pix_fmt)
                frame = target
            else:
                frame = frame.reformat(format=self.out_pix_fmt)
        return frame

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self._output.mux(packet)

    def _write(self, rgb: np.ndarray, pts: int) -> None:
        frame = self._frame(rgb)
        frame.pts = pts
        frame.time_base = self.info.time_base
        try:
            if self._pump is not None:
                self._pump.until(pts * self.info.time_base)
            self._mux(self._stream.encode(frame))
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot encode {self.path} with {self._codec_name}: {one_line(exc)}") from exc

    def _close(self) -> None:
        if self.frames_written == 0:
            raise OutputError(f"no frames to write to {self.path}")
        try:
            self._mux(self._stream.encode(None))
            if self._pump is not None:
                self._pump.until(None)
            output, self._output = self._output, None
            output.close()
        except (av.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot finish {self.path}: {one_line(exc)}") from exc
        self._close_source()
        self._atomic.commit()

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except (av.FFmpegError, OSError):  # pragma: no cover
                pass

    def _abort(self) -> None:
        output, self._output = self._output, None
        if output is not None:
            try:
                output.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
        self._close_source()
        self._atomic.discard()


# ---------------------------------------------------------------------------------------------------------------
def open_sink(
    path: str,
    info: VideoInfo,
    *,
    vcodec: str | None = None,
    codec_options: dict | None = None,
    pix_fmt: str | None = None,
    audio_from: str | None = None,
    audio_offset: Fraction | None = None,
) -> FrameSink:
    """Open the destination of decoded frames.

    Args:
        path: ``"-"`` (y4m on stdout), ``*.y4m``, ``*.yuv``/``*.raw``/``*.rgb`` (raw planes) or any file FFmpeg
            can mux (encoded with PyAV).
        info: the clip; frames must be ``(info.height, info.width, 3)`` of ``info.rgb_dtype``, pts in
            ``info.time_base``.
        vcodec: encoder name (PyAV outputs only); default by extension (see the module docstring).
        codec_options: encoder options, over the defaults (e.g. ``{"crf": "23", "preset": "slow"}``).
        pix_fmt: output layout; default: ``info.pix_fmt`` for raw, its y4m equivalent for y4m, the closest layout
            the encoder takes otherwise (:func:`pick_pix_fmt`).
        audio_from: copy every audio and subtitle stream of this file (the NVC MKV or the source) that the output
            container can hold; ignored for y4m/raw.
        audio_offset: seconds to subtract from the copied timestamps; default: the file's carrier offset when it
            is an NVC MKV (:func:`nvc_pipe.media.mux.carrier_offset`), else 0.

    Raises:
        OutputError: the output cannot be created.
        ConfigError: unknown encoder, a pixel format the encoder/format cannot take.
        InputError: ``audio_from`` cannot be read.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if path == "-" or ext == ".y4m":
        if audio_from:
            log.info("y4m carries no audio; %s not copied", audio_from)
        return _StreamSink(path, info, _y4m_info(info, pix_fmt), y4m=True)
    if ext in RAW_EXTENSIONS:
        target = pix_fmt or (info.rgb_pix_fmt if ext == ".rgb" else info.pix_fmt)
        if target not in SUPPORTED_PIX_FMTS:
            raise ConfigError(f"raw output cannot be {target} (use one of {', '.join(SUPPORTED_PIX_FMTS)})")
        out_info = replace(info, pix_fmt=target)
        if _layout(target)[0] != info.family and _layout(target)[0] == "yuv" and info.family == "rgb":
            out_info = replace(out_info, color_range="pc")
        return _StreamSink(path, info, out_info, y4m=False)
    return _EncoderSink(
        path,
        info,
        vcodec=vcodec,
        codec_options=codec_options,
        pix_fmt=pix_fmt,
        audio_from=audio_from,
        audio_offset=audio_offset,
    )
