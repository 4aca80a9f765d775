"""Overfitting stage: train a video INR on one segment (HiNeRV recipe, §2 of the reference notes).

Loss 0.7·L1 + 0.3·(1 − MS-SSIM, 5×5 window); Adam (β 0.9/0.999, ε 1e-8, no weight decay), gradient clipping at
L2 norm 1.0, per-step linear warm-up then cosine decay (timm's CosineLRScheduler semantics: the warm-up is not a
prefix, the cosine spans all epochs). Every epoch visits each (frame, patch) once in a random order (a
`torch.Generator` seeded from the config, so CPU runs are repeatable).

`fit` is shared with the prune and QAT stages, which pass their own schedule, forward and post-step hooks.
On CUDA: bf16 autocast, the loss in fp32; TF32 while `fit` runs (`nvc_pipe.precision.training_math`, restored
after). `TrainConfig.compile` puts the training step's forward and loss under `torch.compile` (static shapes:
every step has the same batch, so one forward graph per stage, shared by overfit and prune, and one loss graph; a
shape change such as the OOM fallback's smaller batch compiles once more); the evaluation inside `fit` runs eager,
so no second, frame-mode graph is built. If the compiled first step of a stage fails for any reason but memory,
the stage trains eager (with a warning in the report).
"""

from __future__ import annotations

import logging
import math
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from ..checkpoint_step import Position, open_step_checkpoint
from ..errors import ConfigError
from ..metrics import frame_psnr, ms_ssim
from ..pipeline import Work
from ..precision import training_math
from .patch import RENDER_TILE_PIXELS, PatchData, render_frames, render_tile

log = logging.getLogger(__name__)
Forward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor | None, tuple[int, int] | None], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Training recipe of one preset. Defaults are HiNeRV's (hinerv.md §2-3)."""

    epochs: int = 300  # main stage
    warmup_epochs: int = 30
    lr: float = 2e-3
    warmup_lr: float = 2e-5
    min_lr: float = 2e-5
    batch_size: int = 144  # patches per step
    patch_size: tuple[int, int] | None = (80, 80)  # None: whole frames
    grad_clip: float = 1.0
    l1_weight: float = 0.7  # the rest is 1 − MS-SSIM
    ssim_window: int = 5
    prune_ratio: float = 0.15  # of all parameters
    prune_epochs: int = 60
    qat_epochs: int = 30
    qat_lr_scale: float = 0.1
    quant_noise: float = 0.9
    bits: int = 6
    eval_every: int = 30  # epochs; 0 = only at the end of each stage
    seed: int = 0
    compile: str = "off"  # torch.compile the training forward + loss: "off", "cuda" (CUDA devices only), "on"


def cosine_lr(step: int, total: int, warmup: int, lr: float, warmup_lr: float, min_lr: float) -> float:
    """timm CosineLRScheduler (warmup_prefix=False), stepped per update."""
    if step < warmup:
        return warmup_lr + step * (lr - warmup_lr) / warmup
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


COMPILE_MODES = ("off", "cuda", "on")
COMPILE_BACKEND = "inductor"  # torch.compile's backend (tests swap in a counting one)


def wants_compile(cfg: TrainConfig, device: torch.device) -> bool:
    if cfg.compile not in COMPILE_MODES:
        raise ConfigError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {cfg.compile!r}")
    return cfg.compile == "on" or (cfg.compile == "cuda" and device.type == "cuda")


def compiled(model: torch.nn.Module, forward: "Forward") -> "Forward":
    """`forward` under torch.compile with static shapes (the default forward compiles the module itself)."""
    if forward is default_forward:
        module = torch.compile(model, dynamic=False, backend=COMPILE_BACKEND)
        return lambda _m, t, yx, size: module(t, yx, size)
    return torch.compile(forward, dynamic=False, backend=COMPILE_BACKEND)


def default_forward(model: torch.nn.Module, t, yx, size) -> torch.Tensor:
    return model(t, yx, size)


def loss_fn(pred: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    pred = pred.float()
    l1 = (pred - target).abs().mean()
    if min(pred.shape[1:3]) < cfg.ssim_window:  # patches smaller than the SSIM window (a 3x5 video): L1 only
        return l1
    ssim = ms_ssim(pred, target, window=cfg.ssim_window).mean()
    return cfg.l1_weight * l1 + (1 - cfg.l1_weight) * (1 - ssim)


def _autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: PatchData, forward: Forward = default_forward,
             chunk: int = 4) -> dict:
    """Frame-mode quality of the current model over the segment (float output, cropped to the source size)."""
    model.eval()
    psnrs, ssims = [], []
    big = data.coded_size[0] * data.coded_size[1] > RENDER_TILE_PIXELS
    chunk = 1 if big else chunk  # large frames: one at a time, rendered by tiles (bounded memory)
    for start in range(0, data.num_frames, chunk):
        t = torch.arange(start, min(start + chunk, data.num_frames), device=data.frames.device)
        with _autocast(data.frames.device):
            pred = render_frames(forward, model, t, data.coded_size, render_tile(data.multiple))
            pred = pred.float().clamp(0, 1)[:, : data.height, : data.width]
        target = data.frame_targets(t)[:, : data.height, : data.width]
        for p, g in zip(pred, target):
            psnrs.append(frame_psnr(p.cpu().numpy(), g.cpu().numpy(), 1.0))
        if min(data.height, data.width) >= 11:
            ssims.extend(ms_ssim(pred, target).tolist())
    model.train()
    return {"psnr_db": sum(psnrs) / len(psnrs), "ms_ssim": sum(ssims) / len(ssims) if ssims else float("nan")}


def fit(work: Work, *, stage: str, epochs: int, lr_at: Callable[[int, int], float], forward: Forward = default_forward,
        after_step: Callable[[], None] | None = None,
        penalty: Callable[[], torch.Tensor] | None = None) -> list[dict]:
    """Train `work.model` on `work.data` for `epochs`; `lr_at(step, steps_per_epoch)` gives each step's lr.

    `forward` is used eager for evaluation, and compiled for training steps when `TrainConfig.compile` says so.
    `penalty()`, called after each training forward, is added to the loss (HiNeRV's rate term).
    """
    if epochs <= 0:
        return []
    with training_math():
        return _fit(work, stage, epochs, lr_at, forward, after_step, penalty)


def _fit(work: Work, stage: str, epochs: int, lr_at: Callable[[int, int], float], forward: Forward,
         after_step: Callable[[], None] | None, penalty: Callable[[], torch.Tensor] | None) -> list[dict]:
    cfg: TrainConfig = work.config.train
    model, data, device = work.model, work.data, work.device
    # Each stage reseeds everything it draws from (patch order, Quant-Noise masks) from the config, so a run
    # resumed at a stage boundary matches an uninterrupted one. zlib.crc32, not hash(): hash is salted.
    stage_seed = cfg.seed + zlib.crc32(stage.encode())
    gen = torch.Generator().manual_seed(stage_seed)
    torch.manual_seed(stage_seed)
    n_patches = data.origins.shape[0]
    batch = min(cfg.batch_size, n_patches)
    steps_per_epoch = max(1, n_patches // batch)  # full batches only: every step has the same shapes
    whole_frames = data.patch == data.coded_size
    train_forward, train_loss = forward, loss_fn
    if wants_compile(cfg, device):  # the loss too: eager, its MS-SSIM is ~550 small aten ops per step (fwd + bwd)
        train_forward = compiled(model, forward)
        train_loss = torch.compile(loss_fn, dynamic=False, backend=COMPILE_BACKEND)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr_at(0, steps_per_epoch), betas=(0.9, 0.999), eps=1e-8,
                           **({"fused": True} if device.type == "cuda" else {}))

    def train_step(fwd: Forward, loss_of: Callable, origins: torch.Tensor) -> torch.Tensor:
        target = data.targets(origins)
        with _autocast(device):
            if whole_frames:
                pred = fwd(model, origins[:, 0], None, None)
            else:
                pred = fwd(model, origins[:, 0], origins[:, 1:], data.patch)
        loss = loss_of(pred, target, cfg)
        if penalty is not None:
            loss = loss + penalty()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    # Step checkpoints (--checkpoint-every, SIGINT/SIGTERM; nvc_pipe/checkpoint_step.py): `at` is where a
    # resumed stage goes on, None for a fresh start.
    saver = open_step_checkpoint(work.checkpoint, work.segment.index, stage,
                                 {"epochs": epochs, "steps_per_epoch": steps_per_epoch, "batch": batch,
                                  "patches": n_patches})
    at = saver.resume(model, opt, gen, device) if saver is not None else None
    history = at.history if at else []
    model.train()
    first_epoch = at.epoch if at else 0
    bar = tqdm(range(first_epoch, epochs), desc=f"seg {work.segment.index} {stage}", unit="ep",
               disable=not work.progress, leave=False, dynamic_ncols=True, initial=first_epoch, total=epochs)
    step = at.step if at else 0
    with saver.deferred_signals() if saver is not None else nullcontext():
        for epoch in bar:
            if at is not None and epoch == at.epoch:
                order, first, loss_sum = at.order, at.index, at.loss_sum
            else:
                order = torch.randperm(n_patches, generator=gen)[: steps_per_epoch * batch].to(device)
                first, loss_sum = 0, torch.zeros((), device=device)
            for i in range(first, steps_per_epoch):
                origins = data.origins[order[i * batch : (i + 1) * batch]]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, steps_per_epoch)
                try:
                    loss = train_step(train_forward, train_loss, origins)
                except Exception as exc:  # only the compiled first step falls back; OOM goes to the pipeline
                    if step or train_loss is loss_fn or isinstance(exc, torch.cuda.OutOfMemoryError):
                        raise
                    note = f"{stage}: torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); trained eager"
                    work.report.setdefault("warnings", []).append(note)
                    log.warning("%s", note)
                    train_forward, train_loss = forward, loss_fn
                    loss = train_step(train_forward, train_loss, origins)
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                if after_step is not None:
                    after_step()
                loss_sum += loss.detach()
                step += 1
                if work.tick is not None:
                    work.tick(1)
                if saver is not None and saver.due():
                    saver.save(model, opt, gen, Position(step, epoch, i + 1, order, loss_sum, history))
            entry = {"stage": stage, "epoch": epoch + 1, "loss": float(loss_sum) / steps_per_epoch}
            last = epoch + 1 == epochs
            if last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                entry.update(evaluate(model, data, forward))
                bar.set_postfix(loss=f"{entry['loss']:.4f}", psnr=f"{entry['psnr_db']:.2f}")
            history.append(entry)
        if saver is not None and saver.interrupted:  # the signal came during the last evaluation
            saver.save(model, opt, gen, Position(step, epochs, 0, None, None, history))
    bar.close()
    return history


def init(work: Work, build_model: Callable[[Work], torch.nn.Module]) -> Work:
    """Stage entry point: build the plugin's model for this segment, seeded (cheap; re-run on resume)."""
    torch.manual_seed(work.config.train.seed)
    work.model = build_model(work).to(work.device)
    return work


def run(work: Work) -> Work:
    """Stage entry point: train the model (main stage)."""
    cfg: TrainConfig = work.config.train
    total = cfg.epochs

    def lr_at(step: int, steps_per_epoch: int) -> float:
        return cosine_lr(step, total * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch, cfg.lr,
                         cfg.warmup_lr, cfg.min_lr)

    history = fit(work, stage="overfit", epochs=cfg.epochs, lr_at=lr_at)
    work.report.setdefault("history", []).extend(history)
    return work
