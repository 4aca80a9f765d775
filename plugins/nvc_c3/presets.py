"""C3 presets: decoder architecture (`C3Config`), C3's training schedule (`C3Train`), and the shared `TrainConfig`.

The CLI reads `preset.train` (a `nvc_pipe.stages.overfit.TrainConfig`): `epochs` is the number of stage-1 steps
(per patch), `lr` its initial learning rate, `grad_clip` the global-norm clip, `seed` the seed; pruning and QAT are
off (C3 has neither). Everything else C3-specific lives in `preset.c3` (reference notes §2):

* stage 1: soft-rounding T 0.3 → 0.1 and Kumaraswamy a 1.75 → 1.0 (linear), cosine LR from 1e-2 to 0;
* stage 2: straight-through rounding (gradient of s_T, T = 1e-4), Adam at 1e-4, ×0.8 after 20 steps without
  improvement, stop below 1e-8; the best parameters seen are kept;
* loss MSE + λ·bits/pixels (λ = `rd_lambda`); network weights are not in the loss.

Paper-like presets follow C3's λ → patch-size rule (`patch_size_for_lambda`) and its three video ARM variants.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nvc_pipe.stages.overfit import TrainConfig

from .model import C3Config


@dataclass(frozen=True)
class C3Train:
    """C3's own schedule (encoder only; nothing here is needed to decode)."""

    rd_lambda: float = 1e-3
    temperature: tuple[float, float] = (0.3, 0.1)  # soft-rounding T, start → end of stage 1
    noise: str = "kumaraswamy"  # stage-1 proxy: C3's r_T(s_T(y) + u) or Cool-Chic's s_T(s_T(y) + n) ("gaussian")
    kumaraswamy_a: tuple[float, float] = (1.75, 1.0)  # noise shape, start → end of stage 1
    noise_sigma: tuple[float, float] = (0.22, 0.15)  # Gaussian noise σ, start → end of stage 1
    clip_latents: bool = True  # the gradient clip covers the latents too (C3) or the network weights only
    final: str = "plateau"  # stage 2: C3's STE with LR decay on plateau, "hard" (frozen rounded latents, cosine LR)
    #                         or "ste" (as "hard", the latents trained through STE)
    warmup_candidates: int = 0  # > 1: Cool-Chic's warm-up over that many random starts
    warmup_keep: int = 2  # … of which the best few train another warmup_steps
    warmup_steps: int = 50
    stage2_steps: int = 10_000  # upper bound; stops earlier when the LR falls below stage2_min_lr
    stage2_lr: float = 1e-4
    stage2_patience: int = 20
    stage2_factor: float = 0.8
    stage2_min_lr: float = 1e-8
    ste_temperature: float = 1e-4
    optimizer: str = "adam"  # or "soap": SOAP on the network weights, Adam on the latents (Cool-Chic 5)
    soap_betas: tuple[float, float] = (0.95, 0.95)
    soap_every: int = 10  # steps between preconditioner basis refreshes
    soap_weight_decay: float = 0.01  # decoupled, network weights only
    latent_gain: float = 0.0  # symbols = gain · latent: 0 → C3's 2^k / q_step per grid, > 0 → this for every grid
    rate_cap_bits: float = 16.0  # C3 caps each latent's rate in the loss
    init_bias_with_mean: bool = True  # last MLP bias = the patch's mean RGB (C3's b_last_init_input_mean)
    mask_steps: int = 1000  # learned context: steps of the throw-away run that picks the windows
    mask_radius: int = 32  # … over a (2r + 1)² previous-frame search area
    # power-of-two step exponents tried for the network weights (step = 2^−k), a costed greedy search
    arm_weight_exps: tuple[int, ...] = (5, 6, 7, 8, 9, 10, 11)
    arm_bias_exps: tuple[int, ...] = (6, 8, 10, 12, 14)
    synthesis_weight_exps: tuple[int, ...] = (5, 6, 7, 8, 9, 10, 11, 12)
    synthesis_bias_exps: tuple[int, ...] = (6, 8, 10, 12, 14)
    refine_exponents: bool = True  # then each tensor's own exponent by coordinate descent (netquant.py)
    weight_deadzones: tuple[float, ...] = (0.1, 0.2, 0.3)  # then each tensor's rounding dead zone, costed
    latent_rdo_passes: int = 0  # then sweeps of the greedy ±1 search over the integer latents (latent_rdo.py)
    final_rdo_passes: int = 0  # final = "hard": sweeps of that search (float model) before the latents freeze


@dataclass(frozen=True)
class Preset:
    model: C3Config
    train: TrainConfig
    c3: C3Train = field(default_factory=C3Train)
    description: str = ""
    aim_bpp: float | None = None  # the stream bpp rate control sized this encode for (reports only; not coded)
    tried: tuple[tuple[float, int], ...] = ()  # (λ, coded payload bytes) of this segment's replaced encodes


def patch_size_for_lambda(rd_lambda: float) -> tuple[int, int, int]:
    """C3's UVG rule (configs/uvg.py): bigger patches at low rate spread the network cost over more pixels."""
    if rd_lambda > 1e-3:
        return 75, 270, 320
    if rd_lambda > 2e-4:
        return 60, 180, 240
    return 30, 180, 240


def _train(steps: int, lr: float = 1e-2) -> TrainConfig:
    return TrainConfig(epochs=steps, warmup_epochs=0, lr=lr, warmup_lr=lr, min_lr=0.0, batch_size=1, patch_size=None,
                       grad_clip=1e-2, prune_ratio=0.0, prune_epochs=0, qat_epochs=0, eval_every=0)


def _paper(rd_lambda: float, variant: str) -> Preset:
    pt, ph, pw = patch_size_for_lambda(rd_lambda)
    arch = {
        "cond": dict(num_grids=5, arm_widths=(2, 2), arm_per_grid=True, context="full"),
        "nocond": dict(num_grids=6, arm_widths=(16, 16), arm_per_grid=False, context="full"),
        "learned": dict(num_grids=6, arm_widths=(8, 8), arm_per_grid=True, context="learned"),
    }[variant]
    model = C3Config(q_step=0.3, synthesis_widths=(32, 32), per_frame_conv=True, patch_frames=pt, patch_height=ph,
                     patch_width=pw, **arch)
    return Preset(model, _train(100_000), C3Train(rd_lambda=rd_lambda),
                  f"C3 paper-like, {variant} ARM, λ={rd_lambda:g}, {pt}×{ph}×{pw} patches, 100k+10k steps (GPU)")


def _fast(rd_lambda: float, description: str) -> Preset:
    model = C3Config(num_grids=5, q_step=0.3, synthesis_widths=(12, 12), arm_widths=(2, 2), arm_per_grid=True,
                     patch_frames=16, patch_height=72, patch_width=96)
    return Preset(model, _train(400), C3Train(rd_lambda=rd_lambda, stage2_steps=100, mask_steps=100, mask_radius=8),
                  description)


PRESETS: dict[str, Preset] = {
    "c3-tiny": Preset(
        C3Config(num_grids=3, q_step=0.3, synthesis_widths=(8,), arm_widths=(4,), arm_per_grid=False,
                 patch_frames=8, patch_height=32, patch_width=32),
        _train(150), C3Train(rd_lambda=1e-3, stage2_steps=15, stage2_patience=3, mask_steps=20,
                                     mask_radius=4, arm_weight_exps=(6, 8, 10), arm_bias_exps=(8, 12),
                                     synthesis_weight_exps=(6, 8, 10), synthesis_bias_exps=(8, 12)),
        "test-size: 3 grids, one shared ARM, 150+15 steps"),
    "c3-fast": _fast(1e-3, "CPU-friendly: C3 default video widths, per-grid ARMs, 16×72×96 patches, 400+100 steps"),
    "c3-fast-hq": _fast(2e-4, "c3-fast at λ=2e-4 (higher rate)"),
    "c3-fast-lq": _fast(5e-3, "c3-fast at λ=5e-3 (lower rate)"),
    "c3-high": _paper(1e-4, "cond"),
    "c3-mid": _paper(5e-4, "cond"),
    "c3-low": _paper(2e-3, "cond"),
    "c3-mid-nocond": _paper(5e-4, "nocond"),
    "c3-mid-learned": _paper(5e-4, "learned"),
}
DEFAULT_PRESET = "c3-fast"

def with_lambda(preset: Preset, rd_lambda: float) -> Preset:
    """The preset at another λ (patch size unchanged)."""
    return replace(preset, c3=replace(preset.c3, rd_lambda=rd_lambda))


def warmup_total(c3: C3Train) -> int:
    return (c3.warmup_candidates + min(c3.warmup_keep, c3.warmup_candidates)) * c3.warmup_steps \
        if c3.warmup_candidates > 1 else 0


def total_steps(preset: Preset) -> int:
    """Every optimisation step one encode of a patch may take: mask probe (learned context), warm-up (every
    candidate), stage 1, stage 2 (an upper bound for the plateau variant, which may stop early)."""
    mask = preset.c3.mask_steps if preset.model.context == "learned" else 0
    return mask + warmup_total(preset.c3) + preset.train.epochs + preset.c3.stage2_steps


def with_steps(preset: Preset, steps: int) -> Preset:
    """The preset with `steps` optimisation steps in total per patch, split in the preset's proportions."""
    if steps < 2:
        raise ValueError("a C3 encode needs at least 2 steps")
    c3 = preset.c3
    total = total_steps(preset)
    mask = c3.mask_steps if preset.model.context == "learned" else 0
    new_mask = round(steps * mask / total)
    per_warmup = round(c3.warmup_steps * steps / total)
    if c3.warmup_candidates > 1:
        c3 = replace(c3, warmup_steps=per_warmup, warmup_candidates=c3.warmup_candidates if per_warmup else 0)
    new_stage2 = max(1, round(steps * c3.stage2_steps / total))
    new_stage1 = max(1, steps - new_mask - warmup_total(c3) - new_stage2)
    new_stage2 = max(1, steps - new_mask - warmup_total(c3) - new_stage1)
    c3 = replace(c3, stage2_steps=new_stage2, mask_steps=new_mask or c3.mask_steps)
    return replace(preset, train=replace(preset.train, epochs=new_stage1), c3=c3)


# Cool-Chic-like decoder and schedule (docs/c3.md has the measurements): one shared residual ARM with a linear
# branch over the 12 nearest causal latents and the 3×3 co-located symbols of the next coarser grid (coarse-to-fine
# context), ReLU, 5 grids (to 1/16: −2.9 % BD-rate against 7 grids at 2,000 steps with one seed, within seed noise,
# and 6 % fewer MAC/px; docs/c3.md) with learned ×2 upsampling, a 16-wide synthesis with a linear latents → RGB
# branch;
# SOAP on the network weights and Adam on the latents (Cool-Chic 5; with the latent gain below it pays −7.9 % BD-rate
# at 2,000 steps, docs/c3.md), Gaussian-noise soft-rounding, T 0.35 → 0.08, clip 0.1 on the weights only, one
# latent gain of 16 for every grid (Cool-Chic's), LR 1e-2 → 1e-5, warm-up of 5 random starts × 50 steps then the
# best 2 × 50, and a final 500 steps with rounded, frozen latents at LR 1e-4.
COOL_MODEL = C3Config(num_grids=5, q_step=0.3, synthesis_widths=(16,), arm_widths=(12, 12), arm_per_grid=False,
                      context_size=12, arm_residual=True, arm_linear=True, activation="relu", upsampling="learned",
                      synthesis_linear=True, coarse_context=9, patch_frames=1, patch_height=0, patch_width=0)
COOL_TRAIN = C3Train(noise="gaussian", temperature=(0.35, 0.08), noise_sigma=(0.22, 0.15), clip_latents=False,
                     final="hard", stage2_steps=500, stage2_lr=1e-4, warmup_candidates=5, warmup_keep=2,
                     warmup_steps=50, latent_gain=16.0, optimizer="soap")


def _cool(model: C3Config, steps: int, rd_lambda: float, description: str) -> Preset:
    """The Cool-Chic-like schedule with `steps` steps in all (warm-up and final phase included)."""
    train = replace(_train(1150), grad_clip=0.1, min_lr=1e-5)
    return with_steps(Preset(model, train, replace(COOL_TRAIN, rd_lambda=rd_lambda), description), steps)


def _searched(preset: Preset) -> Preset:
    """The latent search (latent_rdo.py) on: one sweep before the final phase, two after the weights are quantized.
    It pays on a converged picture (−1.3 BD-rate points at 2,000 steps, docs/c3.md) for ~10 % more encode time;
    on a video run of a few hundred steps the same time buys more as steps, so the video presets leave it off."""
    return replace(preset, c3=replace(preset.c3, final_rdo_passes=1, latent_rdo_passes=2))


# `nvc image --codec c3` (plugins/nvc_c3/image.py): one patch over the whole picture, 2,000 steps in all
IMAGE_PRESET = _searched(_cool(COOL_MODEL, 2000, 1e-3, "image: Cool-Chic-like decoder (960 MAC/px), one patch, "
                                                       "2,000 steps, latent search"))
PRESETS["c3-intra"] = _searched(_cool(COOL_MODEL, 2000, 1e-3, "all-intra: every frame one patch with the image "
                                                              "decoder, 2,000 steps per frame, latent search"))
PRESETS["c3-tiny-cool"] = _cool(
    replace(COOL_MODEL, num_grids=3, arm_widths=(4, 4), context_size=4, synthesis_widths=(8,), patch_frames=8),
    40, 1e-3, "test-size Cool-Chic-like decoder: 3 grids, residual shared ARM, learned upsampling, 40 steps")
PRESETS["c3-fast-cool"] = _cool(
    replace(COOL_MODEL, patch_frames=8), 2000, 1e-3,
    "video: the image decoder on 8-frame whole-frame patches (ARM: 12 nearest latents in this and the previous "
    "latent frame, and 9 of the next coarser grid; 1,069 MAC/px), 2,000 steps per patch; -74 % BD-rate against "
    "c3-intra (measured before the coarse context: 500 steps, 128x72 crop, "
    "docs/c3.md)")
