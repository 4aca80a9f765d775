"""C3 training of one patch: rate–distortion loss, warm-up candidates, stage 1 (noisy soft-rounding), stage 2.

    loss = MSE(x̂, x) + λ · Σ_k bits(ŷ_k | ARM) / (T·H·W)            (C3 §2.1; network bits not in the loss)

Every knob is in `preset.c3` (`C3Train`); the step counts are in `presets.total_steps`, which counts every
optimisation step (warm-up candidates included):

* warm-up (`warmup_candidates` > 1): that many fresh models (seeds seed, seed + 1, …) train `warmup_steps` at
  constant LR, T = temperature[0]; the `warmup_keep` best (loss with hard rounding) train `warmup_steps` more and
  the best one goes on; its optimiser state is dropped.
* stage 1 (`TrainConfig.epochs` steps): the latent proxy is C3's ŷ = r_T(s_T(y) + u), u Kumaraswamy(a) − ½
  (`noise = "kumaraswamy"`), or Cool-Chic's ŷ = s_T(s_T(y) + n), n ~ N(0, σ²) (`noise = "gaussian"`); T, a and
  σ linear over the stage; Adam with a cosine LR from `TrainConfig.lr` to `TrainConfig.min_lr`; global-norm
  clipping at `TrainConfig.grad_clip`, of every parameter (`clip_latents`) or of the network weights only.
* stage 2, `final = "plateau"` (C3): straight-through rounding (gradient of s_T, T = 1e-4), Adam at 1e-4,
  ×0.8 after `stage2_patience` steps without a new best loss, at most `stage2_steps`; `final = "hard"`:
  latents rounded and frozen, the networks train `stage2_steps` at a cosine LR from `stage2_lr`; `final = "ste"`
  (Cool-Chic 5's last phase): as "hard", but the latents train too, through the straight-through rounding.
  Either way the best parameters seen (the end of stage 1 included, measured with hard rounding) are kept.
* optimiser (`optimizer`): Adam on everything, or "soap": SOAP (soap.py) on the network weights, Adam on the
  latents, as Cool-Chic 5.

`learn_windows` is C3's learned inter-frame receptive field: a throw-away model whose per-grid ARMs see the whole
(2r + 1)² previous-frame window trains for `mask_steps`; per grid (< 3) the 4×4 window with the largest summed
mean |first-layer weight| is kept, and the real model is trained from scratch with those windows.

With a step checkpoint (`steps.Steps`, `--checkpoint-every`, SIGINT/SIGTERM) every loop saves after its steps and
a resumed run goes on at the step where it stopped, with the same bytes as an uninterrupted one (steps.py).
"""

from __future__ import annotations

import copy
import math
from contextlib import nullcontext
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .arm import LEARNED_GRIDS, LEARNED_WINDOW, learned_context, scale_from_raw, search_context
from .model import C3Config, PatchModel
from .presets import Preset
from .quantizer import laplace_bits, noisy_soft_round, soft_round, ste_round
from .soap import Soap
from .steps import Steps


def rd_loss(model: PatchModel, target: torch.Tensor, rd_lambda: float, quantize,
            max_bits: float = 16.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, mse, bits) tensors with `quantize` mapping each grid's unquantized symbols to (proxy) symbols."""
    symbols = [quantize(model.unquantized_symbols(k)) for k in range(len(model.latents))]
    recon = model.render(symbols)
    mse = F.mse_loss(recon, target)
    bits = recon.new_zeros(())
    for k, s in enumerate(symbols):
        mu, raw = model.arm(k).forward_grid(s, symbols[k + 1] if k + 1 < len(symbols) else None)
        bits = bits + laplace_bits(s, mu, scale_from_raw(raw), max_bits).sum()
    loss = mse + rd_lambda * bits / target[..., 0].numel()
    return loss, mse.detach(), bits.detach()


def _hard(y: torch.Tensor) -> torch.Tensor:
    return torch.round(y.detach())


def _proxy(c3, frac: float, gen: torch.Generator, temp: float | None = None):
    temp = c3.temperature[0] + (c3.temperature[1] - c3.temperature[0]) * frac if temp is None else temp
    if c3.noise == "gaussian":
        sigma = c3.noise_sigma[0] + (c3.noise_sigma[1] - c3.noise_sigma[0]) * frac

        def q(y):
            n = torch.randn(y.shape, generator=gen, device=y.device) * sigma
            return soft_round(soft_round(y, temp) + n, temp)
        return q
    a = c3.kumaraswamy_a[0] + (c3.kumaraswamy_a[1] - c3.kumaraswamy_a[0]) * frac
    return lambda y: noisy_soft_round(y, temp, a, gen)


def _split_params(model: PatchModel) -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    latents = list(model.latents.parameters())
    ids = {id(p) for p in latents}
    return latents, [p for p in model.parameters() if id(p) not in ids]


def _optimizer(model: PatchModel, lr: float, c3) -> torch.optim.Optimizer:
    """Adam on everything, or (`c3.optimizer = "soap"`, Cool-Chic 5) SOAP on the network weights and Adam on the
    latents."""
    latents, nets = _split_params(model)
    if c3.optimizer == "soap":
        return Soap([{"params": latents, "betas": (0.9, 0.999), "precondition": False},
                     {"params": nets, "weight_decay": c3.soap_weight_decay}],
                    lr=lr, betas=c3.soap_betas, every=c3.soap_every)
    return torch.optim.Adam([{"params": latents}, {"params": nets}], lr=lr)


def _clip(model: PatchModel, preset: Preset) -> None:
    if preset.train.grad_clip > 0:
        latents, nets = _split_params(model)
        torch.nn.utils.clip_grad_norm_(latents + nets if preset.c3.clip_latents else nets, preset.train.grad_clip)


def _run(model: PatchModel, target: torch.Tensor, preset: Preset, steps: int, gen: torch.Generator, desc: str,
         progress: bool, stage: str = "c3-noise", constant_temp: float | None = None,
         history: list[dict] | None = None, ck: Steps | None = None, phase: str = "noise") -> list[dict]:
    """Stage-1-like training: `steps` Adam steps on the noisy proxy (cosine LR unless `constant_temp` is set);
    loss entries are appended to `history`. `phase` names the loop in step checkpoints."""
    cfg, c3 = preset.train, preset.c3
    opt = _optimizer(model, cfg.lr, c3)
    history = [] if history is None else history
    at = ck.enter(phase, model, opt, gen) if ck is not None else None
    first = at.meta["step"] if at is not None else 0
    for step in tqdm(range(first, steps), desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        frac = step / max(steps, 1)
        if constant_temp is None:
            for g in opt.param_groups:
                g["lr"] = cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * frac))
        loss, mse, bits = rd_loss(model, target, c3.rd_lambda, _proxy(c3, frac, gen, constant_temp), c3.rate_cap_bits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _clip(model, preset)
        opt.step()
        if step % 100 == 0 or step == steps - 1:
            history.append({"stage": stage, "step": step, "loss": float(loss.detach()), "mse": float(mse),
                            "bits": float(bits)})
        if ck is not None:
            ck.step(phase, step + 1, model, opt, gen)
    return history


def hard_loss(model: PatchModel, target: torch.Tensor, preset: Preset) -> float:
    with torch.no_grad():
        return float(rd_loss(model, target, preset.c3.rd_lambda, _hard, preset.c3.rate_cap_bits)[0])


def _stage2(model: PatchModel, target: torch.Tensor, preset: Preset, desc: str, progress: bool,
            history: list[dict], ck: Steps | None = None) -> None:
    c3 = preset.c3
    frozen = c3.final == "hard"
    cosine = c3.final in ("hard", "ste")  # else the plateau schedule
    quant = _hard if frozen else (lambda y: ste_round(y, c3.ste_temperature))
    if frozen:
        for p in model.latents.parameters():
            p.requires_grad_(False)
    opt = _optimizer(model, c3.stage2_lr, c3)
    best, best_state, since, lr = math.inf, None, 0, c3.stage2_lr
    at = ck.enter("final", model, opt, None) if ck is not None else None
    first = 0
    if at is not None:
        first, (best, since, lr) = at.meta["step"], at.meta["final"]
        best_state = at.tensors("best", target.device)
    elif frozen and c3.final_rdo_passes:  # the networks then train on the searched integers (latent_rdo.py)
        from .latent_rdo import refine_latents

        symbols = [_hard(model.unquantized_symbols(k)) for k in range(len(model.latents))]
        symbols, _ = refine_latents(model, symbols, target, c3.rd_lambda, c3.final_rdo_passes,
                                    max_bits=c3.rate_cap_bits)
        with torch.no_grad():
            for k, (p, s) in enumerate(zip(model.latents, symbols)):
                p.copy_(s.to(p.device, p.dtype) / model.latent_gains[k])
    for step in tqdm(range(first, c3.stage2_steps + 1), desc=desc, disable=not progress, leave=False,
                     dynamic_ncols=True):
        loss, mse, bits = rd_loss(model, target, c3.rd_lambda, quant, c3.rate_cap_bits)
        value = float(loss.detach())
        if value < best:
            best, best_state, since = value, copy.deepcopy(model.state_dict()), 0
            history.append({"stage": "c3-" + c3.final, "step": step, "loss": best, "mse": float(mse),
                            "bits": float(bits)})
        elif cosine:
            pass
        else:
            since += 1
            if since > c3.stage2_patience:
                lr, since = lr * c3.stage2_factor, 0
        if cosine:
            lr = c3.stage2_lr * 0.5 * (1 + math.cos(math.pi * step / max(c3.stage2_steps, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        if lr < c3.stage2_min_lr and not cosine or step == c3.stage2_steps:
            break  # the last evaluation above already measured the final parameters
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _clip(model, preset)
        opt.step()
        if ck is not None:
            ck.step("final", step + 1, model, opt, None, {"final": [best, since, lr]}, best_state)
    model.load_state_dict(best_state)
    for p in model.latents.parameters():
        p.requires_grad_(True)


def init_model(model: PatchModel, target: torch.Tensor, preset: Preset) -> PatchModel:
    model.set_latent_gain(preset.c3.latent_gain)
    if preset.c3.init_bias_with_mean:
        with torch.no_grad():
            model.synthesis.mlp[-1].bias.copy_(target.reshape(-1, 3).mean(0))
    return model


def _new_model(cfg: C3Config, shape, windows, target: torch.Tensor, preset: Preset, seed: int) -> PatchModel:
    torch.manual_seed(seed)
    return init_model(PatchModel(cfg, shape, windows).to(target.device), target, preset)


def warm_up(cfg: C3Config, shape, windows, target: torch.Tensor, preset: Preset, seed: int, gen: torch.Generator,
            desc: str, progress: bool, history: list[dict], ck: Steps | None = None) -> PatchModel:
    """Cool-Chic's warm-up: several random starts trained briefly, the best kept (see module doc); one entry per
    round appended to `history`."""
    c3 = preset.c3
    models = [_new_model(cfg, shape, windows, target, preset, seed + 1000 * i) for i in range(c3.warmup_candidates)]
    at = ck.inside("warmup") if ck is not None else None
    start_round, start_index, start_scores = 0, 0, []
    if at is not None:  # the candidates as saved, in that round's order; the one in training goes on in _run
        start_round, start_index, start_scores = (at.meta["warmup"][k] for k in ("round", "index", "scores"))
        for k, m in enumerate(models):
            if at.has(f"cand{k}"):
                at.load_module(f"cand{k}", m)
    for round_, keep in enumerate((c3.warmup_candidates, c3.warmup_keep)):
        if round_ < start_round:
            continue
        resumed = round_ == start_round
        scored = [(v, i, models[i]) for v, i in start_scores] if resumed else []
        for i in range(start_index if resumed else 0, min(keep, len(models))):
            m = models[i]
            if ck is not None:
                ck.warmup = {"round": round_, "index": i, "scores": [[v, j] for v, j, _ in scored]}
                ck.candidates = models[:keep]
            _run(m, target, preset, c3.warmup_steps, gen, f"{desc} warm-up {round_ + 1}.{i + 1}", progress,
                 constant_temp=c3.temperature[0], ck=ck, phase="warmup")
            scored.append((hard_loss(m, target, preset), i, m))
        scored.sort(key=lambda v: (v[0], v[1]))
        models = [m for _, _, m in scored]
        history.append({"stage": f"c3-warmup-{round_ + 1}", "losses": [round(v, 6) for v, _, _ in scored]})
    if ck is not None:
        ck.warmup, ck.candidates = None, []
    return models[0]


def train_patch(cfg: C3Config, shape, windows, target: torch.Tensor, preset: Preset, seed: int, desc: str = "c3",
                progress: bool = False, ck: Steps | None = None) -> tuple[PatchModel, list[dict]]:
    """A trained model of the patch `target` (T, H, W, 3) in [0, 1] (on its device) and its loss history.
    With `ck` (its `patch` set to this patch) the loops save step checkpoints, and one that stopped inside this
    patch goes on where it stopped."""
    gen = torch.Generator(device=target.device).manual_seed(seed)
    history = ck.resume_history() if ck is not None else []
    passed = (lambda phase: ck.passed(ck.patch, phase)) if ck is not None else (lambda phase: False)
    if preset.c3.warmup_candidates > 1 and not passed("warmup"):
        model = warm_up(cfg, shape, windows, target, preset, seed, gen, desc, progress, history, ck)
    else:  # (when the run stopped after its warm-up, the model in training is loaded by the next loop)
        model = _new_model(cfg, shape, windows, target, preset, seed)
    if not passed("noise"):
        _run(model, target, preset, preset.train.epochs, gen, f"{desc} noise", progress, history=history, ck=ck)
    _stage2(model, target, preset, f"{desc} {preset.c3.final}", progress, history, ck)
    return model, history


def learn_windows(cfg: C3Config, shape: tuple[int, int, int], target: torch.Tensor, preset: Preset, seed: int,
                  progress: bool = False, ck: Steps | None = None) -> list[tuple[int, int]]:
    """C3's learned previous-frame windows: top-left (dy, dx) of a 4×4 window per grid < 3."""
    r = preset.c3.mask_radius
    contexts = [search_context(r) if k < LEARNED_GRIDS else learned_context(None) for k in range(cfg.num_grids)]
    torch.manual_seed(seed)  # the probe's start depends on nothing before it (a resumed or Ray job gets the same)
    probe = init_model(PatchModel(cfg, shape, contexts=contexts).to(target.device), target, preset)
    gen = torch.Generator(device=target.device).manual_seed(seed)
    _run(probe, target, preset, preset.c3.mask_steps, gen, "c3 mask", progress, ck=ck, phase="mask")
    side = 2 * r + 1
    windows = []
    for k in range(min(LEARNED_GRIDS, cfg.num_grids)):
        w = probe.arm(k).layers[0].weight.detach()[:, : side * side].abs().mean(0).view(1, 1, side, side)
        score = F.conv2d(w, torch.ones(1, 1, LEARNED_WINDOW, LEARNED_WINDOW, device=w.device))[0, 0]
        i, j = divmod(int(torch.argmax(score)), score.shape[1])  # first maximum in raster order
        windows.append((i - r, j - r))
    return windows


def train_segment(cfg: C3Config, boxes: list, target_of: Callable[[int], torch.Tensor], preset: Preset,
                  progress: bool = False, label: str = "seg 0",
                  ck: Steps | None = None) -> tuple[list[PatchModel], list[dict]]:
    """Train every patch (`boxes`, targets from `target_of(i)`): the models and one summary per patch. With `ck`,
    SIGINT/SIGTERM wait for the step in progress and its checkpoint, patches finished before a saved step are
    loaded instead of trained, and the end of training is saved too (phase "trained")."""
    models: list[PatchModel] = []
    summary: list[dict] = []
    if ck is not None:
        ck.finished, ck.summaries = models, summary
    with ck.saver.deferred_signals() if ck is not None else nullcontext():
        for i, box in enumerate(boxes):
            target, shape, seed = target_of(i), box[3:], preset.train.seed + i
            if ck is not None and ck.passed(i):
                model, entry = ck.finished_patch(i, lambda w: init_model(PatchModel(cfg, shape, w).to(target.device),
                                                                         target, preset))
                models.append(model)
                summary.append(entry)
                continue
            if ck is not None:
                ck.patch, ck.windows, ck.history = i, None, []
            windows = None
            if cfg.context == "learned":
                windows = (ck.saved_windows() if ck is not None and ck.passed(i, "mask")
                           else learn_windows(cfg, shape, target, preset, seed, progress, ck))
                if ck is not None:
                    ck.windows = [list(w) for w in windows]
            model, history = train_patch(cfg, shape, windows, target, preset, seed,
                                         f"{label} patch {i + 1}/{len(boxes)}", progress, ck)
            models.append(model)
            summary.append({"box": list(box), "windows": [list(w) for w in model.windows], "final": history[-1]})
        if ck is not None and ck.saved is None:
            ck.patch, ck.windows, ck.history = len(boxes), None, []
            ck.save("trained", 0)
        elif ck is not None:  # resumed after the training: every patch came from the checkpoint
            ck.saved.restore_global_rngs()
    return models, summary
