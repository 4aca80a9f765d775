"""ffmpeg's habits on the command line: '-' for any container in and out, image sequences, conventional raw
names, options that do not apply refused before any work, no clobbering at the final rename. Real files made with
the ffmpeg binary, the real `nvc` command."""

from __future__ import annotations

import json
import os
import subprocess
from fractions import Fraction

import pytest
from media_factory import FFMPEG, FFPROBE, packets_of, run

from nvc_pipe.api import decode_file
from nvc_pipe.cli import build_parser, main
from nvc_pipe.errors import ConfigError, InputError, OutputError
from nvc_pipe.media.atomic import atomic_output
from nvc_pipe.media.demux import RawOptions, Selection, open_video

TINY = ("--preset", "tiny", "--quiet")


def _ffmpeg(*args: str) -> None:
    r = run([FFMPEG, "-v", "error", "-y", *args])
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("habits")
    src = d / "src.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=0.16", "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=48000:duration=0.16", "-c:v", "libx264", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(src))
    return d, src


def test_stdin_container_in_and_streamed_mkv_out(clip, nvc):
    d, src = clip
    # mp4 on standard input (spooled: FFmpeg needs to seek), the MKV streamed to standard output
    enc = nvc("encode", "-", "-o", "-", *TINY, stdin=src.read_bytes())
    assert enc.returncode == 0, enc.stderr
    assert b"frames 32x24" in enc.stderr  # the report goes to stderr: stdout is the stream
    piped = d / "piped.mkv"
    piped.write_bytes(enc.stdout)
    probe = json.loads(run([FFPROBE, "-v", "error", "-show_streams", "-of", "json", str(piped)]).stdout)
    assert [s["codec_type"] for s in probe["streams"]] == ["video", "audio"]
    assert (probe["streams"][0]["width"], probe["streams"][0]["r_frame_rate"]) == (32, "25/1")
    assert run(["mkvinfo", str(piped)]).returncode == 0
    ident = json.loads(run(["mkvmerge", "-J", str(piped)]).stdout)
    assert ident["errors"] == [] and [t["type"] for t in ident["tracks"]] == ["video", "audio"]
    assert [p[0] for p in packets_of(str(piped), "audio")] == [p[0] for p in packets_of(str(src), "audio")]
    # ffmpeg reads the streamed file from a pipe too
    re = d / "re.mkv"
    r = subprocess.run([FFMPEG, "-v", "error", "-y", "-i", "-", "-map", "0", "-c", "copy", str(re)],
                       input=enc.stdout, capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr
    # `nvc decode -`: the MKV on standard input; same frames as decoding the remuxed file
    dec_pipe = nvc("decode", "-", "-o", "-", stdin=enc.stdout)
    assert dec_pipe.returncode == 0, dec_pipe.stderr
    decode_file(str(re), str(d / "re.y4m"), device="cpu")
    assert dec_pipe.stdout == (d / "re.y4m").read_bytes() and dec_pipe.stdout.startswith(b"YUV4MPEG2 W32 H24 F25:1")


def test_refused_before_any_work(clip, tmp_path, capsys):
    _, src = clip
    out = tmp_path / "o.mkv"
    cases = [
        (("encode", str(src), "-o", str(out), "--fps", "30"), "--fps does not apply"),
        (("encode", str(src), "-o", str(out), "-pix_fmt", "yuv444p", "-s", "8x8"), "--size, --pix-fmt do not"),
        (("encode", str(src), "-o", "-", "--resume"), "--resume needs an output file"),
    ]
    for args, message in cases:  # the real command line, in this process (no interpreter start per case)
        code = main([*args, *TINY])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
        assert os.listdir(tmp_path) == []


def test_zero_counts_and_bad_times_are_refused_by_the_parser(clip, tmp_path, capsys):
    """`--batch-size 0` (was a ZeroDivisionError after the plan), `-frames:v 0`, `-ss abc`: exit 2, one line, before
    the input is even opened; `-t 0` (a selection of nothing) is refused once the input is known, before any
    work."""
    _, src = clip
    out = tmp_path / "o.mkv"
    for extra, message in [(("--batch-size", "0"), "argument --batch-size: expected a number >= 1, got 0"),
                           (("-frames:v", "0"), "argument -frames:v/--frames: expected a number >= 1, got 0"),
                           (("-ss", "abc"), "argument -ss: invalid time 'abc'")]:
        with pytest.raises(SystemExit) as exc:
            main(["encode", str(src), "-o", str(out), *extra, *TINY])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and message in err and err.count("\n") == 1, (extra, err)
    assert main(["encode", str(src), "-o", str(out), "-t", "0", *TINY]) == 2
    err = capsys.readouterr().err
    assert "bad frame selection" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_image_sequence_with_framerate(tmp_path):
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=0.2", str(tmp_path / "img%03d.png"))
    with open_video(str(tmp_path / "img%03d.png"), RawOptions(fps=Fraction(10))) as video:
        assert (video.info.width, video.info.height, video.info.fps) == (32, 24, 10)
        frames = list(video.frames())
    assert [pts for _, pts in frames] == [0, 1, 2, 3, 4] and video.info.time_base == Fraction(1, 10)
    with open_video(str(tmp_path / "img%03d.png")) as video:
        assert video.info.fps == 25  # FFmpeg's default -framerate
    with pytest.raises(InputError, match="image sequence"):
        open_video(str(tmp_path / "other%03d.png"))
    with pytest.raises(ConfigError, match="do not apply to the image sequence"):
        open_video(str(tmp_path / "img%03d.png"), RawOptions(size=(8, 8), pix_fmt="gray"))
    args = build_parser().parse_args(["encode", "img%03d.png", "-framerate", "10", "-o", "x.mkv"])
    assert args.fps == 10  # ffmpeg's spelling of the option


@pytest.mark.parametrize("name,size,fps,pix_fmt", [
    ("Beauty_32x24_120fps_420_8bit_YUV.yuv", (32, 24), 120, "yuv420p"),
    ("videoSRC01_32x24_30.yuv", (32, 24), 30, None),
    ("crowd_32x24_50_422_10bit.yuv", (32, 24), 50, "yuv422p10le"),
    ("foreman_32x24_30fps_yuv444p.yuv", (32, 24), 30, "yuv444p"),
])
def test_raw_parameters_from_conventional_names(tmp_path, name, size, fps, pix_fmt):
    fmt = pix_fmt or "yuv420p"
    path = tmp_path / name
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=0.12", "-pix_fmt", fmt, "-f", "rawvideo",
            str(path))
    opts = None if pix_fmt else RawOptions(pix_fmt="yuv420p")
    with open_video(str(path), opts) as video:
        info = video.info
        assert ((info.width, info.height), info.fps) == (size, fps)
        assert video.info.pix_fmt == fmt and len(list(video.frames())) == 3
    if pix_fmt is None:
        with pytest.raises(ConfigError, match="needs --pix-fmt"):
            open_video(str(path))


def test_final_rename_does_not_clobber(tmp_path):
    target = tmp_path / "out.mkv"
    with pytest.raises(OutputError, match="appeared while"):
        with atomic_output(str(target), overwrite=False) as tmp:
            open(tmp, "wb").write(b"second encode")
            target.write_bytes(b"first encode")  # another encode finished first
    assert target.read_bytes() == b"first encode" and os.listdir(tmp_path) == ["out.mkv"]
    with atomic_output(str(tmp_path / "new.mkv"), overwrite=False) as tmp:
        open(tmp, "wb").write(b"ok")
    assert (tmp_path / "new.mkv").read_bytes() == b"ok" and sorted(os.listdir(tmp_path)) == ["new.mkv", "out.mkv"]
    with atomic_output(str(target)) as tmp:  # -y
        open(tmp, "wb").write(b"replaced")
    assert target.read_bytes() == b"replaced"


def test_ss_t_frames_select_frames_and_cut_audio(tmp_path, capsys):
    src = tmp_path / "one.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=1", "-f", "lavfi", "-i",
            "sine=frequency=440:sample_rate=48000:duration=1", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a",
            "aac", "-shortest", str(src))
    with open_video(str(src), select=Selection(Fraction(2, 5), Fraction(1, 5))) as video:
        frames = list(video.frames())
        window = video.copy_window
    assert len(frames) == 5 and frames[0][1] == 0  # 0.4 s .. 0.56 s, pts from 0
    assert window == (Fraction(2, 5), Fraction(3, 5))
    with open_video(str(src)) as video:
        everything = [rgb for rgb, _ in video.frames()]
    assert all((a == b).all() for (a, _), b in zip(frames, everything[10:15]))
    with open_video(str(src), select=Selection(frames=3)) as video:
        assert len(list(video.frames())) == 3
    out = tmp_path / "cut.mkv"
    assert main(["encode", str(src), "-ss", "0.4", "-t", "200ms", "-o", str(out), "--json", *TINY]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == 5
    # the audio is cut to the same window and starts with the video, bytes unchanged
    kept = [data for data, _, _ in packets_of(str(out), "audio")]
    inside = [data for data, pts, dur in packets_of(str(src), "audio")  # mp4 audio: time base 1/48000
              if Fraction(pts + dur, 48000) > Fraction(2, 5) and Fraction(pts, 48000) < Fraction(3, 5)]
    assert kept == inside and len(kept) > 5
    with pytest.raises(SystemExit) as exit_:
        main(["encode", str(src), "-frames:v", "0", "-o", str(tmp_path / "x.mkv"), *TINY])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and "-frames:v" in err
    for bad in (("-ss", "abc"), ("-t", "1:2:3:4"), ("-frames:v", "-1")):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["encode", str(src), *bad, "-o", "x.mkv"])
    args = build_parser().parse_args(["encode", "in", "-ss", "00:01:02.5", "-t", "500ms", "-o", "x.mkv"])
    assert (args.start, args.duration) == (Fraction(125, 2), Fraction(1, 2))
