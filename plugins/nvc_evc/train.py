"""EVC training on CPU: variable-rate base training of the L model, then mask decay to M and S, then export.

    python -m nvc_evc.train base  --seconds 2400 --work /tmp/evc_train
    python -m nvc_evc.train decay --seconds 900  --work /tmp/evc_train
    python -m nvc_evc.train finetune --size SS --seconds 480 --work /tmp/evc_train   (optional recovery)
    python -m nvc_evc.train export --work /tmp/evc_train --out plugins/nvc_evc/weights

Variable rate (notes §2.5): every sample of a batch gets one of the 4 anchors (cyclically, shuffled); its loss is
λ_i·255²·MSE + bpp with λ = (0.0022, 0.0050, 0.012, 0.027), and its latent is scaled by q_basic·q_scale[i], so one
model learns the 4 rates. Adam, gradient-norm clip 1, lr 5e-4 then 1e-4 for the last 20 % of the time budget.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from . import data as evc_data
from .model import EVC, LAMBDAS, EVCConfig


def rd_loss(model: EVC, x: torch.Tensor, anchors: torch.Tensor, lambdas=LAMBDAS) -> tuple[torch.Tensor, dict]:
    q_scale = model.entropy.q_scale.view(-1)[anchors]
    out = model(x, q_scale)
    mse = ((out["x_hat"] - x) ** 2).mean((1, 2, 3))
    bpp = out["bits"] / (x.shape[2] * x.shape[3])
    lam = torch.tensor(lambdas, dtype=x.dtype, device=x.device)[anchors.to(x.device)]
    loss = (lam * 255.0 ** 2 * mse + bpp).mean()
    return loss, {"mse": mse.detach(), "bpp": bpp.detach()}


class Meter:
    """Running per-anchor bpp and PSNR for the log."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = np.zeros(4)
        self.bpp = np.zeros(4)
        self.mse = np.zeros(4)

    def add(self, anchors: torch.Tensor, st: dict) -> None:
        for a, b, m in zip(anchors.tolist(), st["bpp"].tolist(), st["mse"].tolist()):
            self.n[a] += 1
            self.bpp[a] += b
            self.mse[a] += m

    def line(self) -> str:
        n = np.maximum(self.n, 1)
        psnr = -10 * np.log10(np.maximum(self.mse / n, 1e-10))
        return " ".join(f"q{i}:{self.bpp[i] / n[i]:.3f}bpp/{psnr[i]:.2f}dB" for i in range(4))


def fit(model: EVC, params, pool, seconds: float, crop: int, batch: int, lr: float, log, seed: int = 0,
        extra_loss=None, on_step=None, max_steps: int | None = None, lambdas=LAMBDAS, device="cpu") -> int:
    """Train `params` of `model` for a wall-time budget (or `max_steps`); returns the step count.

    The lr drops ×5 for the last 20 % of the budget; `on_step(step, frac)` and `extra_loss(step, frac)` see the
    fraction of the budget used (mask decay schedules on it)."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(params, lr=lr)
    meter, start, step = Meter(), time.time(), 0
    while (step < max_steps) if max_steps else (time.time() - start < seconds):
        frac = step / max_steps if max_steps else (time.time() - start) / seconds
        for g in opt.param_groups:
            g["lr"] = lr if frac < 0.8 else lr / 5
        x = torch.from_numpy(evc_data.sample(pool, batch, crop, rng)).to(device)
        anchors = torch.from_numpy(rng.permutation(np.arange(batch) % 4))
        loss, st = rd_loss(model, x, anchors, lambdas)
        if extra_loss is not None:
            loss = loss + extra_loss(step, frac)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if on_step is not None:
            on_step(step, frac)
        meter.add(anchors, st)
        step += 1
        if step % 25 == 0:
            log(f"step {step} t={time.time() - start:.0f}s loss={loss.item():.4f} {meter.line()}")
            meter.reset()
    return step


def _logger(path: Path):
    f = open(path, "a", buffering=1)

    def log(msg: str) -> None:
        f.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
    return log


def cmd_base(args) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    log = _logger(work / "train.log")
    pool = evc_data.load_pool()
    log(f"base: {len(pool)} images, crop {args.crop}, batch {args.batch}, {args.seconds}s")
    model = EVC(EVCConfig.small("LL"))
    t0 = time.time()
    steps = fit(model, list(model.parameters()), pool, args.seconds, args.crop, args.batch, args.lr, log)
    torch.save(model.state_dict(), work / "base_LL.pt")
    info = {"steps": steps, "seconds": round(time.time() - t0), "crop": args.crop, "batch": args.batch}
    (work / "base.json").write_text(json.dumps(info))
    log(f"base done: {info}")


def cmd_decay(args) -> None:
    from .maskdecay import run_mask_decay

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    work = Path(args.work)
    log = _logger(work / "train.log")
    pool = evc_data.load_pool()
    model = EVC(EVCConfig.small("LL"))
    model.load_state_dict(torch.load(work / "base_LL.pt", weights_only=True))
    run_mask_decay(model, pool, args.seconds, args.crop, args.batch, args.lr, log, work)


def cmd_finetune(args) -> None:
    """Extra recovery fine-tuning of a slimmed size (`--size SS`): encoder/decoder only, entropy model frozen."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(3)
    work = Path(args.work)
    log = _logger(work / "train.log")
    pool = evc_data.load_pool()
    model = EVC(EVCConfig.small(args.size))
    model.load_state_dict(torch.load(work / f"{args.size}.pt", weights_only=True))
    for p in model.entropy.parameters():
        p.requires_grad_(False)
    params = list(model.enc.parameters()) + list(model.dec.parameters())
    steps = fit(model, params, pool, args.seconds, args.crop, args.batch, args.lr, log, seed=3)
    torch.save(model.state_dict(), work / f"{args.size}.pt")
    log(f"finetune {args.size}: {steps} steps")


def cmd_export(args) -> None:
    from .weights import export_all

    export_all(Path(args.work), Path(args.out))


def train_recipe(out_dir: str, steps: int | None = None, lambdas=None, device: str = "cpu",
                 progress: bool = True, work: str | None = None, init: str | None = None) -> dict:
    """`nvc train-intra evc`: base L training, mask decay to M and S, export to `out_dir`.

    steps None = the shipped recipe's wall-time budgets (2100 s base + 900 s decay on 2 CPU threads); otherwise
    3/4 of the steps for the base and 1/8 for each decay phase. `lambdas`: the 4 anchor λ (default LAMBDAS).
    `init`: a weights directory (e.g. the shipped one) whose L model and entropy model start the base training;
    M and S are always re-derived from the new base by mask decay.
    """
    from nvc_pipe.errors import ConfigError
    from nvc_pipe.intra.train import resolve_device

    from .maskdecay import decay_phase
    from .weights import export_all

    lambdas = tuple(lambdas or LAMBDAS)
    if len(lambdas) != 4:
        raise ConfigError("EVC trains 4 rate anchors: give exactly 4 λ values")
    dev = resolve_device(device)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    work_dir = Path(work or Path(out_dir) / "work")
    work_dir.mkdir(parents=True, exist_ok=True)
    log = _logger(work_dir / "train.log")
    if progress:
        base_log = log

        def log(msg: str) -> None:
            base_log(msg)
            print(msg, flush=True)
    pool = evc_data.load_pool()
    t0 = time.time()
    model = (load_trainable(init) if init else EVC(EVCConfig.small("LL"))).to(dev)
    if init:
        log(f"base starts from {init}")
    n = fit(model, list(model.parameters()), pool, 2100, 128, 8, 8e-4, log, max_steps=steps and steps * 3 // 4,
            lambdas=lambdas, device=dev)
    torch.save(model.cpu().state_dict(), work_dir / "base_LL.pt")
    (work_dir / "base.json").write_text(json.dumps({"steps": n, "seconds": round(time.time() - t0)}))
    for size, seed in (("MM", 1), ("SS", 2)):
        model = decay_phase(model.to(dev), EVCConfig.small(size), pool, 450, 128, 8, 3e-4, log, seed,
                            max_steps=steps and max(1, steps // 8), lambdas=lambdas, device=dev).cpu()
        torch.save(model.state_dict(), work_dir / f"{size}.pt")
    export_all(work_dir, Path(out_dir), {"lambdas": list(lambdas)})
    return {"time_s": time.time() - t0}


def load_trainable(directory: str) -> EVC:
    """A fresh, trainable copy of the L model (transforms + entropy model) shipped in `directory`."""
    from .weights import load_size

    model = copy.deepcopy(load_size("L", str(directory))).train()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m nvc_evc.train", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["base", "decay", "finetune", "export"])
    p.add_argument("--size", default="SS", help="finetune: MM or SS")
    p.add_argument("--work", default="/tmp/evc_train")
    p.add_argument("--out", default=str(Path(__file__).parent / "weights"))
    p.add_argument("--seconds", type=float, default=2400)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    {"base": cmd_base, "decay": cmd_decay, "finetune": cmd_finetune, "export": cmd_export}[args.what](args)


if __name__ == "__main__":
    main()
