"""C3 end to end on a tiny clip: real bitstream, fresh-process decode, bpp from bytes on disk, coded size against
entropy, desync detection, corrupt payloads, and the learned-window variant over several patches."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import dataclasses
import json
import os
import subprocess
import zlib
from fractions import Fraction

import numpy as np
import pytest
import torch

import nvc_c3
from nvc_c3 import PRESETS, arm
from nvc_c3.codec import integer_frame
from nvc_c3.model import C3Config
from nvc_pipe import api
from nvc_pipe.bitstream.spec import AccessUnit
from nvc_pipe.errors import BitstreamError
from nvc_pipe.media.clip import Segment, VideoInfo
from nvc_pipe.media.demux import RawOptions
from nvc_pipe.pipeline import Work, run_stages

PLUGINS = str(pathlib.Path(__file__).resolve().parents[2] / "plugins")
T, H, W = 8, 32, 32


pytestmark = pytest.mark.usefixtures("one_thread")


def make_clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Moving smooth colour patterns plus a little noise, uint8 (T, H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for k in range(t):
        r = 128 + 80 * np.sin((xx + 2 * k) / 5.0) * np.cos(yy / 7.0)
        g = 128 + 60 * np.cos((xx - yy + k) / 6.0)
        b = 100 + 50 * np.sin((yy + 3 * k) / 4.0)
        frames.append(np.stack([r, g, b], -1) + rng.normal(0, 4, (h, w, 3)))
    return np.clip(np.round(np.array(frames)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    d = tmp_path_factory.mktemp("c3")
    rgb = make_clip(T, H, W)
    src = d / "clip.rgb"
    rgb.tofile(src)
    report = api.encode_file(str(src), str(d / "clip.nvc"), codec="c3", preset="c3-tiny", device="cpu",
                             raw=RawOptions((W, H), Fraction(25), "rgb24"), progress=False)
    seq, aus, _ = api.read_stream(str(d / "clip.nvc"))
    return {"dir": d, "rgb": rgb, "report": report, "seq": seq, "payload": AccessUnit.from_bytes(aus[0]).payload}


def _decode(payload, config=PRESETS["c3-tiny"].model, t=T, h=H, w=W):
    return list(nvc_c3.codec.decode_segment(payload, config, t, h, w, "cpu"))


def test_bpp_comes_from_the_bytes_on_disk(encoded):
    rep = encoded["report"]
    size = os.path.getsize(encoded["dir"] / "clip.nvc")
    assert rep["file_bytes"] == size == rep["stream_bytes"]
    assert rep["bpp"] == pytest.approx(8 * size / (T * H * W), abs=1e-6)
    c3 = rep["segments"][0]["c3"]
    assert 8 * len(encoded["payload"]) == c3["payload_bits"] < 8 * size
    assert rep["bpp"] < 3.0 and rep["psnr_rgb"] > 22  # a sane operating point for 165 steps
    assert rep["psnr_rgb"] == pytest.approx(c3["psnr_rgb"], abs=1e-3)  # api decoded the AU back: same frames


def test_a_version_4_stream_is_refused_before_any_payload_is_read(encoded, tmp_path):
    """Payload v5 (u8 weight-scale codes; v4: fp16 scales) is the only one read: v4 streams are refused cleanly."""
    from nvc_pipe.bitstream.spec import pack_stream_header, parse_stream_header

    seq, rest = parse_stream_header((encoded["dir"] / "clip.nvc").read_bytes())
    assert seq.payload_version == nvc_c3.codec.payload_version == 5
    old = tmp_path / "v4.nvc"
    old.write_bytes(pack_stream_header(dataclasses.replace(seq, payload_version=4)) + rest)
    with pytest.raises(BitstreamError, match="c3 payload version 4 is not supported"):
        api.decode_file(str(old), str(tmp_path / "out.y4m"), device="cpu")
    assert not (tmp_path / "out.y4m").exists()


def test_latent_coded_size_is_within_one_percent_of_their_entropy(encoded):
    c3 = encoded["report"]["segments"][0]["c3"]
    assert c3["latent_estimate_bits"] > 3000
    assert abs(c3["latent_coded_bits"] - c3["latent_estimate_bits"]) <= 0.01 * c3["latent_estimate_bits"]
    assert abs(c3["weight_coded_bits"] - c3["weight_estimate_bits"]) <= 0.01 * c3["weight_estimate_bits"] + 64


_FRESH = r"""
import json, sys, zlib
sys.path.insert(0, {plugins!r})
import nvc_c3
from nvc_c3 import payload as P
from nvc_c3.codec import integer_frame, latents_sha256
from nvc_c3.model import patch_boxes
from nvc_pipe import api, entropy
from nvc_pipe.bitstream.spec import AccessUnit
from nvc_pipe.metrics import frame_psnr
import numpy as np
path = {path!r}
seq, aus, _ = api.read_stream(path)
cfg = nvc_c3.codec.config_from_dict(seq.codec_config)
latents = []
for raw in aus:
    au = AccessUnit.from_bytes(raw)
    boxes = patch_boxes(cfg, au.frame_count, seq.height, seq.width)
    nets, crcs, block = P.read_payload(au.payload, cfg, boxes)
    stream = entropy.LaplaceDecoder(block, -255, 255)
    latents.append([latents_sha256(P.decode_patch_latents(cfg, nets[i], b[3:], crcs[i], stream, i))
                    for i, b in enumerate(boxes)])
src = np.fromfile({src!r}, dtype=np.uint8).reshape({shape})
crc, psnr = 0, []
for k, frame in enumerate(api.decode_frames(path, "cpu")):
    crc = zlib.crc32(frame.tobytes(), crc)
    psnr.append(frame_psnr(frame, src[k], 255))
print(json.dumps({{"latents": latents, "frames_crc32": crc, "psnr": sum(psnr) / len(psnr)}}))
"""


def test_fresh_process_decodes_identical_latents_and_frames(encoded):
    code = _FRESH.format(plugins=PLUGINS, path=str(encoded["dir"] / "clip.nvc"), src=str(encoded["dir"] / "clip.rgb"),
                         shape=(T, H, W, 3))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    seg = encoded["report"]["segments"][0]["c3"]
    assert got["latents"] == [seg["latents_sha256"]]
    assert got["frames_crc32"] == seg["frames_crc32"]
    assert got["psnr"] == pytest.approx(seg["psnr_rgb"], abs=1e-3)


def test_in_process_decode_matches_too(encoded):
    frames = _decode(encoded["payload"])
    assert len(frames) == T and frames[0].shape == (H, W, 3)
    crc = 0
    for f in frames:
        crc = zlib.crc32(integer_frame(f, 255).tobytes(), crc)
    assert crc == encoded["report"]["segments"][0]["c3"]["frames_crc32"]


def test_one_flipped_probability_bit_is_caught_as_desync(encoded, monkeypatch):
    real = arm.int_arm_forward
    calls = {"n": 0}

    def corrupt(layers, ctx):
        mu, raw = real(layers, ctx)
        calls["n"] += 1
        if calls["n"] == 40:  # one wavefront step, one position: flip bit 6 of μ (a shift of 0.25 symbols)
            mu = mu.copy()
            mu[0] ^= 1 << 6
        return mu, raw

    monkeypatch.setattr(arm, "int_arm_forward", corrupt)
    with pytest.raises(BitstreamError, match="entropy model desync"):
        _decode(encoded["payload"])
    assert calls["n"] >= 40


@pytest.mark.parametrize("where", ["latents", "weights", "truncated", "trailing"])
def test_corrupt_payload_is_an_error_not_garbage(encoded, where):
    data = bytearray(encoded["payload"])
    if where == "latents":
        data[-5] ^= 0x10
    elif where == "weights":
        data[len(data) - 800 - 40] ^= 0x08  # inside the weight block (the latent block is ~800 bytes)
    elif where == "truncated":
        data = data[:-7]
    else:
        data += b"\0"
    with pytest.raises(BitstreamError):
        _decode(bytes(data))


def test_describe_reports_sizes_and_macs(encoded):
    info = nvc_c3.codec.describe(encoded["payload"], PRESETS["c3-tiny"].model, T, H, W)
    assert info["patches"] == 1 and info["latents"] == 8 * 32 * 32 + 4 * 16 * 16 + 2 * 8 * 8
    assert info["macs_per_pixel"] == pytest.approx(803.2, abs=0.1)
    assert info["latent_bytes"] + info["other_bytes"] == len(encoded["payload"])
    assert api.inspect_file(str(encoded["dir"] / "clip.nvc"))["access_units"][0]["patches"] == 1


def test_learned_windows_over_several_odd_sized_patches():
    tiny = PRESETS["c3-tiny"]
    cfg = C3Config(num_grids=3, q_step=0.3, synthesis_widths=(6,), arm_widths=(3,), arm_per_grid=True,
                   context="learned", patch_frames=4, patch_height=16, patch_width=16)
    preset = dataclasses.replace(tiny, model=cfg, train=dataclasses.replace(tiny.train, epochs=30),
                                 c3=dataclasses.replace(tiny.c3, stage2_steps=3, mask_steps=8, mask_radius=3))
    t, h, w = 4, 13, 21  # two patches across (10 and 11 wide), one odd height
    rgb = make_clip(t, h, w, seed=1)
    work = Work(Segment(rgb, np.arange(t), 0, 0), VideoInfo(w, h, "rgb24", Fraction(25), Fraction(1, 25)), preset,
                torch.device("cpu"), progress=False)
    work = run_stages(nvc_c3.codec.stages(preset), work)
    rep = work.report["c3"]
    assert len(rep["patches"]) == 2
    for p in rep["patches"]:
        assert len(p["windows"]) == 3 and all(-3 <= v <= 0 for win in p["windows"] for v in win)  # 4×4 inside ±3
    config = nvc_c3.codec.config_from_dict(nvc_c3.codec.config_to_dict(preset))
    frames = list(nvc_c3.codec.decode_segment(work.payload, config, t, h, w, "cpu"))
    crc = 0
    for f in frames:
        crc = zlib.crc32(integer_frame(f, 255).tobytes(), crc)
    assert crc == rep["frames_crc32"]
    assert nvc_c3.codec.describe(work.payload, config, t, h, w)["learned_windows"] == [
        [tuple(v) for v in p["windows"]] for p in rep["patches"]]


def test_fresh_process_decodes_the_cool_decoder_bit_exactly(tmp_path):
    """The Cool-Chic-like decoder (shared residual ARM + linear branch, ReLU, learned upsampling, linear synthesis
    branch, whole-frame patches)
    in a 2-frame video: a fresh process decodes the encoder's latents and frames exactly."""
    t, h, w = 2, 16, 24
    rgb = make_clip(t, h, w, seed=2)
    src = tmp_path / "clip.rgb"
    rgb.tofile(src)
    report = api.encode_file(str(src), str(tmp_path / "clip.nvc"), codec="c3", preset="c3-tiny-cool", device="cpu",
                             raw=RawOptions((w, h), Fraction(25), "rgb24"), progress=False)
    code = _FRESH.format(plugins=PLUGINS, path=str(tmp_path / "clip.nvc"), src=str(src), shape=(t, h, w, 3))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    seg = report["segments"][0]["c3"]
    assert got["latents"] == [seg["latents_sha256"]] and got["frames_crc32"] == seg["frames_crc32"]
    assert seg["macs_per_pixel"] > 0 and len(seg["patches"]) == 1
