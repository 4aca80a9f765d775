"""HiNeRV's rate–distortion weight coding (plugins/nvc_hinerv/rd.py, nvc_pipe/bitstream/rdweights.py): integer
tables, record round trips, the model's size estimate against the coded bytes, bit-exact decoding in a fresh
process, corrupt payloads, and λ steered by a rate target. Tiny clips and the rd-tiny preset: seconds each."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import hashlib
import random
import subprocess

import numpy as np
import pytest
import torch

from conftest import write_video
from nvc_pipe import api
from nvc_pipe.bitstream import rdweights as R
from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError
from nvc_pipe.rate import Target
from nvc_hinerv import rd
from nvc_hinerv.codec import PRESETS, codec, segment_model


def test_laplace_table_is_integer_arithmetic():
    # ratio 2^15: s = 1/2, r_k = 2^(32-k); freq(0) = 2^32 − 2^31, freq(±1) = (2^31 − 2^29)/2, freq(±2) = (2^29 − 2^27)/2
    assert R.laplace_table(32768, -2, 2).tolist() == [3 << 26, 3 << 28, 1 << 31, 3 << 28, 3 << 26]
    t = R.laplace_table(R.ratio_of_scale(3.0), -40, 40)
    assert (t >= 1).all() and t.dtype == np.int64 and (t[40:] == t[40::-1]).all()


def _records(rng):
    recs = [R.RDRecord("bias", (5,), fp16=rng.normal(size=5).astype(np.float16))]
    for i, (shape, b) in enumerate([((16, 8), 2.0), ((3, 4, 5), 0.2), ((64, 32), 9.0), ((7,), 1e-3)]):
        q = np.rint(rng.laplace(0, b, size=shape)).astype(np.int64)
        recs.append(R.rd_record(f"w{i}", q, 0.01 * (i + 1), R.ratio_of_scale(max(np.abs(q).mean(), 0.05))))
    return recs


def test_records_round_trip_and_cost_their_information():
    recs = _records(np.random.default_rng(0))
    w = ByteWriter()
    sizes = R.write_rd_tensors(recs, w)
    data = w.getvalue()
    assert len(data) == sizes["coded_bytes"]
    coded_symbols = len(data) - sizes["header_bytes"]
    assert abs(coded_symbols - sizes["information_bits"] / 8) <= 0.01 * coded_symbols + 8
    shapes = [(r.name, r.shape) for r in recs]
    r = ByteReader(data)
    back = R.read_rd_tensors(r, shapes, {r.name for r in recs if r.q is not None})
    r.expect_end()
    for rec in recs:
        assert np.array_equal(back[rec.name].values(), rec.values())
    with pytest.raises(BitstreamError):  # the wrong kind for a tensor
        R.read_rd_tensors(ByteReader(data), shapes, {"bias"})


@pytest.fixture(scope="module")
def rd_stream(tmp_path_factory, one_thread):
    d = tmp_path_factory.mktemp("rd")
    src = write_video(d / "in.mp4", 32, 32, 4)
    out = d / "rd.nvc"
    rep = api.encode_file(str(src), str(out), codec="hinerv", preset="rd-tiny", overrides={"seed": 0},
                          device="cpu", progress=False)
    return out, rep


def test_coded_size_is_the_models_estimate(rd_stream):
    _, rep = rd_stream
    seg = rep["segments"][0]["rd"]
    assert seg["payload_bytes"] == seg["coded_bytes"]
    assert abs(seg["payload_bytes"] - seg["estimated_bytes"]) <= 0.01 * seg["payload_bytes"]


def test_stream_quality_is_the_trained_quality(rd_stream):
    # the last evaluation of training renders with exactly the decoder's weights (q·Δ₁₆, fp16 biases)
    _, rep = rd_stream
    last = [h for h in rep["segments"][0]["history"] if "psnr_db" in h][-1]
    assert last["stage"] == "rd_ste"
    assert abs(rep["psnr_rgb"] - last["psnr_db"]) < 0.1


def test_stream_header_and_info(rd_stream):
    out, _ = rd_stream
    seq, aus, _ = api.read_stream(str(out))
    assert seq.payload_version == 2 and seq.codec_config["weight_coding"] == "rd"
    info = api.inspect_file(str(out))
    assert info["payload_version"] == 2


def _digest(path) -> str:
    h = hashlib.sha256()
    for f in api.decode_frames(str(path), device="cpu"):
        h.update(f.tobytes())
    return h.hexdigest()


def test_decode_is_bit_exact_in_a_fresh_process(rd_stream):
    out, _ = rd_stream
    code = ("import hashlib, sys; from nvc_pipe import api; h = hashlib.sha256()\n"
            "for f in api.decode_frames(sys.argv[1], device='cpu'): h.update(f.tobytes())\n"
            "print(h.hexdigest())")
    fresh = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120,
                           env={"OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"})
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == _digest(out)


def test_corrupt_rd_payloads_fail_cleanly(rd_stream):
    out, _ = rd_stream
    seq, aus, _ = api.read_stream(str(out))
    cfg = codec.config_from_dict(seq.codec_config)
    from nvc_pipe.bitstream.spec import AccessUnit

    payload = AccessUnit.from_bytes(aus[0]).payload
    rng = random.Random(0)
    outcomes = set()
    for i in range(60):
        data = bytearray(payload)
        if i % 3 == 0:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(1 + i % 4):
                data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            frames = list(codec.decode_segment(bytes(data), cfg, 4, 32, 32, "cpu"))
            assert len(frames) == 4
            outcomes.add("decoded")
        except BitstreamError:
            outcomes.add("refused")
    assert "refused" in outcomes


def test_rate_target_steers_lambda(tmp_path, one_thread):
    src = write_video(tmp_path / "in.mp4", 32, 32, 4)
    sizes = {}
    for bpp in (2.5, 4.0):
        rep = api.encode_file(str(src), str(tmp_path / f"{bpp}.nvc"), codec="hinerv", preset="rd-tiny",
                              target=Target("bpp", bpp), overrides={"seed": 0, "epochs": 120}, device="cpu",
                              progress=False)
        seg = rep["segments"][0]
        start = rep["config"]["settings"]["lambda"]  # λ₀ of the network sized to the target
        sizes[bpp] = (seg["rd"]["payload_bytes"], seg["rd"]["lambda"], seg["rate"]["budget_bytes"], start)
    (lo_bytes, lo_lambda, lo_budget, lo_start), (hi_bytes, hi_lambda, hi_budget, hi_start) = sizes[2.5], sizes[4.0]
    assert lo_budget < hi_budget and lo_bytes < hi_bytes and lo_lambda != lo_start and hi_lambda != hi_start
    assert abs(lo_bytes - lo_budget) < 0.25 * lo_budget and abs(hi_bytes - hi_budget) < 0.25 * hi_budget


def test_laplace_bits_matches_the_coder_tables():
    torch.manual_seed(0)
    q = torch.round(torch.distributions.Laplace(0.0, 4.0).sample((500,)))
    b = rd.fitted_scale(q)
    rec = R.rd_record("x", q.numpy().astype(np.int64), 0.01, R.ratio_of_scale(b))
    assert abs(rd.coded_bits(q, b) - R.information_bits([rec])) < 1e-3 * R.information_bits([rec])


def test_rd_network_renders_the_decoders_weights():
    torch.manual_seed(0)
    net = rd.RDNet(segment_model(PRESETS["rd-tiny"].model, 4, 32, 32), 0.01)
    recs = {r.name: r for r in rd.records(net)}
    dec = segment_model(PRESETS["rd-tiny"].model, 4, 32, 32)
    with torch.no_grad():
        for n, p in dec.named_parameters():
            p.copy_(torch.from_numpy(recs[n].values()))
        t = torch.arange(4)
        assert torch.equal(net.eval()(t), dec.eval()(t))


def test_rd_presets_give_more_steps_to_rounding():
    # the 256x144x24 eval clip: 720 steps = 60 epochs; 6-bit keeps its 4 QAT epochs, rd rounds for 8
    from fractions import Fraction

    from nvc_pipe.rate import Clip

    clip = Clip(256, 144, 24, Fraction(25), 24, 0, "cpu")
    rd_train = codec.configure("rd", None, {}, clip).train
    six = codec.configure("fast", Target("bpp", 0.3), {}, clip).train
    total = rd_train.epochs + rd_train.prune_epochs + rd_train.qat_epochs
    assert total == six.epochs + six.prune_epochs + six.qat_epochs == 60
    assert rd_train.qat_epochs == 8 and six.qat_epochs == 4


def test_rd_presets_keep_their_lambda_and_a_target_sizes_the_network_and_starts_below_the_crushing_range():
    # no target: the preset's network and fixed λ, no budget to steer to; a target: a network sized to it (growing
    # with the budget) and λ₀ from the rate model, never above RD_LAMBDA_START[1] (λ 0.64 at the start left fast-s
    # at 29.2 dB where 0.03 gave 31.1)
    from fractions import Fraction

    from nvc_hinerv import ratecontrol as rc
    from nvc_pipe.rate import Clip

    clip = Clip(256, 144, 24, Fraction(25), 24, 0, "cpu")
    fixed = codec.configure("rd-s", None, {}, clip)
    assert fixed.lmbda == PRESETS["rd-s"].lmbda and fixed.stream_bpp is None and fixed.model == PRESETS["rd-s"].model
    sized = [codec.configure("rd", Target("bpp", b), {}, clip) for b in (0.1, 0.2, 0.4)]
    params = [rc.count_parameters(c.model, 24, 144, 256)[0] for c in sized]
    assert params[0] < params[1] < params[2] and all(c.model.weight_coding == "rd" for c in sized)
    assert all(rc.RD_LAMBDA_START[0] <= c.lmbda <= rc.RD_LAMBDA_START[1] for c in sized)
    net = PRESETS["rd-s"].model
    lams = [rc.rd_lambda(net, clip, n) for n in (1_000, 15_000, 20_000, 25_000, 10**6)]
    assert lams[0] == rc.RD_LAMBDA_START[1] and lams[-1] == rc.RD_LAMBDA_START[0]
    assert all(a >= b for a, b in zip(lams, lams[1:])) and lams[1] > lams[2] > lams[3]


def test_lambda_option_sets_an_rd_presets_lambda_and_is_refused_elsewhere():
    from fractions import Fraction

    from nvc_pipe.errors import ConfigError
    from nvc_pipe.rate import Clip

    clip = Clip(64, 64, 8, Fraction(25), 8, 0, "cpu")
    cfg = codec.configure("rd-s", None, {"lambda": 0.02}, clip)
    assert cfg.lmbda == 0.02 and cfg.stream_bpp is None
    for preset, target, words in (("fast", None, r"rd-\* presets"), (None, None, r"rd-\* presets"),
                                  ("rd", Target("bpp", 0.2), "not both")):
        with pytest.raises(ConfigError, match=words):
            codec.configure(preset, target, {"lambda": 0.02}, clip)
