"""EVC with the shipped weights: round trip, RD monotone over the rates, desync detection, corrupt payloads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nvc_evc import coding
from nvc_evc.codec import EVCCodec
from nvc_evc.weights import WEIGHTS, load_gauss, load_size, weights_bytes
from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError
from nvc_pipe.intra.image import decode_bytes, encode_rgb
from nvc_pipe.metrics import frame_psnr


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(skimage.data.camera()[200:264, 180:244, None].repeat(3, 2))


@pytest.fixture(scope="module")
def coded(crop):
    c = EVCCodec("LL")
    payload = c.encode(crop, 5)
    return c, payload, c.last_latents


def test_shipped_weights_are_small_and_plain():
    assert weights_bytes() <= 35 * 2**20
    for p in WEIGHTS.glob("*.npz"):
        with np.load(p, allow_pickle=False) as z:
            assert all(z[k].dtype != object for k in z.files)


def test_round_trip_latents_and_frame_match_encoder(coded, crop):
    c, payload, enc_latents = coded
    rgb = c.decode(payload)
    r = ByteReader(payload, "t")
    w, h, q_index, dec_size, crc = c._header(r)
    dec_latents = coding.decode(r, (96, 4, 4), _prior(c), _ztables(c), load_gauss(c.weights_dir), crc)
    assert np.array_equal(dec_latents.z, enc_latents.z)
    assert torch.equal(dec_latents.y_fixed, enc_latents.y_fixed) and torch.equal(dec_latents.r, enc_latents.r)
    expected = c.synthesize(load_size("L", c.weights_dir), enc_latents, q_index, h, w, torch.device("cpu"))
    assert np.array_equal(rgb, expected)
    assert rgb.shape == crop.shape and frame_psnr(crop, rgb, 255) > 20


def test_container_round_trip_and_rd_monotone(crop):
    rates, psnrs = [], []
    for q in (1, 3, 5, 7):  # the 4 trained anchors of one model
        data = encode_rgb(crop, "evc", q)
        header, rgb = decode_bytes(data, "cpu")
        assert header.codec == "evc" and header.quality == q and rgb.shape == crop.shape
        rates.append(8 * len(data) / crop[..., 0].size)
        psnrs.append(frame_psnr(crop, rgb, 255))
    assert all(a < b for a, b in zip(rates, rates[1:])), rates
    assert all(a < b for a, b in zip(psnrs, psnrs[1:])), psnrs


def test_corrupted_probability_is_a_desync_error(coded):
    c, payload, _ = coded
    g = load_gauss(c.weights_dir)
    bad = dataclasses.replace(g, freqs=g.freqs.copy())
    bad.freqs[:, g.half] += 4000  # every table: the zero residual made more likely than the encoder said
    r = ByteReader(payload, "t")
    *_, crc = c._header(r)
    with pytest.raises(BitstreamError, match="desync"):
        coding.decode(r, (96, 4, 4), _prior(c), _ztables(c), bad, crc)


def test_flipped_bit_in_coded_symbols_is_caught(coded):
    c, payload, _ = coded
    r = ByteReader(payload, "t")
    c._header(r)
    r.blob("z")
    pos = r.pos + 2  # inside the step-1 block's words, after its length varint
    for bit in range(8):
        bad = bytearray(payload)
        bad[pos] ^= 1 << bit
        with pytest.raises(BitstreamError):
            c.decode(bytes(bad))


@pytest.mark.parametrize("mutate", ["truncate", "trailing", "decoder", "qindex", "empty", "size"])
def test_corrupt_payloads_raise_one_line_errors(coded, mutate):
    c, payload, _ = coded
    if mutate == "truncate":
        bad = payload[: len(payload) // 2]
    elif mutate == "trailing":
        bad = payload + b"\0"
    elif mutate == "empty":
        bad = b""
    else:
        w = ByteWriter()
        w.varint(64 if mutate != "size" else 0, "w")
        w.varint(64, "h")
        w.u16(0 if mutate == "qindex" else 84, "q")
        w.u8(7 if mutate == "decoder" else 2, "d")
        bad = w.getvalue() + payload[len(w.getvalue()):]
    with pytest.raises(BitstreamError) as info:
        c.decode(bad)
    assert "\n" not in str(info.value)


def _prior(c):
    from nvc_evc.codec import int_prior
    return int_prior(c.weights_dir, torch.device("cpu"))


def _ztables(c):
    from nvc_evc.weights import load_entropy
    return load_entropy(c.weights_dir)[1]


def test_shipped_weights_restart_training_unchanged():
    """`nvc train-intra evc --init DIR` starts from DIR's L model: a trainable copy, same outputs, cache untouched."""
    from nvc_evc.model import EVC, EVCConfig
    from nvc_evc.train import load_trainable

    model = load_trainable(str(WEIGHTS))
    assert model.training and all(p.requires_grad for p in model.parameters())
    EVC(EVCConfig.small("LL")).load_state_dict(model.state_dict())  # the layout the export expects
    shipped = load_size("L")
    assert model is not shipped and not shipped.training
    x = torch.rand(1, 3, 64, 64)
    q = shipped.entropy.q_scale.view(-1)[:1]
    with torch.no_grad():
        assert torch.equal(model.eval()(x, q)["x_hat"], shipped(x, q)["x_hat"])


def test_train_intra_evc_init_must_be_a_directory(tmp_path, capsys):
    from nvc_pipe.cli import main

    code = main(["train-intra", "evc", "--init", str(tmp_path / "missing"), "--out", str(tmp_path / "w")])
    err = capsys.readouterr().err
    assert code == 2 and "--init" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "w").exists()
