"""C3 as an image codec (`nvc image --codec c3`): real .nvc image files through the CLI, bit-exact decode in a
fresh process, --lambda/--steps, clean failures on bad options and corrupt payloads."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import os
import subprocess

import numpy as np
import pytest

from conftest import run_nvc_each
from nvc_c3.image import codec, image_preset
from nvc_c3.presets import total_steps
from nvc_pipe.errors import BitstreamError
from nvc_pipe.intra.image import ImageHeader, inspect_image_file, pack_image, read_rgb, write_png

NVC = [sys.executable, "-m", "nvc_pipe"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _picture(h=24, w=40, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([128 + 80 * np.sin(xx / 5.0) * np.cos(yy / 7.0), 128 + 60 * np.cos((xx - yy) / 6.0),
                    100 + 50 * np.sin(yy / 4.0)], -1) + rng.normal(0, 3, (h, w, 3))
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    d = tmp_path_factory.mktemp("c3img")
    write_png(str(d / "in.png"), _picture())
    out = subprocess.run(NVC + ["image", "encode", str(d / "in.png"), "-o", str(d / "x.nvc"), "--codec", "c3",
                                "--lambda", "2e-3", "--steps", "60"], capture_output=True, text=True, env=ENV,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return d


def test_image_file_decodes_bit_exactly_in_a_fresh_process(coded):
    from nvc_pipe.intra.image import decode_bytes

    data = (coded / "x.nvc").read_bytes()
    _, here = decode_bytes(data, "cpu")  # this process; latents are CRC-checked against the encoder's
    out = subprocess.run(NVC + ["image", "decode", str(coded / "x.nvc"), "-o", str(coded / "d.png"), "--ref",
                                str(coded / "in.png"), "--device", "cpu", "-y"], capture_output=True, text=True,
                         env=ENV, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert np.array_equal(read_rgb(str(coded / "d.png")), here)  # a fresh process renders the same integers
    src = read_rgb(str(coded / "in.png"))
    assert np.mean((here.astype(float) - src) ** 2) < np.var(src.astype(float))  # it really codes the picture
    info = inspect_image_file(str(coded / "x.nvc"))
    assert info["codec"] == "c3" and info["patches"] == 1 and info["macs_per_pixel"] > 0


def test_lambda_moves_the_rate_and_steps_are_counted():
    rgb = _picture(16, 24, 1)
    low = codec.encode(rgb, 2, rd_lambda=2e-2, steps=40)
    high = codec.encode(rgb, 2, rd_lambda=1e-4, steps=40)
    assert len(high) > len(low)
    assert total_steps(image_preset(2, steps=40)) == 40 and total_steps(image_preset(2)) == 2000


def test_bad_options_and_corrupt_payloads_fail_cleanly(coded, tmp_path):
    payload = codec.encode(_picture(8, 8), 1, steps=4)
    with pytest.raises(BitstreamError):
        codec.decode(payload[:-3], "cpu")
    for cut in (1, 3, 12):
        with pytest.raises(BitstreamError):
            codec.decode(payload[:cut], "cpu")
    flipped = bytearray(payload)
    flipped[-5] ^= 0x55  # inside the latent block: desync or CRC failure, never garbage
    with pytest.raises(BitstreamError):
        codec.decode(bytes(flipped), "cpu")
    data = pack_image(ImageHeader("c3", 1, 8, 8), bytes(flipped))
    path = tmp_path / "c.nvc"
    path.write_bytes(data)
    bad, out = run_nvc_each(  # two `nvc` processes, one interpreter start
        ("image", "encode", str(coded / "in.png"), "-o", str(tmp_path / "b.nvc"), "--codec", "balle", "--lambda",
         "1e-3"), ("image", "decode", str(path), "-o", str(tmp_path / "c.png")))
    bad_err, out_err = bad.stderr.decode(), out.stderr.decode()
    assert bad.returncode == 2 and len(bad_err.strip().splitlines()) == 1 and "--lambda" in bad_err
    assert not (tmp_path / "b.nvc").exists()
    assert out.returncode == 3 and len(out_err.strip().splitlines()) == 1 and not (tmp_path / "c.png").exists()


def test_config_is_compact_and_strict():
    from nvc_c3.image import read_config, write_config
    from nvc_c3.presets import IMAGE_PRESET, PRESETS
    from nvc_pipe.bitstream.fields import ByteReader, ByteWriter

    for preset in (IMAGE_PRESET, *PRESETS.values()):
        w = ByteWriter()
        write_config(preset.model, w)
        assert read_config(ByteReader(w.getvalue())) == preset.model
    w = ByteWriter()
    write_config(IMAGE_PRESET.model, w)
    assert w.getvalue() == b"\x01"  # the default decoder is profile 1: one byte
    w = ByteWriter()
    write_config(PRESETS["c3-fast"].model, w)
    data = w.getvalue()
    assert data[0] == 0 and len(data) < 40  # the sequence header's JSON of the same config is ~290 bytes
    for i in range(len(data)):  # every truncation, and any byte set to 0xff, is rejected or still a valid config
        with pytest.raises(BitstreamError):
            read_config(ByteReader(data[:i]))
        bad = bytearray(data)
        bad[i] = 0xFF
        try:
            read_config(ByteReader(bytes(bad)))
        except BitstreamError:
            pass
