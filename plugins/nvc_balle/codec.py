"""Ballé 2017 as an nvc-pipe image codec plugin (`nvc_pipe.image_codecs: balle`).

    encode: RGB uint8 → [0, 1] → replicate-pad to ×16 → g_a → q = round(y − offset) → table coding
    decode: table decoding → ŷ = q + offset → g_s → crop → clamp → round → RGB uint8

Payload (docs/bitstream.md §9.3): version:u8 (=1)  quality:u8  width:varint  height:varint  latents. The latents
(C, ⌈H/16⌉, ⌈W/16⌉) use the integer tables shipped in `weights/q{quality}.npz`, so entropy decoding is bit-exact
on any device; g_s runs in float32 (the reconstruction may differ across devices by rounding, the symbols never).
Models load lazily, once per quality.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError, ConfigError, InputError
from nvc_pipe.intra.factorized import EntropyTables, decode_latents, encode_latents
from nvc_pipe.intra.image import check_size
from nvc_pipe.intra.weights import load_model_arrays

from .model import STRIDE, BalleConfig, BalleModel, pad16

PAYLOAD_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class BalleCodec:
    name = "balle"
    payload_version = PAYLOAD_VERSION
    qualities = (1, 2, 3, 4)
    default_quality = 3

    def __init__(self, weights_dir: Path = WEIGHTS_DIR) -> None:
        self.weights_dir = Path(weights_dir)
        self._models: dict[int, tuple[BalleModel, EntropyTables, dict]] = {}

    def model(self, quality: int) -> tuple[BalleModel, EntropyTables, dict]:
        """(network in eval mode on the CPU, entropy tables, config) of a quality level."""
        if quality not in self.qualities:
            raise ConfigError(f"quality {quality} not available for balle (choose from 1, 2, 3, 4)")
        if quality not in self._models:
            path = self.weights_dir / f"q{quality}.npz"
            if not path.is_file():
                raise ConfigError(f"Ballé weights {path} are missing (run 'nvc train-intra balle')")
            config, state, arrays = load_model_arrays(path)
            try:
                model = BalleModel(BalleConfig.from_dict(config["model"]))
                model.load_state_dict(state)
                tables = EntropyTables.from_arrays(arrays)
            except (KeyError, ValueError, RuntimeError) as exc:
                raise ConfigError(f"Ballé weights {path} are malformed: {str(exc).splitlines()[0]}") from None
            self._models[quality] = (model.eval(), tables, config)
        return self._models[quality]

    @torch.no_grad()
    def analyse(self, rgb: np.ndarray, quality: int) -> np.ndarray:
        """Integer latents q = round(g_a(x) − offset), (C, ⌈H/16⌉, ⌈W/16⌉) int64."""
        model, tables, _ = self.model(quality)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
        y = model.analysis(pad16(x))[0].numpy()
        return np.rint(y - tables.offsets.astype(np.float32)[:, None, None]).astype(np.int64)

    @torch.no_grad()
    def synthesise(self, q: np.ndarray, quality: int, height: int, width: int,
                   device: torch.device | None = None) -> np.ndarray:
        """RGB uint8 (height, width, 3) from integer latents."""
        model, tables, _ = self.model(quality)
        device = device or torch.device("cpu")
        y_hat = torch.from_numpy(tables.dequantize(q))[None].to(device)
        x_hat = model.to(device).synthesis(y_hat)[0, :, :height, :width]
        model.cpu()
        return (x_hat.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError("balle encodes (H, W, 3) uint8 RGB images")
        h, w = rgb.shape[:2]
        q = self.analyse(rgb, quality)
        _, tables, _ = self.model(quality)
        out = ByteWriter()
        out.u8(PAYLOAD_VERSION, "payload version")
        out.u8(quality, "quality")
        out.varint(w, "width")
        out.varint(h, "height")
        encode_latents(q, tables, out)
        return out.getvalue()

    def _header(self, r: ByteReader) -> tuple[int, int, int]:
        version = r.u8("payload version")
        if version != PAYLOAD_VERSION:
            raise BitstreamError(f"unsupported balle payload version {version}")
        quality = r.u8("quality")
        if quality not in self.qualities:
            raise BitstreamError(f"corrupt balle payload: quality {quality}")
        w, h = r.varint("width", limit=1 << 16), r.varint("height", limit=1 << 16)
        check_size(w, h)
        return quality, w, h

    def decode(self, payload: bytes, device: torch.device) -> np.ndarray:
        r = ByteReader(payload, "balle payload")
        quality, w, h = self._header(r)
        _, tables, _ = self.model(quality)
        q = decode_latents(r, tables, (tables.channels, math.ceil(h / STRIDE), math.ceil(w / STRIDE)))
        return self.synthesise(q, quality, h, w, device)

    def describe(self, payload: bytes) -> dict:
        r = ByteReader(payload, "balle payload")
        quality, w, h = self._header(r)
        _, tables, config = self.model(quality)
        return {"model": "Ballé 2017 factorized prior", "channels": tables.channels, "lambda": config.get("lambda"),
                "latent_shape": [tables.channels, math.ceil(h / STRIDE), math.ceil(w / STRIDE)],
                "latent_bytes": r.remaining}

    def train(self, out_dir: str, steps: int | None = None, lambdas: tuple[float, ...] | None = None,
              device: str = "auto", progress: bool = True, init: str | None = None) -> dict:
        """`nvc train-intra balle`: the recipe of `train.py` (one model per quality)."""
        from .train import DEFAULT_STEPS, LAMBDAS, train_all

        if lambdas is not None and len(lambdas) != len(self.qualities):
            raise ConfigError(f"balle needs {len(self.qualities)} λ values (one per quality), got {len(lambdas)}")
        if steps is not None and steps < 10:
            raise ConfigError("balle training needs at least 10 steps")
        return train_all(out_dir, steps or DEFAULT_STEPS, tuple(lambdas) if lambdas else LAMBDAS, device,
                         progress=progress, init=init)


codec = BalleCodec()
