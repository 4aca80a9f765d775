"""C3 training of one patch: rate–distortion loss, stage 1 (noisy soft-rounding), stage 2 (STE), learned windows.

    loss = MSE(x̂, x) + λ · Σ_k bits(ŷ_k | ARM_k) / (T·H·W)            (C3 §2.1; network bits not in the loss)

Stage 1 (`TrainConfig.epochs` steps): ŷ = r_T(s_T(y) + u), u Kumaraswamy(a) − ½, T and a annealed linearly
(0.3 → 0.1, 1.75 → 1.0), Adam with cosine LR from `TrainConfig.lr` to 0, global-norm gradient clipping.
Stage 2: ŷ = round(y) forward, s_T gradient backward (T = 1e-4), Adam at 1e-4, LR × 0.8 after `stage2_patience`
steps without a new best loss, stop when LR < 1e-8 or after `stage2_steps`; the best parameters (including the
end of stage 1, measured with hard rounding) are restored.

`learn_windows` is C3's learned inter-frame receptive field: a throw-away model whose per-grid ARMs see the whole
(2r + 1)² previous-frame window trains for `mask_steps`; per grid (< 3) the 4×4 window with the largest summed
mean |first-layer weight| is kept, and the real model is trained from scratch with those windows.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .arm import LEARNED_GRIDS, LEARNED_WINDOW, learned_context, scale_from_raw, search_context
from .model import C3Config, PatchModel
from .presets import Preset
from .quantizer import laplace_bits, noisy_soft_round, ste_round


def rd_loss(model: PatchModel, target: torch.Tensor, rd_lambda: float, quantize,
            max_bits: float = 16.0) -> tuple[torch.Tensor, float, float]:
    """(loss, mse, bits) with `quantize` mapping each grid's unquantized symbols to (proxy) symbols."""
    symbols = [quantize(model.unquantized_symbols(k)) for k in range(len(model.latents))]
    recon = model.render(symbols)
    mse = F.mse_loss(recon, target)
    bits = recon.new_zeros(())
    for k, s in enumerate(symbols):
        mu, raw = model.arm(k).forward_grid(s)
        bits = bits + laplace_bits(s, mu, scale_from_raw(raw), max_bits).sum()
    loss = mse + rd_lambda * bits / target[..., 0].numel()
    return loss, float(mse.detach()), float(bits.detach())


def _stage1(model: PatchModel, target: torch.Tensor, preset: Preset, steps: int, gen: torch.Generator,
            desc: str, progress: bool) -> list[dict]:
    cfg, c3 = preset.train, preset.c3
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    history = []
    for step in tqdm(range(steps), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        frac = step / max(steps, 1)
        temp = c3.temperature[0] + (c3.temperature[1] - c3.temperature[0]) * frac
        a = c3.kumaraswamy_a[0] + (c3.kumaraswamy_a[1] - c3.kumaraswamy_a[0]) * frac
        for g in opt.param_groups:
            g["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * frac))
        loss, mse, bits = rd_loss(model, target, c3.rd_lambda, lambda y: noisy_soft_round(y, temp, a, gen),
                                  c3.rate_cap_bits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if step % 50 == 0 or step == steps - 1:
            history.append({"stage": "c3-noise", "step": step, "loss": loss.item(), "mse": mse, "bits": bits})
    return history


def _stage2(model: PatchModel, target: torch.Tensor, preset: Preset, desc: str, progress: bool) -> list[dict]:
    c3 = preset.c3
    quant = lambda y: ste_round(y, c3.ste_temperature)  # noqa: E731
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=c3.stage2_lr)
    best, best_state, since, lr = math.inf, None, 0, c3.stage2_lr
    history = []
    for step in tqdm(range(c3.stage2_steps + 1), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        loss, mse, bits = rd_loss(model, target, c3.rd_lambda, quant, c3.rate_cap_bits)
        if loss.item() < best:
            best, best_state, since = loss.item(), copy.deepcopy(model.state_dict()), 0
            history.append({"stage": "c3-ste", "step": step, "loss": best, "mse": mse, "bits": bits})
        else:
            since += 1
            if since > c3.stage2_patience:
                lr, since = lr * c3.stage2_factor, 0
                for g in opt.param_groups:
                    g["lr"] = lr
        if lr < c3.stage2_min_lr or step == c3.stage2_steps:
            break  # the last evaluation above already measured the final parameters
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if preset.train.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, preset.train.grad_clip)
        opt.step()
    model.load_state_dict(best_state)
    return history


def init_model(model: PatchModel, target: torch.Tensor, preset: Preset) -> PatchModel:
    if preset.c3.init_bias_with_mean:
        with torch.no_grad():
            model.synthesis.mlp[-1].bias.copy_(target.reshape(-1, 3).mean(0))
    return model


def train_patch(model: PatchModel, target: torch.Tensor, preset: Preset, seed: int, desc: str = "c3",
                progress: bool = False) -> list[dict]:
    """Train `model` in place on `target` (T, H, W, 3) in [0, 1] (same device); returns the loss history."""
    gen = torch.Generator(device=target.device).manual_seed(seed)
    history = _stage1(model, target, preset, preset.train.epochs, gen, f"{desc} noise", progress)
    history += _stage2(model, target, preset, f"{desc} ste", progress)
    return history


def learn_windows(cfg: C3Config, shape: tuple[int, int, int], target: torch.Tensor, preset: Preset, seed: int,
                  progress: bool = False) -> list[tuple[int, int]]:
    """C3's learned previous-frame windows: top-left (dy, dx) of a 4×4 window per grid < 3."""
    r = preset.c3.mask_radius
    contexts = [search_context(r) if k < LEARNED_GRIDS else learned_context(None) for k in range(cfg.num_grids)]
    probe = init_model(PatchModel(cfg, shape, contexts=contexts).to(target.device), target, preset)
    gen = torch.Generator(device=target.device).manual_seed(seed)
    _stage1(probe, target, preset, preset.c3.mask_steps, gen, "c3 mask", progress)
    side = 2 * r + 1
    windows = []
    for k in range(min(LEARNED_GRIDS, cfg.num_grids)):
        w = probe.arm(k).layers[0].weight.detach()[:, : side * side].abs().mean(0).view(1, 1, side, side)
        score = F.conv2d(w, torch.ones(1, 1, LEARNED_WINDOW, LEARNED_WINDOW, device=w.device))[0, 0]
        i, j = divmod(int(torch.argmax(score)), score.shape[1])  # first maximum in raster order
        windows.append((i - r, j - r))
    return windows
