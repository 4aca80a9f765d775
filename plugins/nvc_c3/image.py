"""C3 as an image codec (`nvc image encode/decode --codec c3`): one frame coded by exactly the video codec's
machinery (`codec.encode_frames` / `codec.decode_segment`), with the image preset of `presets.IMAGE_PRESET`.

    payload = width:varint  height:varint  config_len:varint  config:JSON (C3Config)  segment payload (payload.py)

Entry point: ``nvc_pipe.image_codecs: c3 = "nvc_c3.image:codec"``. Quality q selects λ from `QUALITY_LAMBDAS`;
`rd_lambda` / `steps` (the CLI's --lambda / --steps) override λ and the total step count.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError, ConfigError

from .codec import codec as video_codec
from .codec import encode_frames, integer_frame
from .model import C3Config
from .presets import IMAGE_PRESET, Preset, with_lambda, with_steps

QUALITY_LAMBDAS = {1: 4e-3, 2: 1e-3, 3: 2.5e-4, 4: 1e-4}  # the λ points of benchmarks/c3_vs_anchor.py
MAX_CONFIG_BYTES = 4096
MAX_SIDE = 1 << 16


def image_preset(quality: int, rd_lambda: float | None = None, steps: int | None = None) -> Preset:
    preset = with_lambda(IMAGE_PRESET, QUALITY_LAMBDAS[quality] if rd_lambda is None else rd_lambda)
    return with_steps(preset, steps) if steps is not None else preset


class C3ImageCodec:
    name = "c3"
    qualities = tuple(QUALITY_LAMBDAS)
    default_quality = 2

    def encode(self, rgb: np.ndarray, quality: int, rd_lambda: float | None = None, steps: int | None = None,
               progress: bool = False, preset: Preset | None = None) -> bytes:
        """`preset` (benchmarks, ablations) replaces the image preset and the λ/steps it would get."""
        if quality not in QUALITY_LAMBDAS:
            raise ConfigError(f"c3 quality must be one of {', '.join(map(str, self.qualities))}")
        if steps is not None and steps < 2:
            raise ConfigError("c3 needs --steps ≥ 2")
        preset = preset or image_preset(quality, rd_lambda, steps)
        h, w = rgb.shape[:2]
        frames = torch.from_numpy(np.ascontiguousarray(rgb))[None].to(torch.int32)
        segment, _ = encode_frames(frames, 255, preset, progress, "image")
        config = json.dumps(preset.model.to_dict(), separators=(",", ":")).encode()
        out = ByteWriter()
        out.varint(w, "width")
        out.varint(h, "height")
        out.varint(len(config), "config length")
        return out.getvalue() + config + segment

    def _parse(self, payload: bytes) -> tuple[int, int, C3Config, bytes]:
        r = ByteReader(payload, "C3 image payload")
        w, h = r.varint("width", limit=MAX_SIDE), r.varint("height", limit=MAX_SIDE)
        if not (w and h):
            raise BitstreamError("corrupt C3 image: zero size")
        n = r.varint("config length", limit=MAX_CONFIG_BYTES)
        raw = r.take(n, "config")
        try:
            d = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BitstreamError("corrupt C3 image: config is not JSON") from None
        cfg = video_codec.config_from_dict(d)
        return w, h, cfg, r.take(r.remaining, "segment payload")

    def decode(self, payload: bytes, device: torch.device) -> np.ndarray:
        w, h, cfg, segment = self._parse(payload)
        frames = list(video_codec.decode_segment(segment, cfg, 1, h, w, device))
        return integer_frame(frames[0], 255)

    def describe(self, payload: bytes) -> dict:
        w, h, cfg, segment = self._parse(payload)
        return {"config": cfg.to_dict(), **video_codec.describe(segment, cfg, 1, h, w)}


codec = C3ImageCodec()
