"""The generic training loop of the learned intra codecs (`nvc train-intra`); recipes live in the plugins.

`train_loop(model, batches, step_fn, steps, lr, ...)` runs Adam with a linear warm-up and a cosine decay to
`lr_end`, gradient-norm clipping, and a tqdm bar; `step_fn(model, x) -> (loss, metrics)` is the plugin's. It
returns the metrics averaged over the last 10 % of steps. `resolve_device` maps auto/cpu/cuda[:N]; on the CPU the
loop uses `threads` threads (2 by default: the build machines have 2 cores shared with others). The seed is fixed
by the caller (`seed_everything`).
"""

from __future__ import annotations

import math
import random
import time
from typing import Callable, Iterable

import numpy as np
import torch

from ..errors import ConfigError

StepFn = Callable[[torch.nn.Module, torch.Tensor], tuple[torch.Tensor, dict[str, float]]]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (auto, cpu or cuda[:N])") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA requested but not available")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_at(step: int, steps: int, lr: float, lr_end: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr_end + 0.5 * (lr - lr_end) * (1 + math.cos(math.pi * t))


def train_loop(model: torch.nn.Module, batches: Iterable[torch.Tensor], step_fn: StepFn, steps: int, lr: float,
               *, lr_end: float | None = None, warmup: int = 0, clip: float = 1.0, device: torch.device | None = None,
               threads: int = 2, progress: bool = True, desc: str = "train") -> dict[str, float]:
    """Train `model` in place for `steps` steps; returns the averaged tail metrics plus `time_s`."""
    from tqdm import tqdm

    device = device or torch.device("cpu")
    if device.type == "cpu":
        torch.set_num_threads(threads)
        torch.set_flush_denormal(True)  # GDN/density gradients produce denormals: up to 6× slower steps without
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    lr_end = lr / 10 if lr_end is None else lr_end
    tail_from = int(steps * 0.9)
    sums: dict[str, float] = {}
    count = 0
    start = time.time()
    it = iter(batches)
    bar = tqdm(range(steps), desc=desc, disable=not progress, mininterval=5.0, dynamic_ncols=True)
    for step in bar:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, lr_end, warmup)
        x = next(it).to(device, non_blocking=True)
        loss, metrics = step_fn(model, x)
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at step {step} (loss {loss.item()})")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        if step % 20 == 0:
            bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
        if step >= tail_from:
            for k, v in metrics.items():
                sums[k] = sums.get(k, 0.0) + v
            count += 1
    model.eval()
    out = {k: v / max(count, 1) for k, v in sums.items()}
    out["time_s"] = time.time() - start
    return out
