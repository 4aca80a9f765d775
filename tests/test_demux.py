"""Demux and colour conversion on real media: containers, y4m (file and stdin), raw, odd sizes, 10-bit, RGB, errors."""

from __future__ import annotations

import io
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from media_factory import make_audio_only, make_video, pattern_rgb

from nvc_pipe.errors import ConfigError, InputError
from nvc_pipe.media.clip import SUPPORTED_PIX_FMTS, Segment, VideoInfo, normalize_pix_fmt
from nvc_pipe.media.convert import frame_to_rgb, plane_shapes, planes_to_frame, rgb_to_frame, yuv_planes
from nvc_pipe.media.demux import RawOptions, count_frames, open_video


def _planes_bytes(planes):
    return b"".join(p.astype("<u2").tobytes() if p.dtype == np.uint16 else p.tobytes() for p in planes)


def _roundtrip_diff(src_bytes: bytes, rgb: np.ndarray, info: VideoInfo) -> tuple[int, float]:
    """Max abs difference and fraction of differing samples between source planes and yuv_planes(rgb)."""
    dtype = np.uint16 if info.bit_depth > 8 else np.uint8
    a = np.frombuffer(src_bytes, dtype).astype(np.int64)
    b = np.frombuffer(_planes_bytes(yuv_planes(rgb, info)), dtype).astype(np.int64)
    assert a.shape == b.shape
    return int(np.abs(a - b).max()), float((a != b).mean())


# ---------------------------------------------------------------------------------------------------------------
# containers
# ---------------------------------------------------------------------------------------------------------------
def test_mp4_h264(tmp_path):
    path = str(tmp_path / "a.mp4")
    make_video(path, 32, 24, 5, audio=True)
    with open_video(path) as src:
        info = src.info
        frames = list(src.frames())
        assert src.path == path
    assert (info.width, info.height, info.pix_fmt) == (32, 24, "yuv420p")
    assert info.fps == 25 and isinstance(info.fps, Fraction) and isinstance(info.time_base, Fraction)
    assert info.color_range == "tv" and info.colorspace == "bt601"
    assert len(frames) == 5
    pts = [p for _, p in frames]
    step = round(1 / (info.fps * info.time_base))
    assert pts == [pts[0] + i * step for i in range(5)]
    assert all(rgb.shape == (24, 32, 3) and rgb.dtype == np.uint8 for rgb, _ in frames)
    assert count_frames(path) == 5


@pytest.mark.parametrize(
    "name,kw,depth",
    [
        ("odd.mkv", dict(w=97, h=55, pix_fmt="yuv420p"), 8),
        ("ten.mkv", dict(pix_fmt="yuv420p10le"), 10),
        ("ten_odd.mkv", dict(w=33, h=17, pix_fmt="yuv420p10le"), 10),
        ("444.mkv", dict(pix_fmt="yuv444p"), 8),
        ("422.nut", dict(pix_fmt="yuv422p10le"), 10),
        ("gray.mkv", dict(pix_fmt="gray"), 8),
        ("gray10.mkv", dict(pix_fmt="gray10le"), 10),
        ("gbrp10.mkv", dict(pix_fmt="gbrp10le"), 10),
    ],
)
def test_lossless_sources_roundtrip(tmp_path, name, kw, depth):
    """ffv1 sources: yuv -> rgb -> yuv through our conversion gives back the source planes (near-)exactly."""
    path = str(tmp_path / name)
    src_frames = make_video(path, n=3, **kw)
    with open_video(path) as src:
        info = src.info
        frames = list(src.frames())
    assert info.pix_fmt == kw["pix_fmt"]
    assert info.bit_depth == depth
    assert len(frames) == 3
    for (rgb, _), raw in zip(frames, src_frames):
        assert rgb.shape == (info.height, info.width, 3)
        assert rgb.dtype == (np.uint8 if depth == 8 else np.uint16)
        worst, frac = _roundtrip_diff(raw, rgb, info)
        assert worst <= (2 if depth == 8 else 8) and frac <= 0.02, (worst, frac)
    assert count_frames(path) == 3


def test_rgb_sources_are_exact(tmp_path):
    path = str(tmp_path / "c.rgb")
    raw = make_video(path, 20, 10, 3, pix_fmt="rgb24")
    with open_video(path, RawOptions(size=(20, 10), fps=Fraction(24))) as src:  # .rgb defaults to rgb24
        info = src.info
        frames = list(src.frames())
    assert info.pix_fmt == "rgb24" and info.color_range == "pc" and info.time_base == Fraction(1, 24)
    for (rgb, _), data in zip(frames, raw):
        assert rgb.tobytes() == data
    path = str(tmp_path / "bgr.mkv")
    make_video(path, 20, 10, 2, pix_fmt="bgr0")
    with open_video(path) as src:
        assert src.info.pix_fmt == "rgb24"
        rgb, _ = next(src.frames())
    bgr0 = av.open(path)
    ref = next(bgr0.decode(video=0)).to_ndarray(format="rgb24")
    bgr0.close()
    assert np.array_equal(rgb, ref)


def test_full_range_source(tmp_path):
    path = str(tmp_path / "j.mp4")
    make_video(path, 32, 24, 2, pix_fmt="yuvj420p", codec="libx264")
    with open_video(path) as src:
        assert src.info.pix_fmt == "yuv420p"
        assert src.info.color_range == "pc"
        assert len(list(src.frames())) == 2


def test_y4m_file(tmp_path):
    path = str(tmp_path / "v.y4m")
    raw = make_video(path, 33, 17, 4, pix_fmt="yuv420p10le", fps=Fraction(30000, 1001))
    with open_video(path) as src:
        info = src.info
        frames = list(src.frames())
    assert info.pix_fmt == "yuv420p10le" and info.fps == Fraction(30000, 1001)
    assert info.time_base == 1 / info.fps
    assert [p for _, p in frames] == [0, 1, 2, 3]
    for (rgb, _), data in zip(frames, raw):
        worst, frac = _roundtrip_diff(data, rgb, info)
        assert worst <= 8 and frac <= 0.02
    assert count_frames(path) == 4


def test_y4m_stdin(tmp_path, monkeypatch):
    path = tmp_path / "in.y4m"
    make_video(str(path), 16, 8, 3, pix_fmt="yuv444p")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(open(path, "rb")))
    with open_video("-") as src:
        assert src.path is None
        assert src.info.pix_fmt == "yuv444p"
        assert [p for _, p in src.frames()] == [0, 1, 2]
    with pytest.raises(InputError):
        count_frames("-")


def test_raw_yuv(tmp_path):
    path = str(tmp_path / "r.yuv")
    raw = make_video(path, 97, 55, 3, pix_fmt="yuv420p")
    opts = RawOptions(size=(97, 55), fps=Fraction(25), pix_fmt="yuv420p")
    with open_video(path, opts) as src:
        info = src.info
        assert src.path is None
        frames = list(src.frames())
    assert [p for _, p in frames] == [0, 1, 2] and info.time_base == Fraction(1, 25)
    for (rgb, _), data in zip(frames, raw):
        worst, frac = _roundtrip_diff(data, rgb, info)
        assert worst <= 2 and frac <= 0.02
    assert count_frames(path, opts) == 3
    # a trailing partial frame is ignored (with a warning), not an error
    with open(path, "ab") as fh:
        fh.write(b"\x80" * 100)
    assert count_frames(path, opts) == 3
    with open_video(path, opts) as src:
        assert len(list(src.frames())) == 3


def test_raw_needs_options(tmp_path):
    path = str(tmp_path / "r.yuv")
    make_video(path, 16, 8, 1)
    with pytest.raises(ConfigError, match="--size.*--fps.*--pix-fmt"):
        open_video(path)
    with pytest.raises(ConfigError, match="--pix-fmt") as err:
        open_video(path, RawOptions(size=(16, 8), fps=Fraction(25)))
    assert "--size" not in str(err.value)
    with pytest.raises(ConfigError, match="pixel format"):
        open_video(path, RawOptions(size=(16, 8), fps=Fraction(25), pix_fmt="nope"))


def test_segments(tmp_path):
    path = str(tmp_path / "s.mkv")
    make_video(path, 16, 8, 5)
    with open_video(path) as src:
        segs = list(src.segments(2))
    assert [len(s) for s in segs] == [2, 2, 1]
    assert [s.start for s in segs] == [0, 2, 4] and [s.index for s in segs] == [0, 1, 2]
    assert all(isinstance(s, Segment) and s.rgb.shape[1:] == (8, 16, 3) and s.pts.dtype == np.int64 for s in segs)
    assert np.concatenate([s.pts for s in segs]).tolist() == [0, 40, 80, 120, 160]
    with open_video(path) as src:
        (whole,) = list(src.segments(None))
        assert len(whole) == 5 and whole.start == 0
        with pytest.raises(RuntimeError):
            list(src.frames())
    with open_video(path) as src:
        with pytest.raises(ConfigError):
            list(src.segments(0))


# ---------------------------------------------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------------------------------------------
def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_video(str(tmp_path / "missing.mp4"))
    text = tmp_path / "notes.mp4"
    text.write_text("just some text, not a video\n" * 20)
    with pytest.raises(InputError) as err:
        open_video(str(text))
    assert "\n" not in str(err.value)
    audio = str(tmp_path / "audio.m4a")
    make_audio_only(audio)
    with pytest.raises(InputError, match="no video stream"):
        open_video(audio)
    empty = tmp_path / "empty.yuv"
    empty.write_bytes(b"")
    opts = RawOptions(size=(16, 8), fps=Fraction(25), pix_fmt="yuv420p")
    with pytest.raises(InputError, match="no video frames"):
        open_video(str(empty), opts)
    assert count_frames(str(empty), opts) == 0
    short = tmp_path / "short.yuv"
    short.write_bytes(b"\x10" * 50)
    with pytest.raises(InputError):
        open_video(str(short), opts)
    with pytest.raises(InputError):
        open_video(str(tmp_path))
    with pytest.raises(InputError):
        count_frames(str(text))


# ---------------------------------------------------------------------------------------------------------------
# clip: layouts and conversion
# ---------------------------------------------------------------------------------------------------------------
def test_normalize_pix_fmt():
    expect = {
        "yuvj420p": ("yuv420p", "pc"),
        "nv12": ("yuv420p", None),
        "p010le": ("yuv420p10le", None),
        "yuv411p": ("yuv422p", None),
        "yuv440p": ("yuv444p", None),
        "yuva420p": ("yuv420p", None),
        "rgba": ("rgb24", None),
        "bgr0": ("rgb24", None),
        "gbrap": ("gbrp", None),
        "gbrp9le": ("gbrp10le", None),
        "rgba64le": ("rgb48le", None),
        "gray9le": ("gray10le", None),
        "uyvy422": ("yuv422p", None),
        "pal8": ("rgb24", None),
    }
    for name, want in expect.items():
        assert normalize_pix_fmt(name) == want, name
    for name in SUPPORTED_PIX_FMTS:
        assert normalize_pix_fmt(name) == (name, None)
    with pytest.raises(InputError):
        normalize_pix_fmt("no_such_format")


def test_video_info():
    info = VideoInfo(97, 55, "yuv420p10le", Fraction(30000, 1001), Fraction(1, 30000), "tv", "smpte170m")
    assert info.colorspace == "bt601" and info.bit_depth == 10 and info.max_value == 65535
    assert info.frame_duration == 1001 and info.chroma_shift == (1, 1) and info.family == "yuv"
    assert VideoInfo(8, 8, "rgb24", 25, Fraction(1, 25)).max_value == 255
    with pytest.raises(ValueError):
        VideoInfo(8, 8, "nv12", 25, Fraction(1, 25))
    with pytest.raises(ValueError):
        VideoInfo(0, 8, "yuv420p", 25, Fraction(1, 25))
    with pytest.raises(ValueError):
        VideoInfo(8, 8, "yuv420p", 25, Fraction(1, 25), "full")


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
@pytest.mark.parametrize("color_range", ["tv", "pc"])
@pytest.mark.parametrize("colorspace", ["bt601", "bt709"])
def test_yuv_rgb_yuv_roundtrip(pix_fmt, color_range, colorspace):
    """yuv420p -> rgb -> yuv420p is the identity up to rounding, 8 and 10 bit, odd size, both ranges."""
    w, h = 33, 19
    deep = pix_fmt.endswith("10le")
    info = VideoInfo(w, h, pix_fmt, 25, Fraction(1, 25), color_range, colorspace)
    # natural-looking YUV: FFmpeg's own (bilinear) conversion of a smooth RGB pattern
    src = av.VideoFrame.from_ndarray(pattern_rgb(w, h, 3, deep), format="rgb48le" if deep else "rgb24")
    yuv = src.reformat(format=pix_fmt, dst_colorspace="itu709" if colorspace == "bt709" else "itu601",
                       dst_color_range=2 if color_range == "pc" else 1)
    from nvc_pipe.media.convert import frame_to_planes

    planes = frame_to_planes(yuv)
    assert [p.shape for p in planes] == plane_shapes(pix_fmt, w, h)
    rgb = frame_to_rgb(yuv, info)
    back = yuv_planes(rgb, info)
    limit = {("tv", False): 2, ("pc", False): 1, ("tv", True): 8, ("pc", True): 4}[(color_range, deep)]
    for a, b in zip(planes, back):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= limit
    if color_range == "tv":  # limited range: almost every sample comes back exactly
        assert np.mean([np.mean(a != b) for a, b in zip(planes, back)]) < 0.01
    # and the conversion is stable: a second round trip changes nothing more than rounding noise
    again = yuv_planes(frame_to_rgb(rgb_to_frame(rgb, info), info), info)
    for a, b in zip(back, again):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= limit


@pytest.mark.parametrize("pix_fmt", ["gray", "gray10le", "gray12le", "rgb24", "gbrp", "gbrp10le", "rgb48le"])
def test_gray_and_rgb_layouts_exact(pix_fmt):
    info = VideoInfo(13, 7, pix_fmt, 25, Fraction(1, 25))
    rng = np.random.default_rng(0)
    planes = [rng.integers(0, (1 << info.bit_depth), size=s).astype(np.uint8 if info.bit_depth == 8 else np.uint16)
              for s in plane_shapes(pix_fmt, 13, 7)]
    frame = planes_to_frame(planes, pix_fmt, 13, 7)
    rgb = frame_to_rgb(frame, info)
    assert rgb.dtype == info.rgb_dtype
    for a, b in zip(planes, yuv_planes(rgb, info)):
        assert np.array_equal(a, b)


def test_bad_rgb_array():
    info = VideoInfo(8, 4, "yuv420p", 25, Fraction(1, 25))
    with pytest.raises(ValueError):
        yuv_planes(np.zeros((4, 8, 3), np.uint16), info)
    with pytest.raises(ValueError):
        rgb_to_frame(np.zeros((4, 9, 3), np.uint8), info)
