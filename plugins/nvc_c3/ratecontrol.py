"""C3 rate control: a rate target becomes λ (and a patch layout), a clip becomes a step budget.

    patch layout  one spatial patch up to PATCH_PIXELS (network bits dominate small patches: +232 % rate for six
                  patches against one on a 256x144 frame, docs/ratecontrol.md), PATCH_FRAMES frames per patch
    network       the largest of NETWORKS (smallest first, the preset's own last) whose predicted coded size is
                  at most NET_SHARE of a patch's payload: tiny clips and low rates get smaller decoders
    λ model       payload ≈ patches · net_bytes + pixels · b · (λ / 1e-3)^−β / 8, with the latent bpp at 1e-3
                  b = b_ref · (pixels / REFERENCE_PIXELS)^−SIZE_EXPONENT (small clips cost more); (b_ref, β) per
                  decoder family (`lambda_model`: C3's own, or the Cool-Chic-like decoder of c3-fast-cool, whose
                  pair also depends on the steps per patch)
    correct       if the first segment's real payload misses its budget by more than TOLERANCE, λ moves along
                  the model's slope and the segment is encoded again; if that misses too, once more along the
                  slope the two encodes measured (short trial runs code far less than full runs at the same
                  λ — 0.31 vs 0.48 bpp at 50 vs 200 steps — so they cannot stand in)

Uses only `payload.network_shapes`, `presets.PRESETS`, `DEFAULT_PRESET`, `Preset`, `with_lambda`, `with_steps`,
the codec's own stages (through the plugin protocol), and the fields of the preset's `C3Config`.
"""

from __future__ import annotations

import math
from dataclasses import replace

from nvc_pipe.errors import ConfigError
from nvc_pipe.rate import DEFAULT_QUALITY, Clip, Target, quality_bpp

from .payload import network_shapes
from .presets import DEFAULT_PRESET, PRESETS, Preset, total_steps, with_lambda, with_steps
from .steps import checkpoint_bytes_per_value

PAPER_PRESETS = ("c3-high", "c3-mid", "c3-low", "c3-mid-nocond", "c3-mid-learned")
FIXED = PAPER_PRESETS + ("c3-tiny",)  # keep their steps and patch layout unless sized to a target or --steps
# presets that lay out their own patches (whole-frame patches, or one frame per patch for all-intra): never re-tiled
OWN_LAYOUT = ("c3-intra", "c3-fast-cool", "c3-tiny-cool")
OPTIONS = ("steps", "time_limit", "epochs", "seed", "lambda")
PATCH_PIXELS = 640 * 360  # largest spatial patch
PATCH_FRAMES = 30
# the decoders a sized c3-fast encode chooses from, smallest first (the preset's own network comes last): one
# shared ARM over the nearest causal latents, and a narrower synthesis (docs/ratecontrol.md)
NETWORKS = (
    ("xs", dict(synthesis_widths=(4,), arm_widths=(2, 2), arm_per_grid=False, context_size=8)),
    ("s", dict(synthesis_widths=(12, 12), arm_widths=(2, 2), arm_per_grid=False, context_size=12)),
)
LADDER_PRESETS = ("c3-fast", "c3-fast-hq", "c3-fast-lq")
NET_SHARE = 0.25  # the network may take this share of a patch's payload
# coded size of a patch network: RECORD_BYTES per tensor (step exponent + Laplace scale) + bits per parameter
RECORD_BYTES = 2  # payload v5: exponent u8 + scale code u8
NET_BITS_PER_PARAM = 5.6
# λ model (measured on our CPU encodes, docs/ratecontrol.md): latent bpp at λ = 1e-3 falls with the clip's size
LATENT_BPP_AT_1E3 = 0.32  # … for a segment of REFERENCE_PIXELS
REFERENCE_PIXELS = 600_000
SIZE_EXPONENT = 0.22
BETA = 0.65
# the Cool-Chic-like decoder (COOL_MODEL: shared residual ARM with coarse context, learned upsampling): (steps per
# patch, latent bpp at λ 1e-3, β), each fitted on the encodes of the Bunny 256x144x24 curve at that step count
# (docs/ratecontrol.md: six at 300 steps, session 12; eight at 900, session 16). Longer training codes fewer bits at
# a given λ and its latents fall faster with λ; between the fits both move linearly in log steps, outside them the
# nearest fit holds.
COOL_FITS = ((300, 0.353, 0.47), (900, 0.251, 0.598))
LAMBDA_RANGE = (1e-6, 1.0)
MAX_LATENT_BPP = 1.6  # latents saturate (64x64x8, 1,410 steps: 1.7 bpp of latents at λ 8.8e-6, 300k asked → -16 %)
TOLERANCE = 0.07  # an encode this close to its budget is kept
MAX_CORRECTIONS = 2  # re-encodes of the first segment at most (the second along the slope the first two measured)
SLOPE_RANGE = (0.3, 1.5)  # bounds on a measured slope (noise between two close encodes)
MIN_STEPS = 20
# default quality: like HiNeRV's, more bits per pixel for small clips
BPP_AT_DEFAULT = 0.1
SMALL_CLIP_PIXELS = 2_000_000
SMALL_CLIP_MAX = 2.8  # at most 2.8x (0.28 bpp): the default stays under 0.3 bpp and within 3x of large clips
# clip-aware steps per patch: more for small patches (cheap), fewer for large ones
STEPS_AT_1M = 600
STEP_RANGE = (300, 2000)
# CPU seconds per pixel and optimisation step, one thread, the other core busy with another encode (training
# only; the weight quantization search is QUANTIZE_SECONDS_PER_PIXEL below). C3's own decoders: 1.1e-6 measured
# end to end in session 10, / 1.19 for the session-16 step speedup (benchmarks/c3_step.py; not re-measured end to
# end). The Cool-Chic-like decoder (session 16, Bunny 256x144x24): training 0.99e-6 at 300 steps, ~0.81e-6 at 900
SECONDS_PER_PIXEL_STEP = 0.92e-6
COOL_SECONDS_PER_PIXEL_STEP = 0.9e-6
# the weight quantization search (netquant.quantize_patch), once per encode: 73 s for the three 8x144x256 patches
# of that clip (c3-fast-cool; 41 s for one c3-fast 24x144x176 patch in session 12, 6.7e-5)
QUANTIZE_SECONDS_PER_PIXEL = 8.2e-5
# one sweep of the latent search (latent_rdo.py), Cool-Chic-like decoder, same box, quiet core (session 14):
# 1.65e-4 on the 256x144 image (c3-intra's and the image codec's patches), 2.6e-4 on a 128x72x8 video patch;
# a sweep costs about as much as 110 training steps of the image
SEARCH_SECONDS_PER_PIXEL_SWEEP = 1.7e-4


def _split(n: int, size: int) -> list[int]:
    parts = -(-n // size) if size > 0 else 1  # size 0: the whole axis (as in model.patch_boxes)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def patch_layout(clip: Clip) -> tuple[int, int, int]:
    """(frames, height, width) of a patch: the whole frame up to PATCH_PIXELS, else near-equal tiles."""
    h, w = clip.height, clip.width
    tiles = max(1, math.ceil(h * w / PATCH_PIXELS))
    rows = max(1, round(math.sqrt(tiles * h / w)))
    cols = max(1, math.ceil(tiles / rows))
    return min(clip.segment_frames, PATCH_FRAMES), -(-h // rows), -(-w // cols)


def patch_count(model, clip: Clip) -> int:
    t = len(_split(clip.segment_frames, model.patch_frames))
    return t * len(_split(clip.height, model.patch_height)) * len(_split(clip.width, model.patch_width))


def quality_to_bpp(quality: int, clip: Clip) -> float:
    small = min(SMALL_CLIP_MAX, max(1.0, (SMALL_CLIP_PIXELS / max(clip.pixels, 1)) ** 0.35))
    return quality_bpp(quality, BPP_AT_DEFAULT * small)


def patch_shape(model, clip: Clip) -> tuple[int, int, int]:
    """The largest patch of a segment (patches differ by at most one pixel per axis)."""
    return (max(_split(clip.segment_frames, model.patch_frames)), max(_split(clip.height, model.patch_height)),
            max(_split(clip.width, model.patch_width)))


def net_bytes(model, clip: Clip) -> float:
    """Predicted coded size of one patch network: its tensor records' headers and bits per parameter."""
    shapes = network_shapes(model, patch_shape(model, clip))
    return RECORD_BYTES * len(shapes) + NET_BITS_PER_PARAM * sum(math.prod(s) for _, s in shapes) / 8


def networks(model) -> list:
    """The decoders a sized encode may use, smallest first: NETWORKS, then the preset's own."""
    return [replace(model, **fields) for _, fields in NETWORKS] + [model]


def network_name(model) -> str:
    """`xs` / `s` for a NETWORKS decoder, else "preset" (the preset's own)."""
    return next((name for name, fields in NETWORKS if all(getattr(model, k) == v for k, v in fields.items())),
                "preset")


def choose_network(model, clip: Clip, payload_bytes: float):
    """The largest decoder whose predicted network is at most NET_SHARE of a patch's payload (else the smallest)."""
    options = networks(model)
    patches = patch_count(model, clip)
    fits = [m for m in options if net_bytes(m, clip) <= NET_SHARE * payload_bytes / patches]
    return fits[-1] if fits else options[0]


def is_cool(model) -> bool:
    """The Cool-Chic-like decoder family (presets.COOL_MODEL: shared residual ARM with coarse context)."""
    return model.arm_residual and model.coarse_context > 0


def lambda_model(model, steps: int | None = None) -> tuple[float, float]:
    """(latent bpp at λ 1e-3 for a REFERENCE_PIXELS segment, slope β) of this decoder's family; the Cool-Chic-like
    one's depends on the optimisation steps per patch (None: its first fit's)."""
    if not is_cool(model):
        return LATENT_BPP_AT_1E3, BETA
    (s0, b0, beta0), (s1, b1, beta1) = COOL_FITS[0], COOL_FITS[-1]
    f = 0.0 if steps is None else min(1.0, max(0.0, math.log(steps / s0) / math.log(s1 / s0)))
    return b0 * (b1 / b0) ** f, beta0 + (beta1 - beta0) * f


def pixel_step_seconds(model) -> float:
    """CPU seconds per pixel and step of this decoder's family (one thread, quiet core)."""
    return COOL_SECONDS_PER_PIXEL_STEP if is_cool(model) else SECONDS_PER_PIXEL_STEP


def predicted_lambda(payload_bytes: float, model, clip: Clip, steps: int | None = None) -> float | None:
    """λ for a segment payload of `payload_bytes` after `steps` optimisation steps per patch; None when the
    networks alone are over it."""
    latent_bits = 8 * (payload_bytes - patch_count(model, clip) * net_bytes(model, clip))
    if latent_bits <= 0:
        return None
    bpp = latent_bits / clip.segment_pixels
    b_ref, beta = lambda_model(model, steps)
    at_1e3 = b_ref * (clip.segment_pixels / REFERENCE_PIXELS) ** -SIZE_EXPONENT
    return 1e-3 * (at_1e3 / bpp) ** (1 / beta)


def smallest_bpp(model, clip: Clip) -> float:
    """The lowest stream bpp c3 is asked for: networks and headers plus latents worth half the networks."""
    return 8 * (1.5 * patch_count(model, clip) * net_bytes(model, clip) + clip.overhead_bytes) / clip.pixels


def default_steps(model, clip: Clip) -> int:
    pixels = model.patch_frames * model.patch_height * model.patch_width
    steps = round(STEPS_AT_1M * (1e6 / max(pixels, 1)) ** 0.25)
    return max(STEP_RANGE[0], min(STEP_RANGE[1], steps))


def configure(preset: str | None, target: Target | None, overrides: dict, clip: Clip) -> Preset:
    name = preset or DEFAULT_PRESET
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r} for c3 (available: {', '.join(PRESETS)})")
    ov = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(ov) - set(OPTIONS))
    if unknown:
        raise ConfigError(f"option(s) not used by c3: {', '.join(unknown)} (c3 has no pruning, QAT or batches)")
    for key, value in ov.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 and key != "seed":
            raise ConfigError(f"{key} must be a number > 0, got {value!r}")
    if "steps" in ov and "epochs" in ov:
        raise ConfigError("give --steps or --epochs, not both")
    if "lambda" in ov and target is not None:
        raise ConfigError("give --lambda or a rate target, not both")
    base = PRESETS[name]
    sized = "lambda" not in ov and (target is not None or preset is None)
    cfg = base
    if name not in OWN_LAYOUT and (name not in FIXED or sized):
        pt, ph, pw = patch_layout(clip)
        cfg = replace(cfg, model=replace(cfg.model, patch_frames=pt, patch_height=ph, patch_width=pw))
    if "epochs" in ov:
        cfg = replace(cfg, train=replace(cfg.train, epochs=int(ov["epochs"])))
    elif "steps" in ov or name not in FIXED + OWN_LAYOUT:
        cfg = with_steps(cfg, int(ov.get("steps") or default_steps(cfg.model, clip)))
    if "seed" in ov:
        cfg = replace(cfg, train=replace(cfg.train, seed=int(ov["seed"])))
    if "lambda" in ov:
        cfg = with_lambda(cfg, float(ov["lambda"]))
    if ov.get("time_limit"):  # before sizing: the λ model depends on the steps
        per_step = seconds_per_step(cfg, clip)
        segments = max(1, math.ceil(clip.frames / clip.segment_frames))
        fit = int((float(ov["time_limit"]) / segments - QUANTIZE_SECONDS_PER_PIXEL * clip.segment_pixels) / per_step)
        if fit < MIN_STEPS:
            raise ConfigError(f"--time-limit {ov['time_limit']:g}s leaves fewer than {MIN_STEPS} steps "
                              f"per patch ({per_step:.2f} s a step on this device)")
        if fit < total_steps(cfg):
            cfg = with_steps(cfg, fit)
    bpp = None
    if sized:
        target = target or Target("quality", DEFAULT_QUALITY)
        bpp = quality_to_bpp(int(target.value), clip) if target.kind == "quality" else clip.bpp(target)
        default = target.kind == "quality" and preset is None  # the default never asks below the smallest stream
        if name in LADDER_PRESETS:
            if default:
                bpp = max(bpp, smallest_bpp(networks(cfg.model)[0], clip))
            cfg = replace(cfg, model=choose_network(cfg.model, clip, clip.payload_bytes(bpp)))
        patches = patch_count(cfg.model, clip)
        least = smallest_bpp(cfg.model, clip)
        if default:
            bpp = max(bpp, least)
        payload = clip.payload_bytes(bpp)
        lam = predicted_lambda(payload, cfg.model, clip, total_steps(cfg))
        if bpp < least or lam is None or lam > LAMBDA_RANGE[1]:
            raise ConfigError(f"the target is below c3's smallest stream for {clip.width}x{clip.height}x"
                              f"{clip.segment_frames}: its {patches} patch network(s) and headers need about "
                              f"{least:.3g} bpp, the target gives {bpp:.3g} (ask for a higher rate)")
        latent_bpp = 8 * (payload - patches * net_bytes(cfg.model, clip)) / clip.segment_pixels
        if lam < LAMBDA_RANGE[0] or latent_bpp > MAX_LATENT_BPP:
            raise ConfigError(f"the target ({bpp:.3g} bpp) is above what c3 codes for this clip (ask for a lower "
                              "rate)")
        cfg = with_lambda(cfg, lam)
    return replace(cfg, aim_bpp=bpp)


def aimed_bpp(cfg: Preset) -> float | None:
    return cfg.aim_bpp


def seconds_per_step(cfg: Preset, clip: Clip) -> float:
    """Per patch step, all patches of a segment together (CPU estimate from the measured constant)."""
    return pixel_step_seconds(cfg.model) * clip.segment_pixels


def plan(cfg: Preset, clip: Clip) -> dict:
    m = cfg.model
    patches = patch_count(m, clip)
    segments = max(1, math.ceil(clip.frames / clip.segment_frames))
    steps = total_steps(cfg)
    latents = round(clip.segment_pixels * sum(8.0 ** -k for k in range(m.num_grids)))
    params = sum(math.prod(s) for _, s in network_shapes(m, patch_shape(m, clip)))
    sweeps = cfg.c3.final_rdo_passes + cfg.c3.latent_rdo_passes
    seconds = (pixel_step_seconds(m) * steps + QUANTIZE_SECONDS_PER_PIXEL + SEARCH_SECONDS_PER_PIXEL_SWEEP * sweeps) \
        * clip.segment_pixels * segments
    return {"parameters": None,  # per-segment parameters are HiNeRV's; diskcheck sizes C3 by its latents
            "network_parameters": params * patches * segments, "latents": latents * segments,
            "patches": patches * segments,
            "steps": steps * segments, "estimated_s": round(seconds, 1) if clip.device == "cpu" else None,
            "stream_bpp": aimed_bpp(cfg), "rd_lambda": cfg.c3.rd_lambda,
            "checkpoint_bytes_per_value": checkpoint_bytes_per_value(cfg.c3.warmup_candidates),
            "summary": f"C3 {patches} patch(es) of {m.patch_frames}x{m.patch_height}x{m.patch_width} per segment, "
                       f"decoder {network_name(m)} ({params:,} network parameters a patch), {latents:,} latents, "
                       f"λ {cfg.c3.rd_lambda:.3g}, {steps} steps per patch"
                       + (f" (up to {MAX_CORRECTIONS} re-encodes at a corrected λ while one misses by > 7 %)"
                          if aimed_bpp(cfg) is not None else "")}


def correct(cfg: Preset, budget_bytes: int, coded_bytes: int, clip: Clip) -> tuple[Preset, dict] | None:
    """λ for another encode of the segment from the real coded size, or None when within TOLERANCE (or after
    MAX_CORRECTIONS). The first correction moves λ along the model's slope β; later ones along the slope the
    last two encodes measured (a secant in log λ, log latent bytes), since the real slope varies 0.4–1.05 from
    clip to clip, with the step in log λ no longer than the last one: when the two encodes bracket the budget
    that keeps λ between theirs, and a flat, noisy pair cannot throw it far (docs/ratecontrol.md)."""
    if abs(coded_bytes / budget_bytes - 1) <= TOLERANCE or len(cfg.tried) >= MAX_CORRECTIONS:
        return None
    net = patch_count(cfg.model, clip) * net_bytes(cfg.model, clip)

    def latent(size: float) -> float:
        return max(size - net, 0.1 * size)

    tried = (*cfg.tried, (cfg.c3.rd_lambda, coded_bytes))
    lam = cfg.c3.rd_lambda
    slope = lambda_model(cfg.model, total_steps(cfg))[1]
    if len(tried) >= 2:
        (lam_a, bytes_a), (lam_b, bytes_b) = tried[-2:]
        if lam_a != lam_b and bytes_a != bytes_b:
            slope = math.log(latent(bytes_a) / latent(bytes_b)) / math.log(lam_b / lam_a)
            slope = min(SLOPE_RANGE[1], max(SLOPE_RANGE[0], slope))
    step = (latent(coded_bytes) / latent(budget_bytes)) ** (1 / slope)
    if len(tried) >= 2:  # never a longer step in log λ than the last one (noise makes measured slopes unreliable)
        last = abs(math.log(tried[-1][0] / tried[-2][0]))
        step = math.exp(max(-last, min(last, math.log(step))))
    lam = lam * step
    lam = min(LAMBDA_RANGE[1], max(LAMBDA_RANGE[0], lam))
    return (replace(with_lambda(cfg, lam), tried=tried),
            {"from_lambda": cfg.c3.rd_lambda, "from_bytes": coded_bytes, "slope": round(slope, 3), "rd_lambda": lam})


def settings(cfg: Preset) -> dict:
    from dataclasses import asdict

    return {"model": cfg.model.to_dict(), "train": asdict(cfg.train), "c3": asdict(cfg.c3),
            "stream_bpp": aimed_bpp(cfg)}


def preset_summary(name: str) -> str:
    p = PRESETS[name]
    length = f"{p.train.epochs}+{p.c3.stage2_steps} steps" if name in FIXED else "steps from the clip"
    return f"{length}, λ {p.c3.rd_lambda:g} (or sized to a rate target)  {p.description}"
