"""Training recipe of the shipped Ballé models (`nvc train-intra balle`).

One model per quality, q1..q4 = λ in `LAMBDAS` (loss bpp + λ·MSE₂₅₅). To fit the 2-core CPU budget the four
models share a start: a base model is trained at `BASE_LAMBDA` for 40 % of `--steps`, then each quality is
fine-tuned from it for 15 % of `--steps` at its own λ (lr decays by cosine). Crops 128×128, batch 8, Adam,
grad-norm clip 1, seed 0. With `init` (a weights directory) the base starts from that directory's q3 model
instead of a random init (how the shipped weights continued a first run; docs/intra.md). Each finished model
is written at once (`q{k}.npz`, fp16 + its entropy tables) so an interrupted run keeps what it finished;
`train_log.json` records the recipe and the measured tail metrics.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

from nvc_pipe.intra.data import CropSampler, load_training_images
from nvc_pipe.intra.train import resolve_device, seed_everything, train_loop
from nvc_pipe.intra.weights import load_model_arrays, save_model

from .model import BalleConfig, BalleModel, rd_loss

LAMBDAS = (0.0018, 0.0045, 0.011, 0.027)
BASE_LAMBDA = 0.007
CROP, BATCH = 128, 8
DEFAULT_STEPS = 3000
SEED = 0


def _step_fn(lmbda: float):
    def step(model: BalleModel, x: torch.Tensor):
        x_hat, bpp = model(x)
        loss, mse = rd_loss(x, x_hat, bpp, lmbda)
        psnr = 10 * torch.log10(255.0**2 / mse.detach().clamp_min(1e-10))
        return loss, {"loss": loss.item(), "bpp": bpp.item(), "psnr": psnr.item()}
    return step


def export(model: BalleModel, path: Path, quality: int, lmbda: float, facts: dict) -> None:
    tables = model.prior.export_tables()
    config = {"codec": "balle", "model": model.cfg.to_dict(), "quality": quality, "lambda": lmbda, **facts}
    save_model(path, model, config, tables.to_arrays())


def train_all(out_dir: str | Path, steps: int = DEFAULT_STEPS, lambdas: tuple[float, ...] = LAMBDAS,
              device: str = "auto", channels: int = BalleConfig.channels, progress: bool = True,
              log=print, init: str | Path | None = None) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    seed_everything(SEED)
    t0 = time.time()
    images = load_training_images()
    log(f"{len(images)} training images loaded in {time.time() - t0:.0f} s")
    sampler = CropSampler(images, CROP, BATCH, seed=SEED)
    base_steps, ft_steps = int(steps * 0.4), int(steps * 0.15)
    model = BalleModel(BalleConfig(channels))
    if init is not None:
        config, state, _ = load_model_arrays(Path(init) / "q3.npz")
        model = BalleModel(BalleConfig.from_dict(config["model"]))
        model.load_state_dict(state)
        channels = model.cfg.channels
    record = {"recipe": {"init": str(init) if init else None, "crop": CROP, "batch": BATCH, "seed": SEED,
                         "channels": channels, "base_lambda": BASE_LAMBDA, "base_steps": base_steps,
                         "finetune_steps": ft_steps, "lambdas": list(lambdas), "device": str(dev)}, "models": {}}
    base = train_loop(model, sampler, _step_fn(BASE_LAMBDA), base_steps, 5e-4, lr_end=2e-4, warmup=50,
                      device=dev, progress=progress, desc=f"base λ={BASE_LAMBDA}")
    record["base"] = base
    log(f"base: {base}")
    base_state = copy.deepcopy(model.state_dict())
    for q, lmbda in enumerate(lambdas, start=1):
        model.load_state_dict(base_state)
        seed_everything(SEED + q)
        m = train_loop(model, sampler, _step_fn(lmbda), ft_steps, 3e-4, lr_end=1e-5, warmup=10, device=dev,
                       progress=progress, desc=f"q{q} λ={lmbda}")
        model.cpu()
        export(model, out / f"q{q}.npz", q, lmbda, {"train_steps": base_steps + ft_steps, "train_metrics": m})
        record["models"][f"q{q}"] = {"lambda": lmbda, **m}
        log(f"q{q}: {m}")
        (out / "train_log.json").write_text(json.dumps(record, indent=1))
    record["time_s"] = time.time() - t0
    (out / "train_log.json").write_text(json.dumps(record, indent=1))
    return record
