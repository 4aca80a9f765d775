"""Small real media for the I/O tests, made with PyAV (and the ffmpeg binary where a test needs a second opinion).

Everything is tiny (<= 64x64, a handful of frames) so the suite stays fast on two shared cores.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from fractions import Fraction

import av
import numpy as np

FFMPEG = shutil.which("ffmpeg") or "/usr/bin/ffmpeg"
FFPROBE = shutil.which("ffprobe") or "/usr/bin/ffprobe"

_CONTAINER_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "ffv1", ".avi": "ffv1", ".webm": "libvpx-vp9",
                     ".nut": "ffv1"}


def pattern_rgb(w: int, h: int, index: int, deep: bool = False) -> np.ndarray:
    """A smooth moving colour pattern with a little noise: natural-ish, deterministic per frame index."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    t = index * 0.7
    chans = [
        0.5 + 0.35 * np.sin(x / 5.0 + t) * np.cos(y / 7.0),
        0.5 + 0.35 * np.cos((x + y) / 9.0 - t),
        0.5 + 0.30 * np.sin(y / 4.0 + 0.5 * t),
    ]
    img = np.stack(chans, axis=-1)
    img += np.random.default_rng(index).normal(0.0, 0.01, img.shape)
    img = np.clip(img, 0.0, 1.0)
    if deep:
        return np.round(img * 65535).astype(np.uint16)
    return np.round(img * 255).astype(np.uint8)


def source_frames(w: int, h: int, n: int, pix_fmt: str) -> list[av.VideoFrame]:
    """``n`` frames of :func:`pattern_rgb` converted to ``pix_fmt`` by FFmpeg (default swscale settings)."""
    fmt = av.VideoFormat(pix_fmt)
    deep = max(c.bits for c in fmt.components) > 8
    frames = []
    for i in range(n):
        rgb = av.VideoFrame.from_ndarray(pattern_rgb(w, h, i, deep), format="rgb48le" if deep else "rgb24")
        frames.append(rgb.reformat(format=pix_fmt) if pix_fmt != rgb.format.name else rgb)
    return frames


def frame_bytes(frame: av.VideoFrame) -> bytes:
    """Tightly packed rawvideo bytes of a planar or packed-RGB frame (no row padding)."""
    out = []
    fmt = frame.format
    for i, plane in enumerate(frame.planes):
        comps = [c for c in fmt.components if c.plane == i]
        bps = 2 if max(c.bits for c in comps) > 8 else 1
        row = plane.width * len(comps) * bps
        raw = np.frombuffer(plane, np.uint8)[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)
        out.append(raw[:, :row].tobytes())
    return b"".join(out)


def _audio_frames(rate: int, seconds: float, layout: str = "stereo", fmt: str = "fltp"):
    samples = int(round(rate * seconds))
    t = np.arange(samples) / rate
    tone = (0.2 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    channels = 2 if layout == "stereo" else 1
    data = np.stack([tone] * channels)
    step = 1024
    for start in range(0, samples, step):
        chunk = np.ascontiguousarray(data[:, start:start + step])
        frame = av.AudioFrame.from_ndarray(chunk, format=fmt, layout=layout)
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        yield frame


def make_video(
    path: str,
    w: int = 32,
    h: int = 24,
    n: int = 4,
    pix_fmt: str = "yuv420p",
    codec: str | None = None,
    fps: Fraction | int = 25,
    audio: bool = False,
    color_range: str | None = None,
    subtitles: bool = False,
) -> list[bytes]:
    """Write a small video and return the raw bytes of each source frame (as FFmpeg's rawvideo lays them out).

    ``.yuv``/``.rgb``/``.raw``: headerless frames; ``.y4m``: yuv4mpegpipe; other extensions: a container with
    ``codec`` (default: ffv1 for mkv/avi/nut (lossless), libx264 for mp4/mov, libvpx-vp9 for webm), optionally
    a 48 kHz stereo AAC (Opus for webm) tone and a SubRip track (mkv).
    """
    fps = Fraction(fps)
    ext = os.path.splitext(path)[1].lower()
    frames = source_frames(w, h, n, pix_fmt)
    if color_range == "pc":
        for f in frames:
            f.color_range = 2
    if ext in (".yuv", ".rgb", ".raw"):
        with open(path, "wb") as fh:
            for f in frames:
                fh.write(frame_bytes(f))
        return [frame_bytes(f) for f in frames]
    if ext == ".y4m":
        oc = av.open(path, "w", format="yuv4mpegpipe", options={"strict": "-1"})
        vcodec = "wrapped_avframe"
    else:
        oc = av.open(path, "w")
        vcodec = codec or _CONTAINER_CODECS.get(ext, "ffv1")
    st = oc.add_stream(vcodec, rate=fps)
    st.width, st.height, st.pix_fmt = w, h, pix_fmt
    st.codec_context.time_base = 1 / fps
    if color_range == "pc":
        st.codec_context.color_range = 2
    if vcodec == "libx264":
        st.codec_context.options = {"crf": "10", "preset": "ultrafast"}
    ast = None
    if audio:
        ast = oc.add_stream("libopus" if ext == ".webm" else "aac", rate=48000)
        ast.layout = "stereo"
    sst = None
    if subtitles:
        sst = oc.add_mux_stream("subrip")  # no encoder needed: packets are the text
    for i, f in enumerate(frames):
        f.pts = i
        f.time_base = 1 / fps
        for p in st.encode(f):
            oc.mux(p)
    for p in st.encode(None):
        oc.mux(p)
    if ast is not None:
        for af in _audio_frames(48000, n / fps):
            for p in ast.encode(af):
                oc.mux(p)
        for p in ast.encode(None):
            oc.mux(p)
    if sst is not None:
        for k, text in enumerate([b"hello", b"world"]):
            pkt = av.Packet(text)
            pkt.stream = sst
            pkt.time_base = Fraction(1, 1000)
            pkt.pts = pkt.dts = k * 40
            pkt.duration = 40
            oc.mux(pkt)
    oc.close()
    return [frame_bytes(f) for f in frames]


def make_audio_only(path: str, seconds: float = 0.2) -> None:
    """An audio-only file (no video stream)."""
    oc = av.open(path, "w")
    ast = oc.add_stream("aac", rate=48000)
    ast.layout = "stereo"
    for af in _audio_frames(48000, seconds):
        for p in ast.encode(af):
            oc.mux(p)
    for p in ast.encode(None):
        oc.mux(p)
    oc.close()


def packets_of(path: str, kind: str) -> list[tuple[bytes, int | None, int | None]]:
    """``(bytes, pts, duration)`` of every packet of every ``kind`` ("audio", "subtitle") stream, in file order."""
    with av.open(path) as c:
        idx = {s.index for s in c.streams if s.type == kind and not any(k.upper() == "NVC_CODEC" for k in s.metadata)}
        return [(bytes(p), p.pts, p.duration) for p in c.demux() if p.size and p.stream.index in idx]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run a command with captured text output (no check)."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


def ffprobe_errors(path: str) -> str:
    """What ``ffprobe -v error`` prints for a file (empty when clean)."""
    r = run([FFPROBE, "-v", "error", path])
    return (r.stdout + r.stderr).strip()


def ffmpeg_copy(src: str, dst: str) -> None:
    """``ffmpeg -i src -map 0 -c copy dst`` with the Debian binary; raises on failure."""
    r = run([FFMPEG, "-v", "error", "-y", "-i", src, "-map", "0", "-c", "copy", dst])
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg -c copy failed: {r.stderr.strip()}")


def md5(data: bytes) -> str:
    """Hex md5 of bytes."""
    return hashlib.md5(data).hexdigest()
