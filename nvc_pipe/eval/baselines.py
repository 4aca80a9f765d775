"""Conventional anchors through FFmpeg: x264, x265 and SVT-AV1 over a CRF sweep.

Two backends run the same encode:

- ``cli``: the ``ffmpeg`` program on PATH, reading the source file itself (``-f rawvideo`` with the geometry for
  raw ``.yuv``), cropping with ``-vf crop=w:h:x:y`` (the same even-aligned centre crop the metrics read) and
  stopping after ``-frames:v N``. The command recorded in the results is the exact argv that ran.
- ``pyav``: PyAV's bundled FFmpeg libraries in-process (no ffmpeg program needed). The frames come from
  :meth:`Source.iter_planes`; the recorded command is the equivalent ffmpeg command line, and ``options`` the
  encoder options that were set.

The output is the bare elementary stream (``-f h264`` / ``hevc`` / ``obu``), so its size *is* the number of bytes
of the video stream (parameter sets and sequence headers included, no container overhead); bpp is
``bytes·8 / (frames·width·height)``. Encoders run with their defaults apart from preset and CRF (no ``-tune``,
default GOP), logging silenced.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import numpy as np

from nvc_pipe.errors import ConfigError, InputError, OutputError

from .datasets import Planes, Source, split_i420

BACKENDS = ("auto", "cli", "pyav")


@dataclass(frozen=True)
class Anchor:
    name: str
    encoder: str                      # FFmpeg encoder name
    muxer: str                        # elementary-stream muxer
    ext: str
    default_preset: str
    default_crfs: tuple[int, ...]
    presets: tuple[str, ...]
    crf_range: tuple[int, int]
    cli_extra: tuple[str, ...] = ()
    pyav_options: dict = field(default_factory=dict)


_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                 "placebo")

ANCHORS: dict[str, Anchor] = {
    "x264": Anchor("x264", "libx264", "h264", ".264", "medium", (22, 27, 32, 37), _X26X_PRESETS, (0, 51)),
    "x265": Anchor("x265", "libx265", "hevc", ".265", "medium", (22, 27, 32, 37), _X26X_PRESETS, (0, 51),
                   ("-x265-params", "log-level=error"), {"x265-params": "log-level=error"}),
    "svtav1": Anchor("svtav1", "libsvtav1", "obu", ".obu", "8", (30, 38, 46, 54), tuple(str(i) for i in range(14)),
                     (1, 63)),
}
_ALIASES = {"h264": "x264", "avc": "x264", "libx264": "x264", "h265": "x265", "hevc": "x265",
            "libx265": "x265", "av1": "svtav1", "svt-av1": "svtav1", "libsvtav1": "svtav1", "svt": "svtav1"}


def get_anchor(name: str) -> Anchor | None:
    """The anchor called ``name`` (aliases: h264/avc, hevc/h265, av1/svt-av1), or None for a non-anchor codec."""
    key = name.lower()
    return ANCHORS.get(_ALIASES.get(key, key))


def check_preset(anchor: Anchor, preset: str) -> str:
    if preset not in anchor.presets:
        raise ConfigError(f"{anchor.name}: unknown preset {preset!r}; use one of {', '.join(anchor.presets)}")
    return preset


def check_crf(anchor: Anchor, crf: int) -> int:
    lo, hi = anchor.crf_range
    if not lo <= crf <= hi:
        raise ConfigError(f"{anchor.name}: CRF {crf} out of range {lo}..{hi}")
    return crf


# ---- backends ------------------------------------------------------------------------------------------------

def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown anchor backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "cli" if shutil.which("ffmpeg") else "pyav"
    if backend == "cli" and not shutil.which("ffmpeg"):
        raise ConfigError("anchor backend 'cli' needs the ffmpeg program on PATH (or use --anchor-backend pyav)")
    return backend


@lru_cache(maxsize=None)
def _cli_info() -> tuple[str, frozenset]:
    exe = shutil.which("ffmpeg") or "ffmpeg"
    try:
        ver = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True, timeout=60)
        enc = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"cannot run ffmpeg: {e}") from e
    first = (ver.stdout.splitlines() or ["ffmpeg version unknown"])[0].strip()
    parts = first.split()
    first = f"ffmpeg {parts[2]} (cli: {exe})" if len(parts) > 2 and parts[1] == "version" else first
    names = frozenset(line.split()[1] for line in enc.stdout.splitlines()
                      if len(line.split()) > 1 and line.startswith(" V"))
    return first, names


def backend_version(backend: str) -> str:
    if backend == "cli":
        return _cli_info()[0]
    import av

    return f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"


def check_available(anchor: Anchor, backend: str) -> None:
    """Raise ConfigError when the backend lacks the anchor's encoder."""
    if backend == "cli":
        if anchor.encoder not in _cli_info()[1]:
            raise ConfigError(f"{anchor.name}: this ffmpeg has no {anchor.encoder} encoder "
                              "(try --anchor-backend pyav)")
        return
    import av

    try:
        av.codec.Codec(anchor.encoder, "w")
    except Exception:
        raise ConfigError(f"{anchor.name}: PyAV's FFmpeg has no {anchor.encoder} encoder "
                          "(try --anchor-backend cli)") from None


def _fps_text(src: Source) -> str:
    f = src.fps
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def ffmpeg_command(src: Source, anchor: Anchor, preset: str, crf: int, out_path: str | Path,
                   exe: str = "ffmpeg") -> list[str]:
    """The ffmpeg argv encoding ``src`` (crop and frame limit included) into an elementary stream."""
    cmd = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y"]
    if src.kind == "raw":
        cmd += ["-f", "rawvideo", "-pix_fmt", src.pix_fmt, "-video_size", f"{src.width}x{src.height}",
                "-framerate", _fps_text(src)]
    cmd += ["-i", str(src.path), "-map", "0:v:0", "-an", "-frames:v", str(src.frames)]
    if src.crop:
        (cw, ch), (x0, y0) = src.crop, src.crop_offset
        cmd += ["-vf", f"crop={cw}:{ch}:{x0}:{y0}"]
    cmd += ["-c:v", anchor.encoder, "-preset", preset, "-crf", str(crf), *anchor.cli_extra,
            "-pix_fmt", src.pix_fmt, "-f", anchor.muxer, str(out_path)]
    return cmd


@dataclass
class EncodeResult:
    stream_path: Path
    stream_bytes: int
    encode_s: float
    command: str
    backend: str
    options: dict


def encode(src: Source, anchor: Anchor, preset: str, crf: int, out_path: str | Path,
           backend: str = "auto") -> EncodeResult:
    """Encode ``src`` with ``anchor`` at ``preset``/``crf`` into ``out_path`` (an elementary stream)."""
    backend = resolve_backend(backend)
    check_preset(anchor, preset)
    check_crf(anchor, crf)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    options = {"preset": preset, "crf": str(crf), **anchor.pyav_options}
    if backend == "cli":
        cmd = ffmpeg_command(src, anchor, preset, crf, out_path, exe=shutil.which("ffmpeg") or "ffmpeg")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "SVT_LOG": "1"})
        dt = time.perf_counter() - t0
        if proc.returncode != 0:
            out_path.unlink(missing_ok=True)
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise OutputError(f"{anchor.name} encode failed (exit {proc.returncode}): {tail}")
        record = shlex.join(cmd)
    else:
        dt = _encode_pyav(src, anchor, options, out_path)
        record = shlex.join(ffmpeg_command(src, anchor, preset, crf, out_path))
    if not out_path.is_file() or out_path.stat().st_size == 0:
        raise OutputError(f"{anchor.name} produced no output at {out_path}")
    return EncodeResult(out_path, out_path.stat().st_size, dt, record, backend_version(backend), options)


def _encode_pyav(src: Source, anchor: Anchor, options: dict, out_path: Path) -> float:
    import av

    w, h = src.out_width, src.out_height
    t0 = time.perf_counter()
    try:
        with av.open(str(out_path), "w", format=anchor.muxer) as out:
            st = out.add_stream(anchor.encoder, rate=src.fps)
            st.width, st.height, st.pix_fmt = w, h, src.pix_fmt
            st.options = dict(options)
            for i, (y, u, v) in enumerate(src.iter_planes()):
                arr = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
                frame = av.VideoFrame.from_ndarray(arr, format=src.pix_fmt)
                frame.pts = i
                for pkt in st.encode(frame):
                    out.mux(pkt)
            for pkt in st.encode(None):
                out.mux(pkt)
    except av.error.FFmpegError as e:
        out_path.unlink(missing_ok=True)
        raise OutputError(f"{anchor.name} encode failed (PyAV): {e}") from e
    return time.perf_counter() - t0


def decode_planes(path: str | Path, pix_fmt: str = "yuv420p") -> Iterator[Planes]:
    """Decode an anchor stream with PyAV's FFmpeg into ``(Y, U, V)`` planes per frame."""
    import av

    try:
        c = av.open(str(path))
    except Exception as e:
        raise InputError(f"{path}: cannot open for decoding ({e})") from e
    with c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in c.decode(stream):
            y, u, v = split_i420(frame.to_ndarray(format=pix_fmt), frame.width, frame.height)
            yield y, u, v
