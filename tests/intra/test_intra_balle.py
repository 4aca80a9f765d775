"""The Ballé plugin with its SHIPPED weights: no-pickle loading, exact decode, sane quality, the real CLI."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import numpy as np
import pytest
import skimage.data
import torch

from conftest import run_nvc_each
from nvc_pipe.errors import BitstreamError
from nvc_pipe.intra.image import MAGIC_IMAGE, decode_bytes, encode_rgb, parse_image, write_png
from nvc_pipe.metrics import frame_psnr
from nvc_pipe.plugins import ImageCodec, load_image_codec

WEIGHTS = pathlib.Path(__file__).resolve().parents[2] / "plugins" / "nvc_balle" / "weights"


@pytest.fixture(scope="module")
def crop():
    return np.ascontiguousarray(skimage.data.astronaut()[100:164, 180:244])  # 64×64, face and helmet


@pytest.fixture(scope="module")
def codec():
    c = load_image_codec("balle")
    assert isinstance(c, ImageCodec)
    return c


def test_weights_are_plain_arrays_without_pickle():
    files = sorted(WEIGHTS.glob("q*.npz"))
    assert [f.name for f in files] == ["q1.npz", "q2.npz", "q3.npz", "q4.npz"]
    assert sum(f.stat().st_size for f in files) <= 10 * 2**20
    for f in files:
        with np.load(f, allow_pickle=False) as z:  # raises on any object array
            for k in z.files:
                assert z[k].dtype != object
                if k.startswith("param."):
                    assert z[k].dtype == np.float16


@pytest.mark.parametrize("quality", [1, 4])
def test_round_trip_matches_synthesis_of_rounded_latents(codec, crop, quality):
    data = encode_rgb(crop, "balle", quality)
    header, rgb = decode_bytes(data, "cpu")
    assert (header.codec, header.quality, header.width, header.height) == ("balle", quality, 64, 64)
    model, tables, _ = codec.model(quality)
    with torch.no_grad():
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        y = model.analysis(x)[0]
        y_hat = torch.round(y - torch.from_numpy(tables.offsets.astype(np.float32))[:, None, None])
        y_hat = y_hat + torch.from_numpy(tables.offsets.astype(np.float32))[:, None, None]
        ref = model.synthesis(y_hat[None])[0].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(rgb, ref)
    psnr = frame_psnr(crop, rgb, 255)
    bpp = 8 * len(data) / (64 * 64)
    assert psnr > 20, psnr  # a desynchronised or mis-loaded decoder gives < 12 dB
    assert 0.02 < bpp < 4, bpp


def test_odd_size_and_rates_increase_with_quality(crop):
    odd = crop[:37, :51]
    sizes = []
    for q in (1, 2, 3, 4):
        data = encode_rgb(odd, "balle", q)
        _, rgb = decode_bytes(data, "cpu")
        assert rgb.shape == odd.shape
        sizes.append(len(data))
    assert sizes == sorted(sizes)


def test_corrupt_payload_is_a_bitstream_error(crop):
    data = encode_rgb(crop, "balle", 2)
    for bad in (data[:-5], data[:3], b"\x8bNVC\x01\x00" + data[6:], data + b"x"):
        with pytest.raises(BitstreamError):
            decode_bytes(bad, "cpu")
    header, payload = parse_image(data)
    assert data.startswith(MAGIC_IMAGE) and payload


def test_cli_round_trip_and_bad_inputs(nvc, tmp_path, crop):
    src = tmp_path / "in.png"
    write_png(str(src), crop)
    enc = nvc("image", "encode", str(src), "-o", str(tmp_path / "a.nvc"), "--codec", "balle", "--quality", "2",
              "--json")
    assert enc.returncode == 0, enc.stderr
    assert enc.json()["file_bytes"] == (tmp_path / "a.nvc").stat().st_size
    good = (tmp_path / "a.nvc").read_bytes()
    (tmp_path / "truncated.nvc").write_bytes(good[: len(good) // 2])
    dec, r = run_nvc_each(  # two `nvc` processes, one interpreter start
        ("image", "decode", str(tmp_path / "a.nvc"), "-o", str(tmp_path / "a.png"), "--ref", str(src), "--json"),
        ("image", "decode", str(tmp_path / "truncated.nvc"), "-o", str(tmp_path / "t.png")))
    assert dec.returncode == 0, dec.stderr
    assert dec.json()["psnr_rgb"] > 20
    assert (tmp_path / "a.png").stat().st_size > 0

    assert r.returncode == 3 and len(r.stderr.strip().splitlines()) == 1 and b"Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "t.png").exists()


def _main(capsys, *args):
    """The CLI in-process (same code path as the `nvc` command, without a Python start-up per case)."""
    from nvc_pipe.cli import main

    code = main(list(args))
    return code, capsys.readouterr().err


def test_cli_bad_inputs(capsys, tmp_path, crop):
    src = tmp_path / "in.png"
    write_png(str(src), crop)
    good = encode_rgb(crop, "balle", 1)
    (tmp_path / "a.nvc").write_bytes(good)
    write_png(str(tmp_path / "exists.png"), crop)
    code, err = _main(capsys, "image", "decode", str(tmp_path / "a.nvc"), "-o", str(tmp_path / "exists.png"))
    assert code == 2 and "exists" in err  # no -y
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    cases = {"flipped.nvc": bytes(flipped), "foreign.nvc": b"GIF89a" * 20, "empty.nvc": b"",
             "video.nvc": b"\x8bNVC\x01\x00" + good[6:], "version.nvc": good[:4] + b"\x09" + good[5:]}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        out = tmp_path / (name + ".png")
        code, err = _main(capsys, "image", "decode", str(tmp_path / name), "-o", str(out))
        assert code == 3, (name, code, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists() and not list(tmp_path.glob(".*.part*"))
    for cmd in (["decode", str(tmp_path / "a.nvc"), "-o", str(tmp_path / "v.y4m")], ["info", str(tmp_path / "a.nvc")]):
        code, err = _main(capsys, *cmd)  # a video command given an image: say which command reads it
        assert code != 0 and "nvc image decode" in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "v.y4m").exists()
    code, err = _main(capsys, "image", "encode", str(tmp_path / "foreign.nvc"), "-o", str(tmp_path / "x.nvc"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.nvc").exists()
    code, err = _main(capsys, "image", "encode", str(src), "-o", str(tmp_path / "x.nvc"), "--codec", "nope")
    assert code == 2 and "unknown image codec" in err
    code, err = _main(capsys, "image", "encode", str(src), "-o", str(tmp_path / "x.nvc"), "--quality", "9")
    assert code == 2 and "quality" in err and not (tmp_path / "x.nvc").exists()
    code, err = _main(capsys, "train-intra", "balle", "--lambda", "0.01", "--out", str(tmp_path / "w"))
    assert code == 2 and "λ" in err
