"""The whole harness on CPU: synthetic UVG / MCL-JCV layouts, x264 (+SVT-AV1) sweeps, reports, plots, cache."""

import argparse
import csv
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from nvc_pipe.eval import baselines, cli
from nvc_pipe.eval.datasets import open_dataset, write_synthetic_dataset
from nvc_pipe.eval.measure import yuv_to_rgb
from nvc_pipe.eval.runner import run_eval

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _parse(args):
    """Parse through the subcommand the main CLI registers (add_parser), as `nvc eval ...` would."""
    p = argparse.ArgumentParser(prog="nvc")
    sub = p.add_subparsers(dest="command")
    cli.add_parser(sub)
    ns = p.parse_args(["eval", *args])
    assert ns.handler is cli.run
    return ns


@pytest.fixture(scope="module")
def uvg_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("UVG")
    # True 1920x1080 geometry, 2 frames (6 MB), read through a 64x64 centre crop.
    write_synthetic_dataset("uvg", root, frames=2, sequences=["Beauty"])
    return root


def _args(root, out, crf="22,37", extra=()):
    return ["--dataset", "uvg", "--root", str(root), "--sequences", "Beauty", "--codecs", "x264:medium",
            "--crf", crf, "--frames", "2", "--crop", "64x64", "--out", str(out), "--quiet", *extra]


def test_whole_harness_and_cache(uvg_root, tmp_path, monkeypatch):
    out = tmp_path / "results"
    args = _args(uvg_root, out, extra=["--keep-streams"])
    assert cli.main(args) == 0

    rep = json.loads((out / "results.json").read_text())
    pts = rep["points"]
    assert [(p["codec"], p["value"]) for p in pts] == [("x264", 22), ("x264", 37)]
    for p in pts:
        assert (p["frames"], p["width"], p["height"], p["sequence"]) == (2, 64, 64, "Beauty")
        assert p["bpp"] == pytest.approx(p["stream_bytes"] * 8 / (2 * 64 * 64), rel=1e-12)
        assert Path(p["stream"]).stat().st_size == p["stream_bytes"]       # the elementary stream itself
        assert "-c:v libx264 -preset medium -crf %d" % p["value"] in p["command"]
        assert "crop=64:64:928:508" in p["command"] and "-frames:v 2" in p["command"]
        assert 15 < p["psnr_rgb"] < 100 and 15 < p["psnr_yuv611"] < 100 and 0 < p["ms_ssim"] <= 1
        assert p["encode_s"] > 0 and p["decode_s"] >= 0
    assert pts[0]["bpp"] > pts[1]["bpp"] and pts[0]["psnr_rgb"] > pts[1]["psnr_rgb"]
    assert len(rep["average"]["x264:medium"]) == 2

    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 and rows[0]["curve"] == "x264:medium"
    assert float(rows[0]["bpp"]) == pytest.approx(pts[0]["bpp"])
    md = (out / "results.md").read_text()
    assert "| x264:medium | crf=22 |" in md and "libx264" in md
    plots = sorted((out / "plots").glob("*.png"))
    assert [p.name for p in plots] == ["rd_uvg_Beauty.png", "rd_uvg_average.png"]
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in plots)

    # Second run: every point comes from out/cache, the encoder is never called.
    cache_files = sorted((out / "cache").rglob("*.json"))
    assert len(cache_files) == 2
    mtimes = [f.stat().st_mtime_ns for f in cache_files]

    def boom(*a, **k):
        raise AssertionError("encoder called for a cached point")

    monkeypatch.setattr(baselines, "encode", boom)
    res = run_eval(cli.config_from_args(_parse(_args(uvg_root, out))))
    assert (res.computed, res.cached) == (0, 2)
    assert [f.stat().st_mtime_ns for f in cache_files] == mtimes
    monkeypatch.undo()

    # Extended sweep: only the new CRF is computed.
    res = run_eval(cli.config_from_args(_parse(_args(uvg_root, out, crf="22,30,37"))))
    assert (res.computed, res.cached) == (1, 2)
    assert [p["value"] for p in res.points] == [22, 30, 37]


def test_mcl_jcv_size_override_pyav_backend(tmp_path):
    root = tmp_path / "MCL-JCV"
    # Files named like the 1920x1080 originals but holding 64x64 frames: test-only --size override.
    write_synthetic_dataset("mcl-jcv", root, size=(64, 64), frames=2, sequences=["videoSRC01", "videoSRC05"])
    out = tmp_path / "res"
    args = ["--dataset", "mcl-jcv", "--root", str(root), "--sequences", "videoSRC01,videoSRC05", "--size", "64x64",
            "--frames", "2", "--codecs", "x264:medium,svtav1:8", "--crf", "x264=20,40", "--crf", "svtav1=30,55",
            "--anchor-backend", "pyav", "--no-ms-ssim", "--out", str(out)]
    res = run_eval(cli.config_from_args(_parse(args)))
    assert res.computed == 8
    rep = res.report
    assert [s["fps"] for s in rep["sources"]] == ["30", "25"]
    assert all(p["backend"].startswith("PyAV") and p["ms_ssim"] is None for p in rep["points"])
    assert any("libsvtav1 -preset 8 -crf 55" in p["command"] for p in rep["points"])
    assert rep["bd"]["anchor"] == "x264:medium"
    (row,) = rep["bd"]["rows"]
    assert row["curve"] == "svtav1:8" and set(row) >= {"videoSRC01", "videoSRC05", "average"}
    assert rep["config"]["full_run"] is False and rep["bd_vs_published"].startswith("skipped")
    assert (out / "plots" / "rd_mcl-jcv_videoSRC05.png").is_file()


def test_missing_file_cli_error(tmp_path, capsys):
    code = cli.main(["--dataset", "uvg", "--root", str(tmp_path), "--codecs", "x264:medium", "--sequences",
                     "Jockey", "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert "Jockey_1920x1080_120fps_420_8bit_YUV.yuv" in err and err.count("\n") == 1


def test_bad_codec_specs():
    from nvc_pipe.errors import ConfigError
    from nvc_pipe.eval.runner import parse_codecs, parse_crf_options

    curves = parse_codecs("x264:medium+veryslow,x265:veryslow,svtav1,hinerv:uvg-s+uvg-m",
                          parse_crf_options(["x265=20,25"]))
    assert [c.label for c in curves] == ["x264:medium", "x264:veryslow", "x265:veryslow", "svtav1:8",
                                         "hinerv:uvg-s+uvg-m"]
    assert [p.value for p in curves[2].points] == [20, 25]
    assert [p.value for p in curves[3].points] == [30, 38, 46, 54]
    assert [(p.param, p.value) for p in curves[4].points] == [("preset", "uvg-s"), ("preset", "uvg-m")]
    epochs = parse_codecs("hinerv:uvg-s+uvg-m", epochs=[30, 60])
    assert [c.label for c in epochs] == ["hinerv:uvg-s", "hinerv:uvg-m"] and epochs[0].points[1].value == 60
    for bad in ("x264:superslow", "hinerv", "x264:medium,x264:medium"):
        with pytest.raises(ConfigError):
            parse_codecs(bad)
    with pytest.raises(ConfigError):
        parse_codecs("svtav1:8", parse_crf_options(["70"]))


def test_plugin_codec_path_with_stub_api(uvg_root, tmp_path, monkeypatch):
    """Our-codec path (encode_file / decode_frames, y4m input, bpp from stream_bytes) against a stand-in API."""
    streams = {}

    def encode_file(input_path, output_path, *, codec, preset, overrides=None, device="auto", raw=None,
                    progress=True):
        (src,) = open_dataset("dir", input_path)           # the .y4m the harness wrote: cropped, 2 frames
        assert (src.width, src.height, src.frames) == (64, 64, 2) and raw is None
        rng = np.random.default_rng(0)
        noise = {"lo": 6, "hi": 2}[preset]
        streams[output_path] = [np.clip(yuv_to_rgb(p, "yuv420p").astype(int)
                                        + rng.integers(-noise, noise + 1, (64, 64, 3)), 0, 255).astype(np.uint8)
                                for p in src.iter_planes()]
        payload = b"\0" * {"lo": 300, "hi": 900}[preset]
        Path(output_path).write_bytes(payload)
        return {"stream_bytes": len(payload), "bpp": 0.0, "time_s": 0.01}

    def decode_frames(path, device="auto"):
        yield from streams[path]

    fake = types.ModuleType("nvc_pipe.api")
    fake.encode_file, fake.decode_frames = encode_file, decode_frames
    monkeypatch.setitem(sys.modules, "nvc_pipe.api", fake)
    out = tmp_path / "res"
    args = _args(uvg_root, out, extra=["--codecs", "stubnerv:lo+hi,x264:medium", "--no-plots"])
    res = run_eval(cli.config_from_args(_parse(args)))
    ours = [p for p in res.points if p["codec"] == "stubnerv"]
    assert [p["bpp"] for p in ours] == [300 * 8 / (2 * 64 * 64), 900 * 8 / (2 * 64 * 64)]
    assert ours[1]["psnr_rgb"] > ours[0]["psnr_rgb"] > 30
    assert "encode_file(" in ours[0]["command"] and "preset='lo'" in ours[0]["command"]
    assert not list((out / "tmp").rglob("*.y4m"))           # the temporary cropped input is removed
    assert res.report["bd"]["anchor"] == "x264:medium"


def test_plugin_codec_real_api(uvg_root, tmp_path):
    api = pytest.importorskip("nvc_pipe.api", reason="nvc_pipe.api not importable yet")
    try:
        from nvc_pipe.plugins import load_codec

        codec = load_codec("hinerv")
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"hinerv plugin not available: {e}")
    tiny = [p for p in ("test", "tiny", "bunny-xxs") if p in codec.presets]
    if not tiny:
        pytest.skip("no small hinerv preset to run in a unit test")
    assert api.encode_file
    out = tmp_path / "res"
    args = _args(uvg_root, out, extra=["--codecs", f"hinerv:{tiny[0]}", "--set", "epochs=1", "--no-plots",
                                       "--device", "cpu", "--no-ms-ssim"])
    res = run_eval(cli.config_from_args(_parse(args)))
    (p,) = res.points
    assert p["bpp"] == pytest.approx(p["stream_bytes"] * 8 / (2 * 64 * 64)) and p["psnr_rgb"] > 5


@pytest.mark.skipif(not __import__("shutil").which("ffmpeg"), reason="no ffmpeg program")
def test_rgb_conversion_matches_ffmpeg_png_route(tmp_path):
    # HiNeRV/C3 measure RGB PSNR on `ffmpeg -i x.yuv x.png` frames: the harness's conversion must be the same.
    import subprocess

    from nvc_pipe.eval.datasets import synthetic_planes

    planes = next(synthetic_planes(96, 64, 1))
    raw = tmp_path / "f.yuv"
    raw.write_bytes(b"".join(p.tobytes() for p in planes))
    out = subprocess.run(["ffmpeg", "-v", "error", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "96x64", "-i",
                          str(raw), "-pix_fmt", "rgb24", "-f", "rawvideo", "-"], capture_output=True, check=True)
    assert np.array_equal(yuv_to_rgb(planes, "yuv420p"), np.frombuffer(out.stdout, np.uint8).reshape(64, 96, 3))
