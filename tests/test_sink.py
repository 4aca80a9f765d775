"""Frames back to FFmpeg: y4m through a real pipe into the ffmpeg binary (bit-exact), raw, PyAV encoders with audio."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from media_factory import FFMPEG, FFPROBE, make_video, md5, packets_of, pattern_rgb, run

from nvc_pipe.errors import ConfigError, OutputError
from nvc_pipe.media.clip import VideoInfo
from nvc_pipe.media.convert import frame_to_planes, yuv_planes
from nvc_pipe.media.demux import open_video
from nvc_pipe.media.mux import Packet, write_mkv
from nvc_pipe.media.sink import open_sink, pick_pix_fmt


def _frames(info: VideoInfo, n: int = 3) -> list[np.ndarray]:
    deep = info.bit_depth > 8
    return [pattern_rgb(info.width, info.height, i, deep) for i in range(n)]


def _planes_bytes(planes) -> bytes:
    return b"".join(p.astype("<u2").tobytes() if p.dtype == np.uint16 else p.tobytes() for p in planes)


def _probe(path: str) -> dict:
    r = run([FFPROBE, "-v", "error", "-show_streams", "-of", "json", path])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _time(ts, tb) -> Fraction:
    return ts * Fraction(tb.numerator, tb.denominator)


# ---------------------------------------------------------------------------------------------------------------
# y4m / raw
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pix_fmt,y4m_fmt,color_range",
    [
        ("yuv420p", "yuv420p", "tv"),
        ("yuv420p10le", "yuv420p10le", "tv"),
        ("yuv444p", "yuv444p", "pc"),
        ("yuv422p", "yuv422p", "tv"),
        ("yuv444p12le", "yuv444p12le", "tv"),
        ("gray", "gray", "pc"),
        ("gray10le", "gray10le", "pc"),
        ("rgb24", "yuv444p", "pc"),  # RGB goes to y4m as full-range 4:4:4
    ],
)
def test_y4m_pipe_to_ffmpeg_is_bit_exact(tmp_path, monkeypatch, pix_fmt, y4m_fmt, color_range):
    info = VideoInfo(33, 17, pix_fmt, Fraction(30000, 1001), Fraction(1001, 30000), color_range, "bt709")
    frames = _frames(info)
    raw_out = tmp_path / "decoded.raw"
    with open(raw_out, "wb") as sink_file:
        ffmpeg = subprocess.Popen([FFMPEG, "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-f", "rawvideo", "-"],
                                  stdin=subprocess.PIPE, stdout=sink_file, stderr=subprocess.PIPE)
        monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(ffmpeg.stdin))
        with open_sink("-", info) as sink:
            assert sink.out_pix_fmt == y4m_fmt
            for i, rgb in enumerate(frames):
                sink.write(rgb, i)
        monkeypatch.undo()
        ffmpeg.stdin.close()
        err = ffmpeg.stderr.read().decode()
        assert ffmpeg.wait(timeout=60) == 0, err
    out_info = VideoInfo(33, 17, y4m_fmt, info.fps, info.time_base, "pc" if pix_fmt == "rgb24" else color_range,
                         "bt709")
    expected = b"".join(_planes_bytes(yuv_planes(rgb, out_info)) for rgb in frames)
    assert md5(raw_out.read_bytes()) == md5(expected)


def test_y4m_file_header_and_range(tmp_path):
    info = VideoInfo(16, 8, "yuv420p10le", Fraction(25), Fraction(1, 25), "pc", "bt709")
    out = str(tmp_path / "o.y4m")
    with open_sink(out, info) as sink:
        for i, rgb in enumerate(_frames(info, 2)):
            sink.write(rgb, i)
    assert open(out, "rb").readline() == b"YUV4MPEG2 W16 H8 F25:1 Ip A1:1 C420p10 XCOLORRANGE=FULL\n"
    (stream,) = _probe(out)["streams"]
    assert stream["pix_fmt"] == "yuv420p10le" and stream["color_range"] == "pc"
    with open_video(out) as src:  # and we read our own output back
        assert src.info.pix_fmt == "yuv420p10le" and src.info.color_range == "pc"
        assert len(list(src.frames())) == 2


def test_raw_outputs(tmp_path):
    info = VideoInfo(17, 9, "yuv422p", Fraction(25), Fraction(1, 25))
    frames = _frames(info, 2)
    out = str(tmp_path / "o.yuv")
    with open_sink(out, info) as sink:
        for i, rgb in enumerate(frames):
            sink.write(rgb, i)
    assert open(out, "rb").read() == b"".join(_planes_bytes(yuv_planes(rgb, info)) for rgb in frames)
    out = str(tmp_path / "o.rgb")
    with open_sink(out, info) as sink:
        for i, rgb in enumerate(frames):
            sink.write(rgb, i)
    assert open(out, "rb").read() == b"".join(rgb.tobytes() for rgb in frames)
    out = str(tmp_path / "p.yuv")
    with open_sink(out, info, pix_fmt="yuv420p10le") as sink:
        sink.write(frames[0], 0)
    assert os.path.getsize(out) == (17 * 9 + 2 * 9 * 5) * 2


def test_broken_pipe_is_one_output_error(monkeypatch):
    info = VideoInfo(64, 48, "yuv444p", Fraction(25), Fraction(1, 25))
    reader = subprocess.Popen(["true"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    reader.wait(timeout=30)  # the reader is gone before we write
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(reader.stdin))
    rgb = _frames(info, 1)[0]
    with pytest.raises(OutputError) as err:
        with open_sink("-", info) as sink:
            for i in range(20):
                sink.write(rgb, i)
    assert "broken pipe" in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------------
# PyAV encoders
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A source mp4 with AAC audio, its info and decoded frames."""
    path = str(tmp_path_factory.mktemp("sink_src") / "src.mp4")
    make_video(path, 64, 48, 8, audio=True)
    with open_video(path) as src:
        return path, src.info, list(src.frames())


def _decode(path):
    with av.open(path) as c:
        v = c.streams.video[0]
        frames = [(f.pts, f.time_base, f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    return frames


def _sync(path) -> Fraction:
    """First audio packet time minus first video frame time (one demux pass: a seek would skip the priming)."""
    with av.open(path) as c:
        times = {"video": [], "audio": []}
        for p in c.demux():
            if p.pts is not None and p.stream.type in times:
                times[p.stream.type].append(_time(p.pts, p.time_base))
    return min(times["audio"]) - min(times["video"])


def test_mp4_with_audio(tmp_path, clip):
    src, info, frames = clip
    out = str(tmp_path / "o.mp4")
    with open_sink(out, info, audio_from=src) as sink:
        for rgb, pts in frames:
            sink.write(rgb, pts)
    assert sink.out_pix_fmt == "yuv420p"
    streams = _probe(out)["streams"]
    assert [s["codec_name"] for s in streams] == ["h264", "aac"]
    decoded = _decode(out)
    assert len(decoded) == len(frames)
    for (pts, tb, rgb), (ref, ref_pts) in zip(decoded, frames):
        assert _time(pts, tb) == ref_pts * info.time_base  # same presentation times
        mse = np.mean((rgb.astype(float) - ref.astype(float)) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 30  # crf 18 on tiny noisy frames; PyAV's own chroma upsampling
    assert [p[0] for p in packets_of(out, "audio")] == [p[0] for p in packets_of(src, "audio")]
    assert abs(_sync(out) - _sync(src)) <= Fraction(1, 1000)


def test_mkv_from_nvc_mkv_keeps_audio_in_sync(tmp_path, clip):
    """Decode path: frames timed by the original pts, audio copied out of our MKV (carrier offset undone)."""
    src, info, frames = clip
    nvc = str(tmp_path / "coded.mkv")
    packets = [Packet(b"AU01" + bytes(8), pts, round(info.frame_duration)) for _, pts in frames]
    write_mkv(nvc, b"\x8bNVC\x01\x00", packets, info, {"NVC_CODEC": "test"}, copy_from=src)
    out = str(tmp_path / "decoded.mkv")
    with open_sink(out, info, audio_from=nvc) as sink:
        for rgb, pts in frames:
            sink.write(rgb, pts)
    streams = _probe(out)["streams"]
    assert [s["codec_type"] for s in streams] == ["video", "audio"]  # our carrier track is not copied
    assert [p[0] for p in packets_of(out, "audio")] == [p[0] for p in packets_of(src, "audio")]
    assert abs(_sync(out) - _sync(src)) <= Fraction(1, 1000)


@pytest.mark.parametrize("pix_fmt", ["yuv420p10le", "yuv444p", "gray"])
def test_ffv1_is_lossless(tmp_path, pix_fmt):
    info = VideoInfo(33, 17, pix_fmt, Fraction(24), Fraction(1, 24), "tv", "bt709")
    frames = _frames(info, 2)
    out = str(tmp_path / "o.mkv")
    with open_sink(out, info, vcodec="ffv1") as sink:
        for i, rgb in enumerate(frames):
            sink.write(rgb, i)
    assert sink.out_pix_fmt == pix_fmt
    with av.open(out) as c:
        decoded = [frame_to_planes(f) for f in c.decode(video=0)]
    for planes, rgb in zip(decoded, frames):
        assert all(np.array_equal(a, b) for a, b in zip(planes, yuv_planes(rgb, info)))


def test_other_containers(tmp_path, clip, caplog):
    src, info, frames = clip
    caplog.set_level(logging.WARNING)
    for name, codec in [("o.webm", "vp9"), ("o.avi", "ffv1"), ("o.mov", "h264")]:
        out = str(tmp_path / name)
        with open_sink(out, info, audio_from=src) as sink:
            for rgb, pts in frames[:3]:
                sink.write(rgb, pts)
        streams = _probe(out)["streams"]
        assert streams[0]["codec_name"] == codec
        assert len(_decode(out)) == 3
    assert "cannot go into webm" in caplog.text  # AAC is not allowed in WebM: dropped with a warning
    out = str(tmp_path / "ten.mp4")
    ten = VideoInfo(32, 16, "yuv420p10le", Fraction(25), Fraction(1, 25))
    with open_sink(out, ten, codec_options={"crf": "30", "preset": "ultrafast"}) as sink:
        sink.write(_frames(ten, 1)[0], 0)
    assert _probe(out)["streams"][0]["pix_fmt"] == "yuv420p10le"
    out = str(tmp_path / "j.mp4")
    with open_sink(out, info, pix_fmt="yuvj420p") as sink:
        sink.write(frames[0][0], 0)
    assert _probe(out)["streams"][0]["pix_fmt"] == "yuvj420p"


def test_subtitles_copied_where_possible(tmp_path, caplog):
    src = str(tmp_path / "subs.mkv")
    make_video(src, 32, 16, 3, audio=True, subtitles=True)
    with open_video(src) as v:
        info, frames = v.info, list(v.frames())
    out = str(tmp_path / "o.mkv")
    with open_sink(out, info, audio_from=src) as sink:
        for rgb, pts in frames:
            sink.write(rgb, pts)
    assert packets_of(out, "subtitle") == packets_of(src, "subtitle")
    out = str(tmp_path / "o.mp4")
    caplog.set_level(logging.WARNING)
    with open_sink(out, info, audio_from=src) as sink:
        for rgb, pts in frames:
            sink.write(rgb, pts)
    assert [s["codec_type"] for s in _probe(out)["streams"]] == ["video", "audio"]
    assert "cannot go into mp4" in caplog.text


def test_pick_pix_fmt():
    def info(fmt):
        return VideoInfo(16, 16, fmt, 25, Fraction(1, 25))

    assert pick_pix_fmt("libx264", info("yuv420p")) == "yuv420p"
    assert pick_pix_fmt("libx264", info("rgb24")) == "yuv444p"
    assert pick_pix_fmt("libx264", info("gray10le")) == "gray10le"
    assert pick_pix_fmt("libx264", info("yuv422p12le")) == "yuv422p10le"
    assert pick_pix_fmt("libvpx-vp9", info("yuv420p10le")) in ("yuv420p", "yuv420p10le")
    assert pick_pix_fmt("libvpx-vp9", info("rgb24")) == "gbrp"
    assert pick_pix_fmt("libvpx-vp9", info("gray")) == "yuv420p"
    assert pick_pix_fmt("mpeg4", info("yuv444p10le")) == "yuv420p"


# ---------------------------------------------------------------------------------------------------------------
# atomicity and errors
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["o.mp4", "o.y4m", "o.yuv"])
def test_partial_output_removed(tmp_path, clip, name):
    src, info, frames = clip
    out = tmp_path / name
    with pytest.raises(RuntimeError):
        with open_sink(str(out), info, audio_from=src if name.endswith("mp4") else None) as sink:
            sink.write(*frames[0])
            raise RuntimeError("decoder died")
    assert os.listdir(tmp_path) == []
    out.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with open_sink(str(out), info) as sink:
            sink.write(*frames[0])
            raise KeyboardInterrupt
    assert out.read_bytes() == b"old" and os.listdir(tmp_path) == [name]


def test_sink_errors(tmp_path, clip):
    src, info, frames = clip
    with pytest.raises(ConfigError):
        open_sink(str(tmp_path / "a.mp4"), info, vcodec="no-such-encoder")
    with pytest.raises(ConfigError):
        open_sink(str(tmp_path / "a.mp4"), info, pix_fmt="yuv410p")
    with pytest.raises(ConfigError):
        open_sink(str(tmp_path / "a.y4m"), info, pix_fmt="rgb24")
    with pytest.raises(OutputError):
        open_sink(str(tmp_path / "a.unknownext"), info)
    with pytest.raises(OutputError):
        open_sink(str(tmp_path / "missing" / "a.mp4"), info)
    with pytest.raises(OutputError):
        with open_sink(str(tmp_path / "empty.mp4"), info):
            pass  # no frames
    with pytest.raises(ValueError):
        with open_sink(str(tmp_path / "bad.yuv"), info) as sink:
            sink.write(np.zeros((4, 4, 3), np.uint8), 0)
    assert os.listdir(tmp_path) == []
