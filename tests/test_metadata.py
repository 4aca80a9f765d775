"""Metadata in → out: colour description and rotation reach the MKV track and the decoded output; alpha is refused
unless --drop-alpha; interlaced input, VFR into y4m and lost bit depth give one warning line each. Inputs are made
by the real ffmpeg binary."""

from __future__ import annotations

import json
import logging
import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
from media_factory import FFMPEG, FFPROBE, run

from nvc_pipe.api import decode_file, encode_file
from nvc_pipe.errors import InputError
from nvc_pipe.media.clip import VideoInfo
from nvc_pipe.media.demux import open_video
from nvc_pipe.media.mux import with_track_metadata
from nvc_pipe.media.sink import open_sink

TESTSRC = ["-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=0.16"]


def _ffmpeg(*args: str) -> None:
    r = run([FFMPEG, "-v", "error", "-y", *args])
    assert r.returncode == 0, r.stderr


def _probe_video(path) -> dict:
    r = run([FFPROBE, "-v", "error", "-show_streams", "-select_streams", "v", "-of", "json", str(path)])
    return json.loads(r.stdout)["streams"][0]


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(scope="module")
def hdr_rotated(tmp_path_factory):
    """BT.2020/PQ-tagged H.264 with a 90° display matrix, its tiny encode and the MP4 decode of that."""
    d = tmp_path_factory.mktemp("meta")
    plain, src = d / "plain.mp4", d / "src.mp4"
    _ffmpeg(*TESTSRC, "-c:v", "libx264", "-pix_fmt", "yuv420p", "-color_primaries", "bt2020", "-color_trc",
            "smpte2084", "-colorspace", "bt2020nc", str(plain))
    _ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(src))
    mkv, mp4 = d / "out.mkv", d / "out.mp4"
    encode_file(str(src), str(mkv), preset="tiny", device="cpu", progress=False)
    decode_file(str(mkv), str(mp4), device="cpu")
    return {"src": src, "mkv": mkv, "mp4": mp4, "dir": d}


def test_colour_and_rotation_reach_the_mkv(hdr_rotated):
    with open_video(str(hdr_rotated["src"])) as src:
        info = src.info
    assert (info.color_primaries, info.color_trc, info.rotation, info.colorspace) == (9, 16, 90, "bt2020")
    v = _probe_video(hdr_rotated["mkv"])
    assert v["codec_tag_string"] == "NVC1"
    assert (v["color_primaries"], v["color_transfer"], v["color_space"]) == ("bt2020", "smpte2084", "bt2020nc")
    out = run(["mkvinfo", str(hdr_rotated["mkv"])]).stdout if shutil.which("mkvinfo") else ""
    assert "Color primaries: 9" in out and "Color transfer: 16" in out and "roll rotation: 90" in out
    back = with_track_metadata(VideoInfo(32, 24, "yuv420p", 25, Fraction(1, 25)), str(hdr_rotated["mkv"]))
    assert (back.color_primaries, back.color_trc, back.rotation) == (9, 16, 90)


def test_colour_and_rotation_reach_the_decoded_file(hdr_rotated):
    v = _probe_video(hdr_rotated["mp4"])
    assert (v["color_primaries"], v["color_transfer"], v["color_space"]) == ("bt2020", "smpte2084", "bt2020nc")
    with av.open(str(hdr_rotated["mp4"])) as c:
        frame = next(c.decode(video=0))
        assert frame.rotation == 90


def test_y4m_output_warns_that_rotation_is_lost(hdr_rotated, caplog):
    with caplog.at_level(logging.WARNING):
        decode_file(str(hdr_rotated["mkv"]), str(hdr_rotated["dir"] / "o.y4m"), device="cpu")
    assert sum("rotation" in m for m in _warnings(caplog)) == 1


def test_alpha_is_refused_unless_dropped(tmp_path, nvc):
    src = tmp_path / "alpha.mkv"
    _ffmpeg(*TESTSRC, "-vf", "format=yuva420p", "-c:v", "ffv1", str(src))
    out = tmp_path / "o.mkv"
    r = nvc("encode", str(src), "-o", str(out), "--preset", "tiny", "--quiet")
    assert r.returncode == 2 and not out.exists()
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "alpha" in err and "--drop-alpha" in err
    with pytest.raises(InputError, match="alpha"):
        open_video(str(src))
    with open_video(str(src), drop_alpha=True) as video:
        assert video.info.pix_fmt == "yuv420p"
        assert len(list(video.frames())) == 4


def test_interlaced_input_warns_once(tmp_path, caplog):
    src = tmp_path / "tff.mp4"
    _ffmpeg(*TESTSRC[:3], "testsrc2=size=32x24:rate=25:duration=0.2", "-vf", "setfield=tff", "-c:v", "libx264",
            "-flags", "+ildct+ilme", "-x264-params", "tff=1", str(src))
    with caplog.at_level(logging.WARNING):
        with open_video(str(src)) as video:
            assert video.info.interlaced
            list(video.frames())
    assert sum("interlaced" in m for m in _warnings(caplog)) == 1


def test_deeper_than_kept_warns_once(tmp_path, caplog):
    src = tmp_path / "deep.mkv"
    _ffmpeg(*TESTSRC, "-pix_fmt", "yuv444p16le", "-c:v", "ffv1", str(src))
    with caplog.at_level(logging.WARNING):
        with open_video(str(src)) as video:
            assert video.info.pix_fmt == "yuv444p12le"
            list(video.frames())
    assert [m for m in _warnings(caplog) if "16-bit" in m and "12-bit" in m] != []
    assert len(_warnings(caplog)) == 1
    # and on output: a 12-bit stream into H.264 (at most 10-bit) says so
    caplog.clear()
    info = VideoInfo(32, 24, "yuv420p12le", 25, Fraction(1, 25))
    with caplog.at_level(logging.WARNING):
        with open_sink(str(tmp_path / "o.mp4"), info) as sink:
            sink.write(np.zeros((24, 32, 3), np.uint16), 0)
    assert [m for m in _warnings(caplog) if "12-bit" in m and "10-bit" in m] != [] and len(_warnings(caplog)) == 1


def test_vfr_into_y4m_warns_once(tmp_path, caplog):
    info = VideoInfo(16, 16, "yuv420p", 25, Fraction(1, 1000))
    frame = np.zeros((16, 16, 3), np.uint8)
    with caplog.at_level(logging.WARNING):
        with open_sink(str(tmp_path / "cfr.y4m"), info) as sink:
            for i in range(5):
                sink.write(frame, 40 * i)
    assert _warnings(caplog) == []
    with caplog.at_level(logging.WARNING):
        with open_sink(str(tmp_path / "vfr.y4m"), info) as sink:
            for pts in (0, 40, 80, 200, 240, 400):
                sink.write(frame, pts)
    assert len(_warnings(caplog)) == 1 and "variable frame rate" in _warnings(caplog)[0]
