"""C3 as an image codec (`nvc image encode/decode --codec c3`): one frame coded by exactly the video codec's
machinery (`codec.encode_frames` / `codec.decode_segment`), with the image preset of `presets.IMAGE_PRESET`.

    payload = width:varint  height:varint  config  segment payload (payload.py)
    config  = profile:u8  [fields, only for profile 0]
    fields  = C3Config's fields in declaration order: int → varint, float → f64 (little-endian), bool → u8 0/1,
              str → u8 index into its allowed values, tuple → count:varint then varints (about 27 bytes; the
              JSON of the video sequence header would cost ~290, 0.06 bpp on a 256×144 picture)

Profile 1 is the default image decoder (`PROFILES`), one byte instead of 27 (1.2 % of a 0.47 bpp picture).

Entry point: ``nvc_pipe.image_codecs: c3 = "nvc_c3.image:codec"``. Quality q selects λ from `QUALITY_LAMBDAS`;
`rd_lambda` / `steps` (the CLI's --lambda / --steps) override λ and the total step count.
"""

from __future__ import annotations

import struct
from dataclasses import fields

import numpy as np
import torch

from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError, ConfigError

from .codec import codec as video_codec
from .codec import encode_frames, integer_frame
from .model import CONTEXTS, UPSAMPLINGS, C3Config
from .presets import IMAGE_PRESET, Preset, with_lambda, with_steps

QUALITY_LAMBDAS = {1: 4e-3, 2: 1e-3, 3: 2.5e-4, 4: 1e-4}  # the λ points of benchmarks/c3_vs_anchor.py
MAX_SIDE = 1 << 16
CHOICES = {"context": CONTEXTS, "activation": ("gelu", "relu"), "upsampling": UPSAMPLINGS}
# Decoders named by one byte. Frozen: a file written with profile 1 decodes with this config for ever, so a change of
# the image preset's decoder gets a new profile number, never an edit here (tests check IMAGE_PRESET uses one).
PROFILES = {
    1: C3Config(num_grids=5, q_step=0.3, synthesis_widths=(16,), per_frame_conv=True, arm_widths=(12, 12),
                arm_per_grid=False, context="full", context_size=12, arm_residual=True, arm_linear=True,
                activation="relu", upsampling="learned", synthesis_linear=True, coarse_context=9, patch_frames=1,
                patch_height=0, patch_width=0),
}


def write_config(cfg: C3Config, w: ByteWriter) -> None:
    """A profile byte; the fields follow only when `cfg` is none of `PROFILES` (profile 0)."""
    profile = next((p for p, c in PROFILES.items() if c == cfg), 0)
    w.u8(profile, "config profile")
    if not profile:
        write_fields(cfg, w)


def write_fields(cfg: C3Config, w: ByteWriter) -> None:
    for f in fields(C3Config):
        v = getattr(cfg, f.name)
        if f.type == "bool":
            w.u8(int(v), f.name)
        elif f.type == "float":
            w.raw(struct.pack("<d", v))
        elif f.type == "str":
            w.u8(CHOICES[f.name].index(v), f.name)
        elif f.type.startswith("tuple"):
            w.varint(len(v), f.name)
            for x in v:
                w.varint(x, f.name)
        else:
            w.varint(v, f.name)


def read_config(r: ByteReader) -> C3Config:
    """Inverse of `write_config`; BitstreamError for anything out of range (C3Config's own checks included)."""
    profile = r.u8("config profile")
    if profile in PROFILES:
        return PROFILES[profile]
    if profile:
        raise BitstreamError(f"corrupt C3 image: unknown decoder profile {profile} (this decoder knows 0, "
                             f"{', '.join(map(str, PROFILES))}; files of nvc-pipe before C3 payload v5 are not read)")
    d: dict = {}
    for f in fields(C3Config):
        if f.type == "bool":
            v = r.u8(f.name)
            if v > 1:
                raise BitstreamError(f"corrupt C3 image: {f.name} = {v}")
            d[f.name] = bool(v)
        elif f.type == "float":
            d[f.name] = struct.unpack("<d", r.take(8, f.name))[0]
        elif f.type == "str":
            i = r.u8(f.name)
            if i >= len(CHOICES[f.name]):
                raise BitstreamError(f"corrupt C3 image: {f.name} index {i}")
            d[f.name] = CHOICES[f.name][i]
        elif f.type.startswith("tuple"):
            n = r.varint(f.name, limit=64)
            d[f.name] = [r.varint(f.name, limit=1 << 16) for _ in range(n)]
        else:
            d[f.name] = r.varint(f.name, limit=1 << 16)
    return video_codec.config_from_dict(d)


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
        out = ByteWriter()
        out.varint(w, "width")
        out.varint(h, "height")
        write_config(preset.model, out)
        return out.getvalue() + segment

    def _parse(self, payload: bytes) -> tuple[int, int, C3Config, bytes]:
        r = ByteReader(payload, "C3 image payload")
        w, h = r.varint("width", limit=MAX_SIDE), r.varint("height", limit=MAX_SIDE)
        if not (w and h):
            raise BitstreamError("corrupt C3 image: zero size")
        cfg = read_config(r)
        return w, h, cfg, r.take(r.remaining, "segment payload")

    def decode(self, payload: bytes, device: torch.device) -> np.ndarray:
        w, h, cfg, segment = self._parse(payload)
        frames = list(video_codec.decode_segment(segment, cfg, 1, h, w, device))
        return integer_frame(frames[0], 255)

    def describe(self, payload: bytes) -> dict:
        w, h, cfg, segment = self._parse(payload)
        return {"config": cfg.to_dict(), **video_codec.describe(segment, cfg, 1, h, w)}


codec = C3ImageCodec()
