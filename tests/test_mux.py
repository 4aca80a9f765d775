"""NVC stream in Matroska: exact round trip, real ffprobe/ffmpeg/mkvtoolnix, remuxes, audio copy and sync, old
(DVB-carrier) files, errors, atomicity."""

from __future__ import annotations

import json
import os
import random
from fractions import Fraction

import av
import pytest
from media_factory import FFMPEG, FFPROBE, ffmpeg_copy, ffprobe_errors, make_video, packets_of, run

from nvc_pipe.errors import BitstreamError, ConfigError, InputError, OutputError
from nvc_pipe.media.clip import VideoInfo
from nvc_pipe.media.atomic import atomic_output
from nvc_pipe.media.mux import Packet, carrier_offset, read_mkv, write_mkv

INFO = VideoInfo(64, 48, "yuv420p", Fraction(30000, 1001), Fraction(1, 30000), "tv", "bt709")
HEADER = b"\x8bNVC\x01\x00SEQH" + bytes(range(36)) + b"\x00\x00\x01\x0f"


def adversarial_packets(n: int = 6, seed: int = 0, first_pts: int = 3003) -> list[Packet]:
    """Access units with start codes and DVB sync bytes planted at the start, middle and end."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        body = bytearray(rnd.randbytes(rnd.randint(24, 700)))
        body[0:4] = b"AU01"
        body[4:8] = b"\x00\x00\x01\xb3"
        mid = len(body) // 2
        body[mid:mid + 4] = b"\x0f\x00\x00\x01"
        body[-4:] = b"\x00\x00\x01\x0f"
        frames = 2 if i < n - 1 else 1
        out.append(Packet(bytes(body), first_pts + 2 * 1001 * i, frames * 1001))
    # a payload that is nothing but start codes and sync bytes, and one starting with the DVB sync byte
    out[1] = Packet(b"\x00\x00\x01" * 20 + b"\x0f" * 7, out[1].pts, out[1].duration)
    out[2] = Packet(b"\x0f\x00\x10\x00\x05" + out[2].payload[5:], out[2].pts, out[2].duration)
    return out


TAGS = {"NVC_CODEC": "hinerv", "title": "NVC video (hinerv, preset tiny)", "Model_SHA": "abc123", "note": "é ü"}


def _read_all(path):
    header, tags, it = read_mkv(path)
    return header, tags, list(it)


def _first_time(path, kind_nvc: bool) -> Fraction:
    """Time in seconds of the first packet of the NVC track (True) or of the first audio stream (False)."""
    with av.open(path) as c:
        for p in c.demux():
            if not p.size or p.pts is None:
                continue
            nvc = any(k.upper() == "NVC_CODEC" for k in p.stream.metadata)
            if (kind_nvc and nvc) or (not kind_nvc and p.stream.type == "audio"):
                return p.pts * Fraction(p.time_base.numerator, p.time_base.denominator)
    raise AssertionError("no packet")


def _audio_relative(path):
    """Audio packets as (bytes, ms relative to the NVC track's first block, duration).

    The durations of the first and last packets (AAC priming and padding) are left out: a file written by FFmpeg 9
    stores them as -21 ms / trimmed, and ffmpeg 5.1's stream copy rewrites them (0 and a full frame). Bytes and
    timestamps of every packet are compared.
    """
    t0 = _first_time(path, True) * 1000
    packets = packets_of(path, "audio")
    last = len(packets) - 1
    return [(data, pts - t0, dur if 0 < i < last else None) for i, (data, pts, dur) in enumerate(packets)]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    d = tmp_path_factory.mktemp("mux_src")
    path = str(d / "src.mp4")
    make_video(path, 64, 48, 8, fps=Fraction(30000, 1001), audio=True)
    return path


def test_roundtrip_exact(tmp_path):
    packets = adversarial_packets()
    out = str(tmp_path / "a.mkv")
    write_mkv(out, HEADER, packets, INFO, TAGS, copy_from=None)
    header, tags, got = _read_all(out)
    assert header == HEADER
    assert tags == TAGS
    assert got == packets
    assert ffprobe_errors(out) == ""


def test_default_tags(tmp_path):
    out = str(tmp_path / "e.mkv")
    packets = adversarial_packets(3)
    write_mkv(out, HEADER, packets, INFO, {})
    header, tags, got = _read_all(out)
    assert header == HEADER and got == packets
    assert tags == {"NVC_CODEC": "nvc", "title": "NVC video (nvc)"}
    with pytest.raises(ValueError):
        write_mkv(out, HEADER, [], INFO, {})


@pytest.mark.parametrize("tb,fps,step", [(Fraction(1, 90000), Fraction(30000, 1001), 3003),
                                         (Fraction(1, 25), Fraction(25), 1),
                                         (Fraction(1, 12288), Fraction(24), 512),
                                         (Fraction(1, 1000), Fraction(24), 41)])
def test_timestamps_in_odd_time_bases(tmp_path, tb, fps, step):
    info = VideoInfo(16, 16, "yuv420p", fps, tb)
    packets = [Packet(b"AU01" + bytes([i]) * 9, 7 * step + 3 * step * i, 3 * step) for i in range(5)]
    packets[3] = Packet(packets[3].payload, packets[3].pts + 1, 3 * step - 1)  # off the frame grid
    out = str(tmp_path / "t.mkv")
    write_mkv(out, b"", packets, info, {"NVC_CODEC": "x"})
    header, _, got = _read_all(out)
    assert header == b"" and [p.payload for p in got] == [p.payload for p in packets]
    for i, (a, b) in enumerate(zip(got, packets)):
        if i != 3 or tb >= Fraction(1, 1000):  # on the frame grid, or a time base Matroska's ms can hold: exact
            assert (a.pts, a.duration) == (b.pts, b.duration)
        else:  # off the grid in a finer time base: exact to the millisecond (documented)
            assert abs(a.pts - b.pts) * tb <= Fraction(1, 1000)
            assert abs(a.duration - b.duration) * tb <= Fraction(1, 500)


def _probe(path):
    r = run([FFPROBE, "-v", "error", "-show_streams", "-show_format", "-of", "json", path])
    return json.loads(r.stdout)


def test_ffprobe_lists_a_video_stream(tmp_path, source):
    out = str(tmp_path / "p.mkv")
    packets = adversarial_packets()
    write_mkv(out, HEADER, packets, INFO, TAGS, copy_from=source)
    assert ffprobe_errors(out) == ""
    probe = _probe(out)
    streams = probe["streams"]
    assert [s["codec_type"] for s in streams] == ["video", "audio"]
    nvc = streams[0]
    assert nvc["codec_tag_string"] == "NVC1"
    assert (nvc["width"], nvc["height"]) == (INFO.width, INFO.height)
    assert nvc["r_frame_rate"] == "30000/1001" and nvc["avg_frame_rate"] == "30000/1001"
    assert (nvc["color_range"], nvc["color_space"]) == ("tv", "bt709")
    assert nvc["tags"]["NVC_CODEC"] == "hinerv" and nvc["tags"]["title"] == TAGS["title"]
    assert nvc["extradata_size"] == len(HEADER)  # CodecPrivate after the BITMAPINFOHEADER
    end = (packets[-1].pts + packets[-1].duration - packets[0].pts) * INFO.time_base  # 11 frames
    first_block = _first_time(out, True)
    assert nvc["tags"]["DURATION"].startswith(f"00:00:00.{round(1000 * (first_block + end)):03d}")
    # the file's clock: our first block is at its pts (0.1 s) + the shift for the AAC priming (21 ms)
    assert abs(float(probe["format"]["duration"]) - float(first_block + end)) < 0.002
    assert streams[1]["codec_name"] == "aac"


def test_mkvtoolnix_reads_and_remuxes(tmp_path, source):
    out = str(tmp_path / "m.mkv")
    packets = adversarial_packets()
    write_mkv(out, HEADER, packets, INFO, TAGS, copy_from=source)
    info = run(["mkvinfo", out])
    assert info.returncode == 0 and "Error" not in info.stdout and "Codec ID: V_MS/VFW/FOURCC" in info.stdout
    ident = json.loads(run(["mkvmerge", "-J", out]).stdout)
    assert ident["errors"] == [] and ident["warnings"] == [] and ident["container"]["recognized"]
    video = [t for t in ident["tracks"] if t["type"] == "video"]
    assert len(video) == 1 and "NVC1" in video[0]["codec"]
    assert video[0]["properties"]["pixel_dimensions"] == f"{INFO.width}x{INFO.height}"
    assert [t["type"] for t in ident["tracks"]] == ["video", "audio"]
    re = str(tmp_path / "mm.mkv")
    r = run(["mkvmerge", "-q", "-o", re, out])
    assert r.returncode == 0, r.stdout
    assert _read_all(re) == (HEADER, TAGS, packets)
    assert [p[0] for p in packets_of(re, "audio")] == [p[0] for p in packets_of(out, "audio")]
    assert run(["mkvinfo", re]).returncode == 0


def test_ffmpeg_copy_keeps_everything(tmp_path, source):
    packets = adversarial_packets()
    out = str(tmp_path / "o.mkv")
    write_mkv(out, HEADER, packets, INFO, TAGS, copy_from=source)
    want = (HEADER, TAGS, packets)
    assert _read_all(out) == want
    src_audio = packets_of(source, "audio")
    out_audio = packets_of(out, "audio")
    assert [p[0] for p in out_audio] == [p[0] for p in src_audio]  # byte for byte, every packet
    # (2) the real ffmpeg binary, stream copy of every stream
    re = str(tmp_path / "re.mkv")
    ffmpeg_copy(out, re)
    assert ffprobe_errors(re) == ""
    assert _read_all(re) == want
    # an odd-length header: ffmpeg pads the BITMAPINFOHEADER's extra bytes to even, biSize tells the true length
    odd, re_odd = str(tmp_path / "odd.mkv"), str(tmp_path / "re_odd.mkv")
    write_mkv(odd, HEADER + b"!", packets, INFO, TAGS)
    ffmpeg_copy(odd, re_odd)
    assert _read_all(re_odd)[0] == HEADER + b"!"
    # (3) audio identical after the round trip, timestamps (relative to our track) included
    assert _audio_relative(re) == _audio_relative(out)
    # (4) and the remux is still a video track for ffprobe
    assert [s["codec_type"] for s in _probe(re)["streams"]] == ["video", "audio"]


def test_audio_sync_and_offset(tmp_path, source):
    """Copied audio keeps its distance to our track: (audio - ours) in the MKV == (audio - ours) in source time."""
    first_pts = 3003  # our first access unit, in the source's timeline (INFO.time_base)
    out = str(tmp_path / "s.mkv")
    write_mkv(out, HEADER, adversarial_packets(first_pts=first_pts), INFO, TAGS, copy_from=source)
    gap_source = _first_time(source, False) - first_pts * INFO.time_base
    gap_mkv = _first_time(out, False) - _first_time(out, True)
    assert abs(gap_mkv - gap_source) <= Fraction(1, 1000)  # both sides are rounded to the millisecond
    offset = carrier_offset(out)
    assert abs(_first_time(out, True) - offset - first_pts * INFO.time_base) < Fraction(1, 1000)


def test_rewrap_from_own_mkv_skips_carrier(tmp_path, source):
    first = str(tmp_path / "first.mkv")
    write_mkv(first, HEADER, adversarial_packets(), INFO, TAGS, copy_from=source)
    second = str(tmp_path / "second.mkv")
    packets = adversarial_packets(seed=5)
    write_mkv(second, b"\x8bNVC\x01\x00other", packets, INFO, {"NVC_CODEC": "c3"}, copy_from=first)
    with av.open(second) as c:
        assert [s.type for s in c.streams] == ["video", "audio"]
    header, tags, got = _read_all(second)
    assert header.endswith(b"other") and tags["NVC_CODEC"] == "c3" and got == packets
    assert [p[0] for p in packets_of(second, "audio")] == [p[0] for p in packets_of(first, "audio")]
    # the audio keeps the same distance to our first block as in the first file
    gap1 = _first_time(first, False) - _first_time(first, True)
    gap2 = _first_time(second, False) - _first_time(second, True)
    assert abs(gap1 - gap2) <= Fraction(1, 1000)


def test_subtitles_are_copied(tmp_path):
    src = str(tmp_path / "subs.mkv")
    make_video(src, 16, 16, 4, audio=True, subtitles=True)
    out = str(tmp_path / "o.mkv")
    write_mkv(out, HEADER, adversarial_packets(3), INFO, TAGS, copy_from=src)
    # bytes and durations as they were; times moved with every track by the shift for the AAC priming
    shift = round(1000 * carrier_offset(out))
    got = [(data, pts - shift, dur) for data, pts, dur in packets_of(out, "subtitle")]
    assert got == packets_of(src, "subtitle") and len(got) == 2 and shift == 21
    assert ffprobe_errors(out) == ""


def test_no_tool_decodes_our_track(tmp_path):
    out = str(tmp_path / "d.mkv")
    write_mkv(out, HEADER, adversarial_packets(), INFO, TAGS)
    # no FFmpeg decoder claims NVC1: PyAV has no codec context, a transcode stops with an error (no garbage video)
    with av.open(out) as c:
        assert c.streams.video[0].codec_context is None
    r = run([FFMPEG, "-v", "error", "-y", "-i", out, str(tmp_path / "t.mp4")])
    assert r.returncode != 0 and "Decoder (codec none) not found" in r.stderr


def test_foreign_truncated_garbage(tmp_path, source):
    foreign = str(tmp_path / "foreign.mkv")
    make_video(foreign, 16, 16, 2)
    with pytest.raises(BitstreamError, match="no NVC stream in"):
        read_mkv(foreign)
    with pytest.raises(InputError):
        read_mkv(str(tmp_path / "missing.mkv"))
    garbage = tmp_path / "garbage.mkv"
    garbage.write_bytes(os.urandom(3000))
    with pytest.raises((BitstreamError, InputError)):
        _read_all(str(garbage))
    good = str(tmp_path / "good.mkv")
    write_mkv(good, HEADER, adversarial_packets(8), INFO, TAGS, copy_from=source)
    data = open(good, "rb").read()
    for cut in (len(data) * 2 // 3, len(data) // 2, 400, 100, 20):
        bad = tmp_path / f"cut{cut}.mkv"
        bad.write_bytes(data[:cut])
        with pytest.raises((BitstreamError, InputError)) as err:
            _read_all(str(bad))
        assert "\n" not in str(err.value)


def test_bad_arguments(tmp_path):
    out = str(tmp_path / "x.mkv")
    one = [Packet(b"AU01", 0, 1)]
    with pytest.raises(ConfigError):
        write_mkv(out, HEADER, one, INFO, {"NVC_MUX_PTS0": "1"})
    with pytest.raises(ConfigError):
        write_mkv(out, HEADER, one, INFO, {"title": "a", "TITLE": "b"})
    with pytest.raises(ValueError):
        write_mkv(out, HEADER, [Packet(b"", 0, 1)], INFO, {})
    with pytest.raises(ValueError):
        write_mkv(out, HEADER, [Packet(b"a", 5, 1), Packet(b"b", 2, 1)], INFO, {})
    with pytest.raises(InputError):
        write_mkv(out, HEADER, one, INFO, {}, copy_from=str(tmp_path / "nope.mp4"))
    with pytest.raises(OutputError):
        write_mkv(str(tmp_path / "no" / "dir.mkv"), HEADER, one, INFO, {})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_leaves_nothing(tmp_path, source, exc):
    def packets():
        yield from adversarial_packets(3)
        raise exc("encoder died")

    out = tmp_path / "a.mkv"
    with pytest.raises(exc):
        write_mkv(str(out), HEADER, packets(), INFO, TAGS, copy_from=source)
    assert os.listdir(tmp_path) == []
    out.write_bytes(b"previous")
    with pytest.raises(exc):
        write_mkv(str(out), HEADER, packets(), INFO, TAGS)
    assert out.read_bytes() == b"previous" and os.listdir(tmp_path) == ["a.mkv"]


def test_atomic_output(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_output(str(target)) as tmp:
        assert os.path.dirname(tmp) == str(tmp_path) and tmp.endswith(".bin")
        open(tmp, "wb").write(b"ok")
        assert not target.exists()
    assert target.read_bytes() == b"ok" and os.listdir(tmp_path) == ["f.bin"]
    assert (os.stat(target).st_mode & 0o777) == (0o666 & ~_umask())
    with pytest.raises(ZeroDivisionError):
        with atomic_output(str(target)) as tmp:
            open(tmp, "wb").write(b"partial")
            raise ZeroDivisionError
    assert target.read_bytes() == b"ok" and os.listdir(tmp_path) == ["f.bin"]
    with pytest.raises(OutputError):
        with atomic_output("-"):
            pass


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_mutated_files_fail_cleanly(tmp_path, source):
    """Our own reader on hostile bytes: a one-line BitstreamError/InputError or a clean read, nothing else."""
    good = str(tmp_path / "good.mkv")
    write_mkv(good, HEADER, adversarial_packets(4), INFO, TAGS, copy_from=source)
    data = open(good, "rb").read()
    rnd = random.Random(7)
    bad = tmp_path / "bad.mkv"
    for case in range(400):
        mutated = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            at = rnd.randrange(600 if case % 2 else len(mutated))  # half of them in the head (EBML, Tracks, Tags)
            mutated[at] = rnd.choice([0, 0xFF, 0x01, 0x80, rnd.randrange(256)])
        bad.write_bytes(bytes(mutated))
        try:
            _read_all(str(bad))
        except (BitstreamError, InputError) as exc:
            assert "\n" not in str(exc)
