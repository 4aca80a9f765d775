"""HiNeRV rate control: a rate target becomes a network size, a clip becomes a step budget, and two cheap stages
steer the coded size with the pruning ratio.

    target ─▶ stream bpp ─▶ payload bytes of a segment ─▶ parameters (bytes-per-parameter model, below)
           ─▶ widths and grid channels (the largest unpruned network of the preset's family that fits)
    after overfit:  `aim` stage   — code the trained network (quantize + entropy only); only if it is over the
                                    budget, prune the smallest ratio whose payload meets it
    after entropy:  `trim` stage  — if the final payload is still over the budget, prune the final network a
                                    little more (no training) and code it again

The bytes-per-parameter model (`BYTES_PER_TENSOR`, `BITS_PER_PARAMETER`) was measured on our CPU encodes of
unpruned networks; see docs/ratecontrol.md. A sized network is not pruned by plan: at these short schedules
pruning 15 % saves 1–6 % of the bytes and costs several dB (it made a 3× larger budget code 4 dB worse), so the
rate is spent on width and the pruning ratio only absorbs the model's error. A quality target maps to a bpp
(`quality_to_bpp`): every 6 steps halve the rate, with more bits per pixel for small clips whose side information
(sequence header, per-tensor scales) weighs more.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import replace

import torch

from nvc_pipe.bitstream.fields import ByteWriter
from nvc_pipe.bitstream.tensors import write_tensors
from nvc_pipe.errors import ConfigError
from nvc_pipe.pipeline import Work
from nvc_pipe.rate import DEFAULT_QUALITY, Clip, Target, quality_bpp
from nvc_pipe.stages.overfit import TrainConfig, loss_fn
from nvc_pipe.stages.prune import apply_masks, compute_masks
from nvc_pipe.stages.quantize import records_from_model

from .configs import HiNeRVConfig
from .model import prunable_parameters

# Payload bytes ≈ BYTES_PER_TENSOR · tensors + BITS_PER_PARAMETER / 8 · parameters (unpruned, 6-bit,
# constriction coded, small tensors without a histogram): fitted (least relative error) on 8 trained networks
# from the smallest to 64 wide at 64x64x8 and 176x144x24, 150 steps, max error 3.0 %
# (benchmarks/ratecontrol_calibrate.py, docs/ratecontrol.md).
BYTES_PER_TENSOR = 15.5
BITS_PER_PARAMETER = 5.91
PRUNE_RANGE = (0.0, 0.5)  # the `aim` stage's lever (fraction of all parameters)
PRUNE_AIM = 0.0  # the network is sized so the budget is met at this ratio (unpruned; see the docstring)
SIZE_MARGIN = 0.97  # the network is sized for this share of the budget: an overshoot costs pruning (dB)
AIM_MARGIN = 0.98  # aim a little under the budget: QAT moves the coded size by a percent or two
TRIM_MAX = 0.1  # the `trim` stage prunes at most this much more of the final network (no training after it)
MIN_CHANNELS, MAX_CHANNELS = 8, 512  # narrower networks fail to train (12 dB at 4 wide on 128x72x16)
# weight_coding "rd": at a fixed λ the rate is mostly the network's. Measured on the 256x144x24 Bunny crop (720 steps,
# λ fixed): fast-s at λ 0.003 / 0.009 / 0.03 coded 0.273 / 0.246 / 0.202 bpp (bytes ∝ λ^−0.14), 6.2 bits per
# parameter at λ 0.009 (fast: 5.3). A steered encode starts from the λ this model gives for its budget
# (docs/ratecontrol.md); the rd stages then steer it.
RD_LAMBDA_REF, RD_BITS_AT_REF, RD_RATE_ELASTICITY = 0.009, 5.7, 0.14
# ... but never from above RD_LAMBDA_START[1]: a large λ in the first (warm-up) steps crushes the untrained network
# for good (fast-s aimed at 0.18 bpp from λ 0.64: 29.19 dB; from λ 0.03 at 0.2 bpp: 31.06 dB; steering raises λ).
RD_LAMBDA_START = (1e-3, 0.05)
# With a target an rd network is sized for this many times the budget (by the 6-bit size model), so λ lands near
# 0.03: at 0.2 bpp on that crop, fast-s steered from λ 0.03 gave 31.06 dB; the network sized to the budget itself
# (28k parameters, λ 0.005 → 0.007) 30.57 dB at 0.213 bpp.
RD_OVERSIZE = 1.25
# Default quality: this bpp on large clips, rising to at most 2.8x on tiny ones (side information weighs more).
BPP_AT_DEFAULT = 0.1
SMALL_CLIP_PIXELS = 2_000_000
SMALL_CLIP_MAX = 2.8  # at most 2.8x (0.28 bpp): the default stays under 0.3 bpp and within 3x of large clips
# Clip-aware training length (whole-frame batches): ~30 steps per frame, fewer for large frames.
STEPS_PER_FRAME = 30
STEP_RANGE = (400, 3000)
REFERENCE_FRAME_PIXELS = 256 * 144
# Stage split of a step budget, from the `fast` recipe (40 + 6 + 3 epochs, warm-up 10 % of the main stage).
SPLIT = {"epochs": 40, "prune_epochs": 6, "qat_epochs": 3}
# A sized network keeps one prune epoch for the rare case `aim` prunes; unused, it goes to QAT (see `aim`).
SIZED_SPLIT = {"epochs": 45, "prune_epochs": 1, "qat_epochs": 3}
# weight_coding "rd": noise for the main + prune epochs, then 2/15 of the steps with hard rounding
# (straight-through, rd.ste). On the 256x144x24 Bunny crop, 4 of 60 epochs left up to 0.45 dB of the rounding
# loss unrecovered; 15 recovered it all but cost ~0.4 dB at equal rate (noise epochs train more; issue #18).
RD_SPLIT = {"epochs": 51, "prune_epochs": 1, "qat_epochs": 8}


def quality_to_bpp(quality: int, clip: Clip) -> float:
    small = min(SMALL_CLIP_MAX, max(1.0, (SMALL_CLIP_PIXELS / max(clip.pixels, 1)) ** 0.35))
    return quality_bpp(quality, BPP_AT_DEFAULT * small)


def stream_bpp(target: Target | None, clip: Clip) -> float:
    target = target or Target("quality", DEFAULT_QUALITY)
    if target.kind == "quality":
        return quality_to_bpp(int(target.value), clip)
    return clip.bpp(target)


def count_parameters(model_cfg: HiNeRVConfig, frames: int, height: int, width: int) -> tuple[int, int]:
    """Exact (parameters, tensors) of the segment network (built on the meta device: no memory, no time)."""
    from .codec import coded_frame_size, segment_model

    hc, wc = coded_frame_size(height, width, model_cfg)
    with torch.device("meta"):
        params = list(segment_model(model_cfg, frames, hc, wc).parameters())
    return sum(p.numel() for p in params), len(params)


def predicted_bytes(model_cfg: HiNeRVConfig, frames: int, height: int, width: int) -> float:
    params, tensors = count_parameters(model_cfg, frames, height, width)
    return BYTES_PER_TENSOR * tensors + BITS_PER_PARAMETER / 8 * params


def family(template: HiNeRVConfig, channels: int, fewer_grid_channels: int = 0) -> HiNeRVConfig:
    """The preset's architecture at another width; grid channels follow the width (fast: 48 → 2, fast-l: 64 → 4),
    less `fewer_grid_channels` (the grids are most of a network on large frames: each grid channel is a step)."""
    ratio = channels / template.channels
    return replace(template, channels=channels,
                   base_grid_channels=max(1, round(template.base_grid_channels * ratio) - fewer_grid_channels),
                   local_grid_channels=max(1, round(template.local_grid_channels * ratio) - fewer_grid_channels))


def _small_variants(template: HiNeRVConfig) -> list[HiNeRVConfig]:
    """Ever smaller relatives for budgets below the family's narrowest network: one block per stage, one level,
    and last 1x1 block convolutions (on 64x64x8 the 3x3 ones are a quarter of the smallest network's weights)."""
    one = tuple(1 for _ in template.depths)
    least = replace(template, depths=one, local_grid_levels=1, base_grid_levels=1, base_grid_frames=1,
                    exps=tuple(1.0 for _ in template.exps))
    return [replace(template, depths=one),
            replace(template, depths=one, local_grid_levels=1, base_grid_levels=1),
            least, replace(least, kernel_size=1)]


def smallest_network(template: HiNeRVConfig) -> HiNeRVConfig:
    return _small_variants(family(template, max(MIN_CHANNELS, 1 << (len(template.scales) - 1))))[-1]


def smallest_bpp(template: HiNeRVConfig, clip: Clip) -> float:
    """Stream bpp of the family's smallest network on this clip (predicted, headers included, 3 % margin)."""
    need = predicted_bytes(smallest_network(template), clip.segment_frames, clip.height, clip.width)
    return 1.03 * 8 * (need * math.ceil(clip.frames / clip.segment_frames) + clip.overhead_bytes) / clip.pixels


def size_network(template: HiNeRVConfig, clip: Clip, payload_bytes: int) -> HiNeRVConfig:
    """The widest network of the family whose predicted payload (unpruned) fits SIZE_MARGIN · `payload_bytes`.

    ConfigError when even the smallest network is predicted over the budget, or the widest one under it by more
    than 10 % (the pruning lever cannot add bytes beyond the unpruned network).
    """
    frames, h, w = clip.segment_frames, clip.height, clip.width
    budget = SIZE_MARGIN * payload_bytes
    low = max(MIN_CHANNELS, 1 << (len(template.scales) - 1))

    def fits(cfg: HiNeRVConfig) -> bool:
        return predicted_bytes(cfg, frames, h, w) <= budget

    if not fits(family(template, low)):
        for small in _small_variants(family(template, low)):
            if fits(small):
                return small
        smallest = smallest_network(template)
        need = predicted_bytes(smallest, frames, h, w) + clip.overhead_bytes
        have = budget + clip.overhead_bytes
        raise ConfigError(f"the target is below hinerv's smallest network for {w}x{h}x{frames}: it needs about "
                          f"{8 * need / (frames * w * h):.3g} bpp, the target gives {8 * have / (frames * w * h):.3g}"
                          " (ask for a higher rate)")
    hi = MAX_CHANNELS
    if predicted_bytes(family(template, hi), frames, h, w) < 0.9 * budget:
        big = predicted_bytes(family(template, hi), frames, h, w) + clip.overhead_bytes
        raise ConfigError(f"the target is above hinerv's largest network for {w}x{h}x{frames}: it reaches about "
                          f"{8 * big / (frames * w * h):.3g} bpp (ask for a lower rate)")
    if fits(family(template, hi)):
        return family(template, hi)

    def widest(fewer: int) -> HiNeRVConfig:
        lo, top = low, hi
        while top - lo > 1:  # parameters grow monotonically with the width
            mid = (lo + top) // 2
            lo, top = (mid, top) if fits(family(template, mid, fewer)) else (lo, mid)
        return family(template, lo, fewer)

    # a grid channel less fills the gap where the scaled grid channels step up (320x136: 35 wide with 1 grid
    # channel coded 12 % under its budget, 36 wide with 2 was over it)
    best = max((widest(0), widest(1)), key=lambda c: predicted_bytes(c, frames, h, w))
    # one channel wider with narrower MLPs fills the ~2/C step between widths (19 → 20 wide: +11 % parameters)
    shrink = [round(0.95 - 0.05 * i, 2) for i in range(10)]  # MLP expansion × 0.95 … 0.5
    wider = [replace(c, exps=tuple(round(e * f, 3) if e > 1 else e for e in c.exps))
             for c in (family(template, best.channels + 1, fewer) for fewer in (0, 1)) for f in shrink]
    return max([best] + [c for c in wider if fits(c)], key=lambda c: predicted_bytes(c, frames, h, w))


def rd_lambda(model_cfg: HiNeRVConfig, clip: Clip, payload_bytes: int) -> float:
    """weight_coding "rd": the λ a segment's training starts from for this payload (rd.py then steers it)."""
    params, _ = count_parameters(model_cfg, clip.segment_frames, clip.height, clip.width)
    natural = params * RD_BITS_AT_REF / 8  # the payload at RD_LAMBDA_REF
    lmbda = RD_LAMBDA_REF * (natural / max(payload_bytes, 1)) ** (1 / RD_RATE_ELASTICITY)
    return min(max(lmbda, RD_LAMBDA_START[0]), RD_LAMBDA_START[1])


def default_steps(clip: Clip) -> int:
    """Optimisation steps of one segment (all stages) from its frames and frame size."""
    scale = min(1.0, (REFERENCE_FRAME_PIXELS / (clip.width * clip.height)) ** 0.5)
    steps = round(STEPS_PER_FRAME * clip.segment_frames * scale)
    return max(STEP_RANGE[0], min(STEP_RANGE[1], steps))


def steps_per_epoch(train: TrainConfig, clip: Clip, factor: int) -> int:
    """The shared loop's steps per epoch for a segment of this clip (whole frames or patches)."""
    frames = clip.segment_frames
    if train.patch_size is None:
        items = frames
    else:
        hc, wc = -(-clip.height // factor) * factor, -(-clip.width // factor) * factor
        ph, pw = min(train.patch_size[0], hc), min(train.patch_size[1], wc)
        items = frames * math.ceil(hc / ph) * math.ceil(wc / pw)
    return max(1, items // min(train.batch_size, items))


def total_steps(train: TrainConfig, clip: Clip, factor: int) -> int:
    return (train.epochs + train.prune_epochs + train.qat_epochs) * steps_per_epoch(train, clip, factor)


def split_for(model_cfg: HiNeRVConfig, sized: bool) -> dict:
    """The stage split of a recipe stretched to a step budget: rd, sized 6-bit or the fast recipe's."""
    if model_cfg.weight_coding == "rd":
        return RD_SPLIT
    return SIZED_SPLIT if sized else SPLIT


def schedule_for_steps(train: TrainConfig, steps: int, clip: Clip, factor: int, split: dict = SPLIT) -> TrainConfig:
    """The recipe stretched to `steps` optimisation steps in all, split like `split` (the `fast` recipe's)."""
    spe = steps_per_epoch(train, clip, factor)
    epochs = max(1, round(steps / spe))
    whole = sum(split.values())
    prune = max(1, round(epochs * split["prune_epochs"] / whole))
    qat = max(1, round(epochs * split["qat_epochs"] / whole))
    main = max(1, epochs - prune - qat)
    return replace(train, epochs=main, warmup_epochs=max(0, round(main / 10)), prune_epochs=prune, qat_epochs=qat)


_STEP_TIMES: dict = {}


PROXY_SIDE = 128  # time estimates train on frames of at most this many pixels a side, then scale by area


def seconds_per_step(model_cfg: HiNeRVConfig, train: TrainConfig, clip: Clip, device: torch.device) -> float:
    """Measured on this device: the median of three training steps of this network (cached).

    Large frames are timed on a proxy of the same widths and at most PROXY_SIDE pixels a side (grids sized to it),
    scaled by the pixel ratio: the cost of a step is about linear in pixels, and the estimate stays cheap.
    """
    from .codec import coded_frame_size, segment_model

    key = (model_cfg, train.batch_size, train.patch_size, clip.segment_frames, clip.height, clip.width, str(device))
    if key in _STEP_TIMES:
        return _STEP_TIMES[key]
    f = model_cfg.factor
    hc, wc = coded_frame_size(clip.height, clip.width, model_cfg)
    if train.patch_size is not None:
        hc, wc = min(hc, -(-train.patch_size[0] // f) * f), min(wc, -(-train.patch_size[1] // f) * f)
    side = max(f, PROXY_SIDE // f * f)
    ph, pw = min(hc, side), min(wc, side)
    frames = min(clip.segment_frames, 8)
    torch.manual_seed(0)
    model = segment_model(model_cfg, frames, ph, pw).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = min(train.batch_size, frames)
    t = torch.arange(batch, device=device) % frames
    target = torch.rand(batch, ph, pw, 3, device=device)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        loss = loss_fn(model(t), target, train)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    real_batch = train.batch_size if train.patch_size is not None else min(train.batch_size, clip.segment_frames)
    scale = (hc * wc * real_batch) / (ph * pw * batch)
    _STEP_TIMES[key] = sorted(times)[1] * scale
    return _STEP_TIMES[key]


# ---- stages -----------------------------------------------------------------------------------------------------

def coded_bytes(model: torch.nn.Module, masks: dict, bits: int) -> int:
    w = ByteWriter()
    write_tensors(records_from_model(model, masks, bits), w)
    return len(w.getvalue())


def _bytes_at(model: torch.nn.Module, ratio: float, bits: int, base_masks: dict | None = None) -> tuple[int, dict]:
    trial = copy.deepcopy(model)
    if base_masks:
        apply_masks(trial, base_masks)
    masks = compute_masks(trial, prunable_parameters(trial), ratio)
    if base_masks:
        masks = {n: m & base_masks[n] if n in base_masks else m for n, m in masks.items()}
    apply_masks(trial, masks)
    return coded_bytes(trial, masks, bits), masks


def _search_ratio(model: torch.nn.Module, budget: int, bits: int, lo: float, hi: float,
                  base_masks: dict | None = None, iters: int = 10) -> tuple[float, int, list]:
    """The smallest pruning ratio in [lo, hi] whose coded payload is <= budget (bytes fall as the ratio rises)."""
    probes = []
    size_lo, _ = _bytes_at(model, lo, bits, base_masks)
    probes.append((lo, size_lo))
    if size_lo <= budget:
        return lo, size_lo, probes
    size_hi, _ = _bytes_at(model, hi, bits, base_masks)
    probes.append((hi, size_hi))
    if size_hi > budget:
        return hi, size_hi, probes
    for _ in range(iters):
        mid = (lo + hi) / 2
        size, _ = _bytes_at(model, mid, bits, base_masks)
        probes.append((mid, size))
        lo, hi, size_hi = (mid, hi, size_hi) if size > budget else (lo, mid, size)
        if hi - lo < 0.004:
            break
    return hi, size_hi, probes


def _aimed(train, ratio: float):
    if ratio > 0:
        return replace(train, prune_ratio=ratio)
    # nothing to prune: the prune stage is skipped, its epochs fine-tune in QAT instead
    return replace(train, prune_ratio=0.0, qat_epochs=train.qat_epochs + train.prune_epochs, prune_epochs=0)


def aim(work: Work) -> Work:
    """After overfit: choose the pruning ratio whose coded payload meets the segment's budget.

    A segment resumed after its prune stage no longer has the trained, unpruned network this decision is made
    on (the pipeline loads the saved state after this stage): its report, saved with that state, holds the ratio
    chosen then (`ratio`), which is applied again."""
    if work.budget_bytes is None or work.model is None:
        return work
    decided = work.report.get("rate", {}).get("ratio")
    if decided is not None:
        work.config = replace(work.config, train=_aimed(work.config.train, decided))
        return work
    train = work.config.train
    aimed = int(AIM_MARGIN * work.budget_bytes)
    ratio, size, probes = _search_ratio(work.model, aimed, train.bits, *PRUNE_RANGE)
    work.config = replace(work.config, train=_aimed(train, ratio))
    work.report["rate"] = {"budget_bytes": work.budget_bytes, "prune_ratio": round(ratio, 4), "ratio": ratio,
                           "aimed_bytes": size, "probes": [[round(r, 4), b] for r, b in probes]}
    if size > work.budget_bytes:
        work.report.setdefault("warnings", []).append(
            f"rate: the trained network codes {size} bytes even {ratio:.0%} pruned (budget {work.budget_bytes})")
    elif ratio == PRUNE_RANGE[0] and size < 0.9 * work.budget_bytes:
        work.report.setdefault("warnings", []).append(
            f"rate: the trained network codes only {size} bytes unpruned (budget {work.budget_bytes})")
    return work


def trim(work: Work) -> Work:
    """After entropy coding: if the payload is over budget, prune the final network further and code it again."""
    if work.budget_bytes is None or len(work.payload) <= work.budget_bytes:
        return work
    from nvc_pipe.stages import entropy_code, quantize

    train = work.config.train
    ratio, _, probes = _search_ratio(work.model, work.budget_bytes, train.bits, train.prune_ratio,
                                     train.prune_ratio + TRIM_MAX, base_masks=work.masks)
    before = len(work.payload)
    _, masks = _bytes_at(work.model, ratio, train.bits, work.masks)
    apply_masks(work.model, masks)
    work.masks = masks
    work = entropy_code.run(quantize.run(work))
    work.report.setdefault("rate", {})["trim"] = {"from_bytes": before, "to_bytes": len(work.payload),
                                                  "prune_ratio": round(ratio, 4)}
    return work
