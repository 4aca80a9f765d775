"""C3 as an nvc-pipe video codec plugin: the encode stages of a segment, segment decoding, and `nvc info` facts.

    segment ─▶ patch (shared: frames on the device) ─▶ overfit (C3 patches, each its own model: stage 1 + stage 2)
            ─▶ quantize (symbols, power-of-two weight steps, integer-ARM coder parameters)
            ─▶ entropy (tensor records + one range-coded latent block + per-patch latent CRCs) ─▶ AU payload
    AU payload ─▶ records ─▶ integer ARM + wavefront latent decoding (CRC-checked) ─▶ synthesis ─▶ frames

`fit_segment` / `quantize_segment` / `encode_frames` do the same on a bare frame tensor (the image codec, image.py,
codes a picture as a one-frame segment with them). The sequence header carries `C3Config` (architecture, q_step,
patch size); a segment is split into patches by `model.patch_boxes`, so a decoder needs nothing else. The shared
prune/QAT stages do not apply (C3 has neither) and the shared quantize/entropy stages code one network with fixed
6-bit steps; C3 reuses their tensor records and categorical coder but needs power-of-two steps and a latent block,
hence its own two stages.
"""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from functools import partial
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from nvc_pipe import entropy
from nvc_pipe.errors import BitstreamError
from nvc_pipe.checkpoint_step import open_step_checkpoint
from nvc_pipe.metrics import frame_psnr
from nvc_pipe.pipeline import Stage, Work
from nvc_pipe.stages import patch

from . import arm
from .model import C3Config, PatchModel, grid_shapes, macs_per_pixel, patch_boxes
from .netquant import PatchCode, load_network, quantize_patch, render_patch
from .payload import decode_patch_latents, read_payload, write_payload
from .presets import DEFAULT_PRESET, PRESETS, Preset, total_steps
from .steps import Steps
from .train import train_segment

Box = tuple[int, int, int, int, int, int]


class SegmentModel(nn.Module):
    """The patch models of one segment, their boxes, and (after the quantize stage) their codes."""

    def __init__(self, patches: list[PatchModel], boxes: list[Box]):
        super().__init__()
        self.patches = nn.ModuleList(patches)
        self.boxes = boxes
        self.codes: list[PatchCode] = []


def _target(frames: torch.Tensor, max_value: int, box: Box) -> torch.Tensor:
    t0, y0, x0, pt, ph, pw = box
    return frames[t0 : t0 + pt, y0 : y0 + ph, x0 : x0 + pw].float() / max_value


def assemble_frames(boxes: list[Box], height: int, width: int, render: Callable[[int, Box], torch.Tensor],
                    device: torch.device | str) -> Iterator[torch.Tensor]:
    """Frames (H, W, 3) in order from per-patch renders, one temporal chunk of patches in memory at a time."""
    i = 0
    while i < len(boxes):
        t0, pt = boxes[i][0], boxes[i][3]
        chunk = torch.zeros(pt, height, width, 3, device=device)
        while i < len(boxes) and boxes[i][0] == t0:
            _, y0, x0, _, ph, pw = boxes[i]
            chunk[:, y0 : y0 + ph, x0 : x0 + pw] = render(i, boxes[i])
            i += 1
        yield from chunk


def integer_frame(frame: torch.Tensor, max_value: int) -> np.ndarray:
    """A decoded frame as the integers a sink writes (round(x · max) as u8 or u16, like nvc_pipe.api)."""
    q = torch.round(frame.float().clamp(0, 1) * max_value).to(torch.int32).cpu().numpy()
    return q.astype(np.uint8 if max_value == 255 else np.uint16)


def latents_sha256(grids: list[torch.Tensor]) -> str:
    """Digest of a patch's integer latents (raster order per grid, little-endian int16): reports and tests."""
    return hashlib.sha256(b"".join(g.to(torch.int16).cpu().numpy().astype("<i2").tobytes() for g in grids)).hexdigest()


def fit_segment(frames: torch.Tensor, max_value: int, preset: Preset, progress: bool = False,
                label: str = "seg 0", ck: Steps | None = None) -> tuple[SegmentModel, dict]:
    """Train every patch of `frames` (T, H, W, 3) integer samples on their device: the models and a summary.
    `ck`: the segment's step checkpoint (saved while training; a saved one is gone on from)."""
    boxes = patch_boxes(preset.model, *frames.shape[:3])
    models, summary = train_segment(preset.model, boxes, lambda i: _target(frames, max_value, boxes[i]), preset,
                                    progress, label, ck)
    return SegmentModel(models, boxes), {"patches": summary}


def step_shape(preset: Preset, boxes: list[Box]) -> dict:
    """What a step checkpoint of a segment's training must match: the patches, the schedule and λ (a
    rate-corrected second encode has another λ, so it never picks up the first encode's checkpoint)."""
    return {"boxes": [list(b) for b in boxes], "steps": total_steps(preset), "stage1": preset.train.epochs,
            "stage2": preset.c3.stage2_steps, "warmup": [preset.c3.warmup_candidates, preset.c3.warmup_steps],
            "rd_lambda": preset.c3.rd_lambda, "seed": preset.train.seed}


def quantize_segment(seg: SegmentModel, frames: torch.Tensor, max_value: int, preset: Preset) -> None:
    """Quantize every patch (sets `seg.codes`)."""
    seg.codes = [quantize_patch(m, _target(frames, max_value, box), preset) for m, box in zip(seg.patches, seg.boxes)]


def encode_frames(frames: torch.Tensor, max_value: int, preset: Preset, progress: bool = False,
                  label: str = "seg 0") -> tuple[bytes, dict]:
    """The whole C3 encode of one segment (or one image, T = 1): payload and report (`decode_segment` reads it)."""
    seg, report = fit_segment(frames, max_value, preset, progress, label)
    quantize_segment(seg, frames, max_value, preset)
    payload, stats = write_payload(seg.codes, [m.windows for m in seg.patches])
    report.update(stats)
    report["macs_per_pixel"] = round(macs_per_pixel(preset.model, seg.boxes), 1)
    return payload, report


def _overfit(work: Work) -> Work:
    frames = work.data.frames
    saver = open_step_checkpoint(work.checkpoint, work.segment.index, "c3",
                                 step_shape(work.config, patch_boxes(work.config.model, *frames.shape[:3])))
    work.model, work.report["c3"] = fit_segment(frames, work.data.max_value, work.config, work.progress,
                                                f"seg {work.segment.index}", Steps(saver) if saver else None)
    return work


def _quantize(work: Work) -> Work:
    seg: SegmentModel = work.model
    quantize_segment(seg, work.data.frames, work.data.max_value, work.config)
    work.records = [dataclasses.replace(r, name=f"patch{i}.{r.name}") for i, c in enumerate(seg.codes)
                    for r in c.records]
    for entry, code in zip(work.report["c3"]["patches"], seg.codes):
        entry["weight_steps"] = {n: [e, dz] for n, (e, dz) in code.steps.items()}
        if code.latent_search is not None:
            entry["latent_search"] = code.latent_search
    return work


def _entropy(work: Work) -> Work:
    seg: SegmentModel = work.model
    cfg: C3Config = work.config.model
    payload, stats = write_payload(seg.codes, [m.windows for m in seg.patches])
    work.payload = payload
    data = work.data

    def render(i: int, box: Box) -> torch.Tensor:  # the decoder's path, from the records and integer symbols
        model = load_network(PatchModel(cfg, box[3:], seg.patches[i].windows).to(work.device),
                             {r.name: r for r in seg.codes[i].records})
        return render_patch(model, seg.codes[i].grids)

    crc, psnrs = 0, []
    source = work.segment.rgb
    for k, frame in enumerate(assemble_frames(seg.boxes, data.height, data.width, render, work.device)):
        q = integer_frame(frame, data.max_value)
        crc = zlib.crc32(q.astype(q.dtype.newbyteorder("<")).tobytes(), crc)
        psnrs.append(frame_psnr(q, source[k], data.max_value))
    pixels = data.num_frames * data.height * data.width
    est = stats["latent_estimate_bits"]
    work.report["c3"].update(stats)
    work.report["c3"].update({
        "latent_overhead_pct": round(100 * (stats["latent_coded_bits"] - est) / max(est, 1e-9), 3),
        "bpp_payload": round(8 * len(payload) / pixels, 6),
        "latent_crc32": [c.crc for c in seg.codes],
        "latents_sha256": [latents_sha256(c.grids) for c in seg.codes],
        "frames_crc32": crc,
        "psnr_rgb": round(sum(psnrs) / len(psnrs), 4),  # per-frame PSNR averaged, as nvc_pipe.api reports
        "macs_per_pixel": round(macs_per_pixel(cfg, seg.boxes), 1),
    })
    return work


class C3Codec:
    name = "c3"
    payload_version = 5  # 4: config key coarse_context (grids coarse → fine); 5: u8 weight-scale codes
    presets = PRESETS
    default_preset = DEFAULT_PRESET

    def config_to_dict(self, preset: Preset) -> dict:
        return preset.model.to_dict()

    def config_from_dict(self, d: dict) -> C3Config:
        try:
            return C3Config.from_dict(d)
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise BitstreamError(f"corrupt sequence header: bad C3 config ({exc})") from None

    def stages(self, preset: Preset) -> list[Stage]:
        return [
            Stage("frames", partial(patch.run, multiple=1)),
            Stage("overfit", _overfit),
            Stage("quantize", _quantize),
            Stage("entropy", _entropy),
        ]

    def decode_segment(self, payload: bytes, config: C3Config, num_frames: int, height: int, width: int,
                       device: torch.device | str) -> Iterator[torch.Tensor]:
        boxes = patch_boxes(config, num_frames, height, width)
        networks, crcs, latents = read_payload(payload, config, boxes)
        stream = entropy.LaplaceDecoder(latents, -arm.SYMBOL_MAX, arm.SYMBOL_MAX)

        def render(i: int, box: Box) -> torch.Tensor:
            grids = decode_patch_latents(config, networks[i], box[3:], crcs[i], stream, i)
            model = load_network(PatchModel(config, box[3:], networks[i].windows).to(device), networks[i].records)
            return render_patch(model, grids)

        yield from assemble_frames(boxes, height, width, render, device)

    def describe(self, payload: bytes, config: C3Config, num_frames: int, height: int, width: int) -> dict:
        boxes = patch_boxes(config, num_frames, height, width)
        networks, _, latents = read_payload(payload, config, boxes)
        params = sum(int(np.prod(r.shape)) for n in networks for r in n.records.values())
        n_latents = sum(int(np.prod(s)) for b in boxes for s in grid_shapes(b[3:], config.num_grids))
        return {"patches": len(boxes), "patch_boxes": [list(b) for b in boxes], "network_parameters": params,
                "latents": n_latents, "latent_bytes": len(latents), "other_bytes": len(payload) - len(latents),
                "learned_windows": [n.windows for n in networks] if config.context == "learned" else None,
                "macs_per_pixel": round(macs_per_pixel(config, boxes), 1)}

    # rate control and planning: plugins/nvc_c3/ratecontrol.py
    def configure(self, preset, target, overrides, clip) -> Preset:
        from . import ratecontrol

        return ratecontrol.configure(preset, target, overrides, clip)

    def plan(self, preset: Preset, clip) -> dict:
        from . import ratecontrol

        return ratecontrol.plan(preset, clip)

    def correct(self, preset: Preset, budget_bytes: int, coded_bytes: int, clip):
        from . import ratecontrol

        return ratecontrol.correct(preset, budget_bytes, coded_bytes, clip)

    def settings(self, preset: Preset) -> dict:
        from . import ratecontrol

        return ratecontrol.settings(preset)

    def preset_summary(self, name: str) -> str:
        from . import ratecontrol

        return ratecontrol.preset_summary(name)


codec = C3Codec()
