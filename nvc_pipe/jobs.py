"""Segment jobs: one access unit's encode as a pure function of a job description.

    SegmentJob (frames, video info, codec name + config, intra spec, device, budget) ──encode_segment──▶
        SegmentResult (access-unit bytes, report with the quality measured on the decoded AU, corrected config)

A job holds everything its encode depends on and nothing else: no open file, no progress bar, no driver state,
so it can run in this process (`executors.LocalExecutor`) or in a Ray worker on another machine
(`executors.RayExecutor`) and give the same bytes for the same seed on the same kind of device. The encode driver
(`api.encode_file`) makes the jobs, runs them with an executor and assembles the stream (`container.py`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np
import torch

from .bitstream.spec import AccessUnit
from .checkpoint import Checkpoint
from .errors import BitstreamError, ConfigError
from .intra.frames import IntraSpec, encode_section, image_codec_for, merge, split_section
from .media.clip import Segment, VideoInfo
from .media.convert import yuv_planes
from .metrics import FramePair, frame_metrics, mean_of
from .pipeline import Work, run_stages
from .plugins import ImageCodec, VideoCodec, load_codec
from .precision import exact_math
from .rate import Clip

# Test-only fault hook (tests/test_distributed.py): when set to a path that does not exist yet, the first job to
# see it creates that file and ends its process on the spot (`os._exit`), as a worker killed mid-task would.
EXIT_ONCE_ENV = "NVC_TEST_EXIT_IN_JOB_ONCE"
MAX_CORRECTIONS = 3  # re-encodes of one segment at a corrected setting, whatever the plugin asks


@dataclass(frozen=True)
class SegmentJob:
    """Everything one segment's encode depends on.

    `config` is the video plugin's config for this clip (None: all-intra); `correct=True` lets the plugin re-encode
    at a corrected setting while the coded size misses `budget_bytes` (`VideoCodec.correct`, e.g. C3's λ; the
    plugin decides how many times, at most MAX_CORRECTIONS);
    `checkpoint` (local runs only: a directory this process can write) keeps finished training stages for
    `--resume`.
    """

    segment: Segment
    info: VideoInfo
    codec: str | None
    config: Any
    intra: IntraSpec | None
    device: str
    budget_bytes: int | None = None
    clip: Clip | None = None
    correct: bool = False
    progress: bool = False
    checkpoint: Checkpoint | None = None


class SegmentResult(NamedTuple):
    """One finished segment: its access-unit bytes, its report (with per-frame "quality") and the config the
    later segments must use (changed only by a rate correction)."""

    index: int
    au: bytes
    meta: dict
    config: Any


def encode_segment(job: SegmentJob, tick: Callable[[int], None] | None = None) -> SegmentResult:
    """Encode one segment into an access unit and measure what a decoder will render from it.

    `tick(n)` (optional, same process only) advances a progress bar by optimisation steps.
    """
    _fault_hook()
    seg, info = job.segment, job.info
    dev = torch.device(job.device)
    plugin = load_codec(job.codec) if job.codec is not None else None
    intra_codec = image_codec_for(job.intra, from_stream=False) if job.intra is not None else None
    cfg, ckpt = job.config, job.checkpoint
    correcting = job.correct and plugin is not None and hasattr(plugin, "correct")
    # encodes that a correction replaced and that finished before an interruption are not redone: their coded
    # sizes are all the corrections need, so they are replayed first
    replaced = ckpt.replaced_passes(seg.index) if ckpt is not None and correcting else []
    corrections = []
    for coded in replaced:
        fixed = plugin.correct(cfg, job.budget_bytes, coded, job.clip)
        if fixed is None:  # another plugin version: what is left of the record no longer applies
            replaced = replaced[: len(corrections)]
            break
        cfg = fixed[0]
        corrections.append(fixed[1])
    while True:
        payload, report = _encode_payload(job, plugin, cfg, intra_codec, dev, ckpt, tick)
        fixed = plugin.correct(cfg, job.budget_bytes, len(payload), job.clip) if correcting else None
        if fixed is None or len(corrections) >= MAX_CORRECTIONS:
            break
        replaced = [*replaced, len(payload)]
        if ckpt is not None:
            ckpt.save_replaced_passes(seg.index, replaced)
        cfg = fixed[0]
        corrections.append(fixed[1])
    au_bytes = AccessUnit(seg.index, seg.start, len(seg), payload).to_bytes()
    # Measure what the decoder will really produce: parse the AU bytes back and render them.
    decoder = Decoder(plugin, plugin.config_from_dict(plugin.config_to_dict(cfg)) if plugin else None, intra_codec)
    quality = FrameQuality(info)
    for k, frame in enumerate(render_access_unit(decoder, info.width, info.height, AccessUnit.from_bytes(au_bytes),
                                                 info.max_value, dev)):
        quality.add(frame, seg.rgb[k])
    meta = {"index": seg.index, "first_frame": seg.start, "frames": len(seg), "bytes": len(au_bytes),
            **({"budget_bytes": job.budget_bytes} if job.budget_bytes is not None else {}), **report}
    if corrections:
        meta["rate_correction"] = {"corrections": corrections, "replaced_bytes": replaced, "final_bytes": len(payload)}
    if correcting:  # what the corrections were computed from: a resumed encode replays them for the later segments
        meta["correct_from"] = {"budget_bytes": job.budget_bytes, "coded_bytes": replaced}
    meta["quality"] = quality.values()
    return SegmentResult(seg.index, au_bytes, meta, cfg)


def _fault_hook() -> None:
    marker = os.environ.get(EXIT_ONCE_ENV)
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os._exit(17)


def _encode_payload(job: SegmentJob, plugin: VideoCodec | None, cfg, intra_codec: ImageCodec | None,
                    dev: torch.device, ckpt: Checkpoint | None,
                    tick: Callable[[int], None] | None) -> tuple[bytes, dict]:
    """One access unit's payload: the intra section (if any), then the video plugin's payload for the rest."""
    seg, info, spec = job.segment, job.info, job.intra
    shrink = getattr(plugin, "shrink", None)
    if spec is None:
        work = run_stages(plugin.stages(cfg), Work(seg, info, cfg, dev, job.progress, budget_bytes=job.budget_bytes,
                                                   tick=tick), ckpt, shrink)
        return work.payload, work.report
    t0 = time.perf_counter()
    section, _decoded = encode_section(seg.rgb, spec, intra_codec, info.max_value, dev)
    report = {"intra_frames": len(spec.offsets(len(seg))), "intra_bytes": len(section),
              "time_s": {"intra": round(time.perf_counter() - t0, 3)}}
    rest = [k for k in range(len(seg)) if k not in set(spec.offsets(len(seg)))]
    if not rest:
        return section, report
    if plugin is None:
        raise ConfigError("all-intra encode left frames without an intra picture")  # unreachable: period 1
    sub = Segment(seg.rgb[rest], seg.pts[rest], seg.start, seg.index)
    work = run_stages(plugin.stages(cfg), Work(sub, info, cfg, dev, job.progress, tick=tick), ckpt, shrink)
    work.report.setdefault("time_s", {}).update(report.pop("time_s"))
    return section + work.payload, {**work.report, **report}


# ---- rendering an access unit (shared with the decoder in api.py) --------------------------------------------

class Decoder(NamedTuple):
    """What renders access units: the video plugin and its config (None for all-intra streams) and the intra codec."""

    codec: VideoCodec | None
    config: object
    intra: ImageCodec | None


def _integer(frame: torch.Tensor, max_value: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] → uint8 / uint16 samples (8-bit ones narrowed on the device: 4x less to copy)."""
    q = torch.round(frame.float().clamp(0, 1) * max_value).to(torch.uint8 if max_value == 255 else torch.int32)
    return q.cpu().numpy().astype(np.uint8 if max_value == 255 else np.uint16, copy=False)


def render_access_unit(dec: Decoder, width: int, height: int, au: AccessUnit, max_value: int,
                       device: torch.device) -> Iterator[np.ndarray]:
    """Integer RGB frames of one access unit: exactly what `nvc decode` outputs.

    Rendered under `exact_math` (TF32 off, deterministic cuDNN) whatever the process set before, so the quality
    an encode measures is what a decoder on the same kind of device gets (docs/reliability.md, "Devices").
    """
    with exact_math():
        yield from _render_access_unit(dec, width, height, au, max_value, device)


def _render_access_unit(dec: Decoder, width: int, height: int, au: AccessUnit, max_value: int,
                        device: torch.device) -> Iterator[np.ndarray]:
    if dec.intra is None:
        items, payload, n_video = [], au.payload, au.frame_count
    else:
        items, payload = split_section(au.payload, au.frame_count)
        n_video = au.frame_count - len(items)
    if n_video and dec.codec is None:
        raise BitstreamError("corrupt all-intra stream: an access unit has frames without an intra picture")
    video = (_integer(f, max_value) for f in dec.codec.decode_segment(payload, dec.config, n_video, height, width,
                                                                      device)) if n_video else iter(())
    if dec.intra is None:
        yield from video
        return
    if not n_video and payload:
        raise BitstreamError("corrupt access unit: trailing bytes after the intra frames")
    yield from merge(au.frame_count, items, dec.intra, video, width, height, max_value, device)


class FrameQuality:
    """Accumulates the encoder's per-frame quality metrics (`REPORTED`, from the registry `nvc_pipe.metrics.METRICS`,
    the names `nvc eval` uses too) of decoded frames against reference frames."""

    REPORTED = ("psnr_rgb", "psnr_yuv611", "ms_ssim")

    def __init__(self, info: VideoInfo) -> None:
        self.info = info
        self.per_frame: dict[str, list[float | None]] = {n: [] for n in self.REPORTED}

    def add(self, decoded: np.ndarray, reference: np.ndarray) -> None:
        info = self.info
        pair = FramePair(reference, decoded, yuv_planes(reference, info), yuv_planes(decoded, info),
                         info.max_value, (1 << info.bit_depth) - 1)
        for name, value in frame_metrics(pair, self.REPORTED).items():
            self.per_frame[name].append(value)

    def values(self) -> dict:
        return {n: list(v) for n, v in self.per_frame.items()}

    def extend(self, values: dict) -> None:
        for n in self.REPORTED:
            self.per_frame[n] += values[n]

    def summary(self) -> dict:
        means = {n: mean_of(v) for n, v in self.per_frame.items()}
        return {n: None if m is None else round(m, 4) for n, m in means.items()}

