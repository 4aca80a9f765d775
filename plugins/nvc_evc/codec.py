"""The EVC image codec plugin object (`nvc_pipe.image_codecs: evc`) and its payload.

    payload = width:varint height:varint q_index:u16 decoder:u8 symbol_crc:u32 z:blob step1:blob step2:blob

* `q_index` = round(100·q_scale) ∈ [1, 65535]; both sides use q_scale = q_index/100 (EVC's header rule).
* `decoder`: 0 = L, 1 = M, 2 = S (the size of the synthesis transform; the entropy model is shared by every size).
* the three blocks and `symbol_crc` are those of `coding.py`. Trailing bytes are an error.

Quality (`--quality`, 1..7): odd levels 1, 3, 5, 7 are the 4 trained anchors (λ 0.0022 … 0.027, lowest rate
first); even levels log-interpolate q_scale halfway between neighbours. The encoder size (and the decoder size it
writes) is the codec object's `model` ("LL" default; `codec_ss` is EVC-SS; env NVC_EVC_MODEL overrides); the
weights come from `plugins/nvc_evc/weights/` unless NVC_EVC_WEIGHTS names another directory.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch

from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError, ConfigError, InputError

from . import coding
from .fixedpoint import IntPrior
from .model import pad_to
from .weights import SIZES, WEIGHTS, load_entropy, load_gauss, load_size

QUALITIES = (1, 2, 3, 4, 5, 6, 7)
MAX_SIDE = 1 << 16


def q_scale_for(anchors: np.ndarray, quality: float) -> float:
    """q_scale at a quality in [1, 7]: log-linear between the 4 anchors (quality 1 ↔ anchor 0, 7 ↔ anchor 3)."""
    pos = min(max((quality - 1) / 2, 0.0), len(anchors) - 1.0)
    i = min(int(math.floor(pos)), len(anchors) - 2)
    t = pos - i
    return float(math.exp((1 - t) * math.log(anchors[i]) + t * math.log(anchors[i + 1])))


def q_index_for(q_scale: float) -> int:
    return int(min(max(round(100 * q_scale), 1), 65535))


_PRIORS: dict = {}


def int_prior(directory: str, device: torch.device) -> IntPrior:
    key = (directory, str(device))
    if key not in _PRIORS:
        em, _ = load_entropy(directory)
        _PRIORS[key] = IntPrior(em, device)
    return _PRIORS[key]


class EVCCodec:
    name = "evc"
    qualities = QUALITIES
    default_quality = 5

    def __init__(self, model: str = "LL", weights_dir=None) -> None:
        self._model = model
        self._weights_dir = weights_dir

    @property
    def weights_dir(self) -> str:
        """Explicit dir, else $NVC_EVC_WEIGHTS (e.g. the output of `nvc train-intra evc`), else the shipped one."""
        return str(self._weights_dir or os.environ.get("NVC_EVC_WEIGHTS") or WEIGHTS)

    @property
    def model(self) -> str:
        m = os.environ.get("NVC_EVC_MODEL", self._model).upper()
        if len(m) != 2 or m[0] not in SIZES or m[1] not in SIZES:
            raise ConfigError(f"unknown EVC model {m!r} (two of L, M, S: encoder then decoder, e.g. SS)")
        return m

    def anchors(self) -> np.ndarray:
        em, _ = load_entropy(self.weights_dir)
        return em.q_scale.detach().view(-1).double().numpy()

    @torch.no_grad()
    def encode(self, rgb: np.ndarray, quality: int, device: torch.device | None = None) -> bytes:
        if quality not in QUALITIES:
            raise ConfigError(f"EVC quality must be one of {QUALITIES}, got {quality}")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError("EVC codes (H, W, 3) uint8 RGB images")
        device = device or torch.device("cpu")
        enc_model, dec_size = load_size(self.model[0], self.weights_dir), self.model[1]
        q_index = q_index_for(q_scale_for(self.anchors(), quality))
        h, w = rgb.shape[:2]
        x = pad_to(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0)
        em = enc_model.entropy
        q = em.q_enc(torch.tensor([q_index / 100.0]))
        y = enc_model.enc(x) / q
        z = em.hyper_enc(y)
        _, z_tables = load_entropy(self.weights_dir)
        prior, gauss = int_prior(self.weights_dir, device), load_gauss(self.weights_dir)
        blocks, latents = coding.encode(y, z, prior, z_tables, gauss)
        self.last_latents = latents  # what the encoder computed (tests compare the decoder's with it)
        wr = ByteWriter()
        wr.varint(w, "width")
        wr.varint(h, "height")
        wr.u16(q_index, "q_index")
        wr.u8(SIZES.index(dec_size), "decoder")
        wr.u32(latents.crc, "symbol_crc")
        wr.raw(blocks)
        return wr.getvalue()

    def _header(self, r: ByteReader) -> tuple[int, int, int, str, int]:
        w, h = r.varint("width", limit=MAX_SIDE), r.varint("height", limit=MAX_SIDE)
        if not (0 < w and 0 < h and w * h <= 1 << 27):
            raise BitstreamError(f"corrupt EVC payload: size {w}x{h} out of range")
        q_index = r.u16("q_index")
        if q_index == 0:
            raise BitstreamError("corrupt EVC payload: q_index 0")
        d = r.u8("decoder")
        if d >= len(SIZES):
            raise BitstreamError(f"corrupt EVC payload: unknown decoder size {d}")
        return w, h, q_index, SIZES[d], r.u32("symbol_crc")

    @torch.no_grad()
    def decode(self, payload: bytes, device: torch.device | None = None) -> np.ndarray:
        device = device or torch.device("cpu")
        r = ByteReader(payload, "EVC payload")
        w, h, q_index, dec_size, crc = self._header(r)
        model = load_size(dec_size, self.weights_dir)
        _, z_tables = load_entropy(self.weights_dir)
        n = model.cfg.n
        shape = (n, -(-h // 64) * 4, -(-w // 64) * 4)
        prior, gauss = int_prior(self.weights_dir, device), load_gauss(self.weights_dir)
        latents = coding.decode(r, shape, prior, z_tables, gauss, crc=crc)
        r.expect_end()
        return self.synthesize(model, latents, q_index, h, w, device)

    def synthesize(self, model, latents: coding.Latents, q_index: int, h: int, w: int,
                   device: torch.device) -> np.ndarray:
        model = model.to(device)
        q = model.entropy.q_enc(torch.tensor([q_index / 100.0], device=device))
        x = model.dec(latents.y_hat().to(device) * q)[0, :, :h, :w]
        return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def describe(self, payload: bytes) -> dict:
        r = ByteReader(payload, "EVC payload")
        w, h, q_index, dec_size, crc = self._header(r)
        sizes = [len(r.blob(name)) for name in ("z block", "step-1 block", "step-2 block")]
        r.expect_end()
        return {"q_scale": q_index / 100, "decoder": dec_size, "latent": [-(-h // 64) * 4, -(-w // 64) * 4],
                "z_bytes": sizes[0], "step1_bytes": sizes[1], "step2_bytes": sizes[2], "symbol_crc": f"{crc:08x}"}

    def train(self, out_dir: str, steps: int | None = None, lambdas=None, device: str = "cpu",
              progress: bool = True, init: str | None = None) -> dict:
        from .train import train_recipe
        return train_recipe(out_dir, steps=steps, lambdas=lambdas, device=device, progress=progress, init=init)


codec = EVCCodec("LL")
codec_mm = EVCCodec("MM")
codec_ss = EVCCodec("SS")
