"""End to end through the real `nvc` command, real PyAV, real ffmpeg/ffprobe, on tiny clips (CPU)."""

from __future__ import annotations

import shutil
import subprocess

import av
import numpy as np
import pytest

from conftest import run_nvc, run_nvc_each
from nvc_pipe.api import read_stream

TINY = ("--preset", "tiny", "--quiet")


@pytest.fixture(scope="module")
def encoded(media, tmp_path_factory):
    """`encoded(name)`: media[name] encoded once for the module by the real command (`nvc encode NAME -o X.mkv
    --preset tiny --quiet --json`): (path, report). Tests only read these files."""
    done = {}

    def get(name: str):
        if name not in done:
            out = tmp_path_factory.mktemp(f"enc_{name}") / f"{name}.mkv"
            enc = run_nvc("encode", str(media[name]), "-o", str(out), *TINY, "--json")
            assert enc.returncode == 0, enc.stderr
            done[name] = out, enc.json()
        return done[name]
    return get


def _frames(path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _audio_packets(path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.mark.parametrize("name,size", [("qcif", (176, 144)), ("odd", (97, 55)), ("ten_bit", (48, 32))])
def test_encode_decode_reproduces_reported_quality(nvc, media, encoded, tmp_path, name, size):
    out, report = encoded(name)
    assert (report["width"], report["height"]) == size
    seq, aus, container = read_stream(str(out))
    stream_bytes = len(aus[0]) + report["stream_bytes"] - sum(len(a) for a in aus)
    assert container == "mkv" and report["stream_bytes"] == stream_bytes
    assert report["bpp"] == pytest.approx(report["stream_bytes"] * 8 / (seq.frame_count * size[0] * size[1]), abs=1e-6)
    y4m = tmp_path / "x.y4m"
    dec = nvc("decode", str(out), "-o", str(y4m), "--ref", str(media[name]), "--json")
    assert dec.returncode == 0, dec.stderr
    assert abs(dec.json()["psnr_rgb"] - report["psnr_rgb"]) < 0.01
    with av.open(str(y4m)) as c:
        vs = c.streams.video[0]
        assert (vs.codec_context.width, vs.codec_context.height) == size
        assert vs.codec_context.pix_fmt == ("yuv420p10le" if name == "ten_bit" else "yuv420p")
        assert sum(1 for _ in c.decode(vs)) == seq.frame_count


def test_audio_is_copied_byte_for_byte(nvc, media, encoded, tmp_path):
    src = media["audio"]
    (out, _), mp4 = encoded("audio"), tmp_path / "a.mp4"
    assert _audio_packets(out) == _audio_packets(src) != []
    dec = nvc("decode", str(out), "-o", str(mp4), "--vcodec", "libx264")
    assert dec.returncode == 0, dec.stderr
    assert _audio_packets(mp4) == _audio_packets(src)
    assert len(_frames(mp4)) == 8


def test_ffprobe_and_ffmpeg_remux(nvc, encoded, tmp_path):
    (out, _), re_mkv = encoded("audio"), tmp_path / "re.mkv"
    probe = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_entries", "stream_tags", str(out)],
                           capture_output=True, text=True)
    assert probe.returncode == 0 and probe.stderr == ""
    assert "NVC_CODEC=hinerv" in probe.stdout
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-map", "0", "-c", "copy", str(re_mkv)], check=True)
    a, b = read_stream(str(out)), read_stream(str(re_mkv))
    assert a[0] == b[0] and a[1] == b[1]
    assert nvc("decode", str(re_mkv), "-o", str(tmp_path / "re.y4m")).returncode == 0


def test_y4m_pipes_through_real_ffmpeg(nvc, media, tmp_path):
    y4m = subprocess.run(["ffmpeg", "-v", "error", "-i", str(media["odd"]), "-f", "yuv4mpegpipe", "-"],
                         capture_output=True, check=True).stdout
    out = tmp_path / "p.nvc"
    enc = nvc("encode", "-", "-o", str(out), *TINY, stdin=y4m)
    assert enc.returncode == 0, enc.stderr
    dec = nvc("decode", str(out), "-o", "-")
    assert dec.returncode == 0 and dec.stdout.startswith(b"YUV4MPEG2 W97 H55")
    back = tmp_path / "back.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "yuv4mpegpipe", "-i", "-", "-c:v", "ffv1", str(back)],
                   input=dec.stdout, check=True)
    assert len(_frames(back)) == 4


def test_info_and_presets(encoded):
    out, _ = encoded("qcif")
    info, presets = run_nvc_each(("info", str(out), "--json"), ("presets",))
    assert info.returncode == 0, info.stderr
    r = info.json()
    assert r["codec"] == "hinerv" and r["frames"] == 3 and r["access_units"][0]["parameters"] > 0
    assert presets.returncode == 0 and b"bunny-xxs" in presets.stdout and b"uvg-l" in presets.stdout


def test_forked_runner_gives_what_a_real_start_gives(tmp_path):
    """`run_nvc_each` (tests/forked_cli.py), which the failure tests below use, against a real `nvc` start: the same
    exit code, stdout and stderr, byte for byte; and a command that succeeds prints its output."""
    missing = ("decode", str(tmp_path / "missing.nvc"), "-o", str(tmp_path / "o.y4m"))
    real = run_nvc(*missing)
    forked, presets = run_nvc_each(missing, ("presets",))
    assert (forked.returncode, forked.stdout, forked.stderr) == (real.returncode, real.stdout, real.stderr)
    assert real.returncode == 2 and real.stderr.count(b"\n") == 1
    assert presets.returncode == 0 and presets.stderr == b"" and b"bunny-xxs" in presets.stdout


def _assert_clean_failure(res, code=None):
    assert res.returncode != 0
    lines = res.stderr.decode().strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in lines[0] and lines[0].startswith("nvc")
    if code is not None:
        assert res.returncode == code


@pytest.fixture(scope="module")
def good_stream(encoded):
    return encoded("qcif")[0]


def test_bad_inputs_fail_cleanly(media, tmp_path, good_stream):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    empty = tmp_path / "empty.yuv"
    empty.write_bytes(b"")
    cases = [
        ("encode", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o1.mkv")),
        ("encode", str(text), "-o", str(tmp_path / "o2.mkv")),
        ("encode", str(media["qcif"]), "-o", str(tmp_path / "o3.mkv"), "--preset", "nope"),
        ("encode", str(empty), "-o", str(tmp_path / "o4.mkv"), "--size", "16x16", "--fps", "25",
         "--pix-fmt", "yuv420p"),
        ("encode", str(media["qcif"]), "-o", str(tmp_path / "o5.mkv"), "--codec", "nope"),
        ("encode", str(media["qcif"]), "-o", str(tmp_path / "o6.mkv"), "--epochs", "x"),
        ("decode", str(media["audio"]), "-o", str(tmp_path / "o7.y4m")),  # foreign file without our track
        ("decode", str(text), "-o", str(tmp_path / "o8.y4m")),
    ]
    for args, res in zip(cases, run_nvc_each(*cases)):  # each a process of its own, one interpreter start
        _assert_clean_failure(res)
        assert not (tmp_path / args[3].split("/")[-1]).exists()


def test_corrupt_streams_fail_cleanly(nvc, tmp_path, good_stream):
    data = good_stream.read_bytes()
    truncated = tmp_path / "trunc.mkv"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    seq, aus, _ = read_stream(str(good_stream))
    flipped = tmp_path / "flip.mkv"
    pos = data.find(aus[0][40:72])  # inside the access unit's payload
    assert pos > 0
    bad = bytearray(data)
    bad[pos + 5] ^= 0x10
    flipped.write_bytes(bytes(bad))
    outs = [tmp_path / (src.stem + ".y4m") for src in (truncated, flipped)]
    results = run_nvc_each(*[c for src, out in zip((truncated, flipped), outs)
                             for c in (("decode", str(src), "-o", str(out)), ("info", str(src)))])
    for res in results:
        _assert_clean_failure(res)
    assert not any(out.exists() for out in outs)


def test_refuses_to_overwrite_without_y(nvc, media, tmp_path, good_stream):
    target = tmp_path / "exists.mkv"
    shutil.copy(good_stream, target)
    _assert_clean_failure(nvc("encode", str(media["qcif"]), "-o", str(target), *TINY), code=2)
    assert target.read_bytes() == good_stream.read_bytes()
