"""Intra frames in video streams: `nvc encode --intra balle` (hybrid) and `--codec balle` (all-intra), through
the real CLI and MKV; random access to one segment; bad options and corrupt intra sections fail cleanly."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_nvc, run_nvc_each
from nvc_pipe import api
from nvc_pipe.bitstream.fields import ByteWriter
from nvc_pipe.bitstream.spec import AccessUnit, pack_stream_header
from nvc_pipe.errors import BitstreamError
from nvc_pipe.intra.frames import IntraSpec, split_section


@pytest.fixture(scope="module")
def streams(media, tmp_path_factory):
    d = tmp_path_factory.mktemp("intra")
    src = media["audio"]  # 64x48, 8 frames, with audio
    out = {"src": src, "hybrid": d / "hybrid.mkv", "all": d / "all.mkv"}
    hybrid, all_intra = run_nvc_each(  # two `nvc encode` processes, one interpreter start
        ("encode", str(src), "-o", str(out["hybrid"]), "--preset", "tiny", "--epochs", "2", "--segment-frames", "4",
         "--intra", "balle", "--intra-period", "2", "--intra-quality", "2", "--json", "-y"),
        ("encode", str(src), "-o", str(out["all"]), "--codec", "balle", "--intra-quality", "1", "--json", "-y"))
    for kind, r in (("hybrid", hybrid), ("all", all_intra)):
        assert r.returncode == 0, r.stderr
        out[f"{kind}_report"] = r.json()
    return out


def _psnr(frames, reference) -> float:
    vals = [10 * np.log10(255 ** 2 / max(np.mean((a.astype(float) - b.astype(float)) ** 2), 1e-12))
            for a, b in zip(frames, reference)]
    return float(np.mean(vals))


@pytest.mark.parametrize("kind", ["hybrid", "all"])
def test_intra_streams_decode_to_what_the_encoder_reported(streams, tmp_path, kind):
    report = streams[f"{kind}_report"]
    assert report["config"]["intra"]["codec"] == "balle"
    out = tmp_path / "out.mp4"
    r, info = run_nvc_each(("decode", str(streams[kind]), "-o", str(out), "--ref", str(streams["src"]), "--json", "-y"),
                           ("info", str(streams[kind]), "--json"))
    assert r.returncode == 0, r.stderr
    assert abs(r.json()["psnr_rgb"] - report["psnr_rgb"]) < 0.01
    assert info.returncode == 0, info.stderr
    info = info.json()
    units = info["access_units"]
    if kind == "hybrid":
        assert [u["intra_frames"] for u in units] == [[0, 2], [0, 2]]
        assert all("parameters" in u for u in units)  # the video codec coded the other frames
    else:
        assert info["codec"] == "intra" and [u["intra_frames"] for u in units] == [list(range(8))]


def test_intra_frames_are_the_image_codecs_pictures(streams):
    """Frame 0 of each segment equals what `nvc image` would decode from the same payload."""
    from nvc_pipe.plugins import load_image_codec

    seq, aus, _ = api.read_stream(str(streams["hybrid"]))
    au = AccessUnit.from_bytes(aus[1])
    items, rest = split_section(au.payload, au.frame_count)
    assert [k for k, _ in items] == [0, 2] and rest
    picture = load_image_codec("balle").decode(items[0][1], "cpu")
    assert np.array_equal(next(api.decode_segment(str(streams["hybrid"]), 1, "cpu")), picture)


def test_random_access_to_one_segment_equals_the_full_decode(streams):
    full = list(api.decode_frames(str(streams["hybrid"]), "cpu"))
    second = list(api.decode_segment(str(streams["hybrid"]), 1, "cpu"))
    assert len(full) == 8 and len(second) == 4
    assert all(np.array_equal(a, b) for a, b in zip(full[4:], second))


def test_bad_intra_options_fail_cleanly(media, tmp_path):
    src = str(media["audio"])
    out = tmp_path / "x.mkv"
    cases = [(["--intra", "nope"], "unknown intra codec"),
             (["--intra", "balle", "--intra-quality", "9"], "intra quality 9"),
             (["--intra-period", "2"], "need --intra"),
             (["--codec", "balle", "--preset", "fast"], "takes --intra-quality")]
    results = run_nvc_each(*[("encode", src, "-o", str(out), "-y", *args) for args, _ in cases])
    for (args, needle), r in zip(cases, results):  # each its own process, one interpreter start for all
        assert r.returncode != 0 and needle in r.stderr.decode(), (args, r.stderr)
        assert len(r.stderr.decode().strip().splitlines()) == 1 and not out.exists()


def test_corrupt_intra_sections_are_bitstream_errors():
    w = ByteWriter()
    w.varint(2)
    w.varint(0)
    w.blob(b"abc")
    w.varint(3)  # second intra frame at offset 4 of a 4-frame segment
    w.blob(b"")
    with pytest.raises(BitstreamError, match="frame 4"):
        split_section(w.getvalue(), 4)
    with pytest.raises(BitstreamError):
        split_section(b"\x00", 4)  # no intra frame
    with pytest.raises(BitstreamError):
        IntraSpec.from_dict({"codec": "balle", "quality": "2", "period": 0})


def test_all_intra_header_without_intra_settings_is_rejected(streams, tmp_path):
    import dataclasses

    seq, aus, _ = api.read_stream(str(streams["all"]))
    bad = tmp_path / "bad.nvc"
    bad.write_bytes(pack_stream_header(dataclasses.replace(seq, intra={})) + b"".join(aus))
    r = run_nvc("decode", str(bad), "-o", str(tmp_path / "o.y4m"))
    assert r.returncode != 0 and "all-intra" in r.stderr.decode() and not (tmp_path / "o.y4m").exists()
