"""HiNeRV as an nvc-pipe video codec plugin: presets, configuring an encode, the encode pipeline, segment decoding.

    segment frames ─▶ patch ─▶ init ─▶ overfit ─▶ aim ─▶ prune ─▶ qat ─▶ quantize ─▶ entropy_code ─▶ trim ─▶ AU
    AU payload ─▶ tensor records ─▶ dequantize ─▶ HiNeRV(config, T, Hc, Wc) ─▶ frames (cropped to H×W)

`configure` turns a preset, a rate target and the clip into a `Preset` (network sized by `ratecontrol`, training
length in steps from the clip); `aim`/`trim` steer the coded size with the pruning ratio (ratecontrol.py).
The sequence header carries the architecture (`HiNeRVConfig.to_dict()`); the payload is the tensor records of
`nvc_pipe.bitstream.tensors`. One network per segment; its temporal grids are sized by the segment length.

The `rd-*` presets (`weight_coding = "rd"`, payload version 2) train for rate and distortion instead (rd.py):

    segment frames ─▶ patch ─▶ init ─▶ rd_train (noise) ─▶ rd_ste (rounding) ─▶ rd_code ─▶ AU (rd records)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Iterator

import torch

from nvc_pipe.bitstream.fields import ByteReader
from nvc_pipe.bitstream.rdweights import read_rd_tensors
from nvc_pipe.bitstream.tensors import read_tensors
from nvc_pipe.errors import BitstreamError, ConfigError
from nvc_pipe.pipeline import Stage, Work
from nvc_pipe.stages import entropy_code, overfit, patch, prune, qat, quantize
from nvc_pipe.rate import Clip, Target
from nvc_pipe.stages.overfit import TrainConfig

from . import rd, ratecontrol
from .configs import PRESETS as MODEL_PRESETS
from .configs import HiNeRVConfig
from .model import build_model, prunable_parameters

MAX_DECODE_PARAMETERS = 200_000_000
# A coded parameter costs >= ~2 bits in any real stream (6-bit values, 15 % pruned); 64 per payload byte leaves a
# 250x margin and stops a tiny crafted payload from making the decoder allocate a huge network.
PARAMETERS_PER_PAYLOAD_BYTE = 64
FREE_PARAMETERS = 1_000_000


@dataclass(frozen=True)
class Preset:
    """A named operating point: architecture + training recipe."""

    model: HiNeRVConfig
    train: TrainConfig
    description: str = ""
    stream_bpp: float | None = None  # the rate aimed at (None: the preset's fixed network)
    lmbda: float = 0.0  # weight_coding "rd": the rate weight (with a target: where its control starts)


_BUNNY = TrainConfig(compile="cuda")  # hinerv.md §2: 300+60+30 epochs, 80×80 patches, batch 144; compiled on GPUs
_UVG = replace(_BUNNY, patch_size=(120, 120))
# CPU default, sized for `make demo` (48 frames of 256x144 in about 3 minutes on 2 cores): whole frames,
# 2 per step, a higher lr than the paper since there are ~25x fewer updates.
_FAST = TrainConfig(epochs=40, warmup_epochs=4, lr=1e-2, warmup_lr=1e-4, min_lr=1e-4, batch_size=2,
                    patch_size=None, prune_epochs=6, qat_epochs=3, eval_every=0)
_TINY = replace(_FAST, epochs=4, warmup_epochs=1, prune_epochs=1, qat_epochs=1, batch_size=2)

def _rd(model: HiNeRVConfig) -> HiNeRVConfig:
    return replace(model, weight_coding="rd")


PRESETS: dict[str, Preset] = {
    "bunny-xxs": Preset(MODEL_PRESETS["bunny-xxs"], _BUNNY, "official Bunny XXS, 0.77M params at 1280x720x132"),
    "bunny-xs": Preset(MODEL_PRESETS["bunny-xs"], _BUNNY, "official Bunny XS, 1.59M params at 1280x720x132"),
    "bunny-s": Preset(MODEL_PRESETS["bunny-s"], _BUNNY, "official Bunny S, 3.25M params at 1280x720x132"),
    "uvg-s": Preset(MODEL_PRESETS["uvg-s"], _UVG, "official UVG S, 3.19M params at 1920x1080x600"),
    "uvg-m": Preset(MODEL_PRESETS["uvg-m"], _UVG, "official UVG M, 6.49M params at 1920x1080x600"),
    "uvg-l": Preset(MODEL_PRESETS["uvg-l"], _UVG, "official UVG L, 12.8M params at 1920x1080x600"),
    "fast-s": Preset(MODEL_PRESETS["fast-s"], _FAST, "smaller CPU model (lower rate)"),
    "fast": Preset(MODEL_PRESETS["fast"], _FAST, "small CPU model, whole-frame batches (default)"),
    "fast-l": Preset(MODEL_PRESETS["fast-l"], _FAST, "larger CPU model (higher rate)"),
    "tiny": Preset(MODEL_PRESETS["tiny"], _TINY, "test-size model, a few epochs"),
    # Rate–distortion weight coding (rd.py): the fast recipe's steps, a fixed λ each (a λ ladder ×3 apart on the
    # fast-s/fast/fast-l networks); a rate target steers λ instead (docs/ratecontrol.md).
    "rd-s": Preset(_rd(MODEL_PRESETS["fast-s"]), _FAST, "fast-s network, weights coded for RD at λ 0.1", lmbda=0.1),
    "rd": Preset(_rd(MODEL_PRESETS["fast"]), _FAST, "fast network, weights coded for RD at λ 0.03", lmbda=0.03),
    "rd-l": Preset(_rd(MODEL_PRESETS["fast-l"]), _FAST, "fast-l network, weights coded for RD at λ 0.01",
                   lmbda=0.01),
    "rd-tiny": Preset(_rd(MODEL_PRESETS["tiny"]), _TINY, "test-size model, weights coded for RD (fixed λ)",
                      lmbda=0.01),
}


PAPER_PRESETS = ("bunny-xxs", "bunny-xs", "bunny-s", "uvg-s", "uvg-m", "uvg-l")
FIXED_LENGTH = PAPER_PRESETS + ("tiny", "rd-tiny")  # recipes that keep their epochs unless --steps is given
TRAIN_OPTIONS = ("steps", "time_limit", "epochs", "prune_epochs", "qat_epochs", "batch_size", "seed")


def scale_product(cfg: HiNeRVConfig) -> int:
    return math.prod(cfg.scales)


def segment_model(cfg: HiNeRVConfig, num_frames: int, coded_h: int, coded_w: int) -> torch.nn.Module:
    """The network for one segment; the base grid never has more time steps than the segment has frames."""
    cfg = replace(cfg, base_grid_frames=max(1, min(cfg.base_grid_frames, num_frames)))
    return build_model(cfg, num_frames, coded_h, coded_w)


def coded_frame_size(h: int, w: int, cfg: HiNeRVConfig) -> tuple[int, int]:
    return patch.coded_size(h, w, scale_product(cfg))


class HiNeRVCodec:
    name = "hinerv"
    payload_version = 2  # 2: the header's config may say weight_coding "rd" (payload: rd records)
    payload_versions = (1, 2)  # versions this plugin decodes (1: 6-bit tensor records only)
    presets = PRESETS
    default_preset = "fast"

    def config_to_dict(self, preset: Preset) -> dict:
        return preset.model.to_dict()

    def config_from_dict(self, d: dict) -> HiNeRVConfig:
        try:
            return HiNeRVConfig.from_dict(d)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BitstreamError(f"corrupt sequence header: bad HiNeRV config ({exc})") from None

    def stages(self, preset: Preset) -> list[Stage]:
        def build(work: Work) -> torch.nn.Module:
            hc, wc = work.data.coded_size
            return segment_model(work.config.model, work.data.num_frames, hc, wc)

        if preset.model.weight_coding == "rd":
            return [
                Stage("patch", partial(patch.run, multiple=scale_product(preset.model))),
                Stage("init", partial(overfit.init, build_model=lambda w: rd.RDNet(build(w), w.config.lmbda))),
                Stage("rd_train", rd.train, checkpoint=True),
                Stage("rd_ste", rd.ste, checkpoint=True),
                Stage("rd_code", rd.code),
            ]
        return [
            Stage("patch", partial(patch.run, multiple=scale_product(preset.model))),
            Stage("init", partial(overfit.init, build_model=build)),
            Stage("overfit", overfit.run, checkpoint=True),
            Stage("aim", ratecontrol.aim),
            Stage("prune", partial(prune.run, prunable=prunable_parameters), checkpoint=True),
            Stage("qat", qat.run, checkpoint=True),
            Stage("quantize", quantize.run),
            Stage("entropy", entropy_code.run),
            Stage("trim", ratecontrol.trim),
        ]

    def configure(self, preset: str | None, target: Target | None, overrides: dict, clip: Clip) -> Preset:
        """A preset for this clip: sized to `target` (no target and no preset: the default quality), trained for
        `steps` (default: from the clip; paper presets keep their epochs), capped by `time_limit` seconds."""
        name = preset or self.default_preset
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r} for hinerv (available: {', '.join(PRESETS)})")
        ov = {k: v for k, v in overrides.items() if v is not None}
        base = PRESETS[name]
        model, bpp, lmbda = base.model, base.stream_bpp, base.lmbda
        if "lambda" in ov:  # the rd presets' rate weight itself, no rate control (the CLI refuses it with a target)
            if model.weight_coding != "rd":
                raise ConfigError(f"--lambda is for C3 and HiNeRV's rd-* presets; give hinerv:{name} a --bitrate, "
                                  "--bpp or --quality")
            if target is not None:
                raise ConfigError("give --lambda or a rate target, not both")
            lmbda, bpp = float(ov.pop("lambda")), None
        unknown = sorted(set(ov) - set(TRAIN_OPTIONS))
        if unknown:
            raise ConfigError(f"unknown training option(s) for hinerv: {', '.join(unknown)}")
        for key, value in ov.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{key} must be a number >= 0, got {value!r}")
        if "steps" in ov and "epochs" in ov:
            raise ConfigError("give --steps or --epochs, not both")
        if target is not None or preset is None or bpp is not None:
            bpp = ratecontrol.stream_bpp(target, clip) if target is not None or bpp is None else bpp
            if target is None:  # the default quality never asks for less than the smallest network
                bpp = max(bpp, ratecontrol.smallest_bpp(base.model, clip))
            # rd networks are sized like the 6-bit ones, RD_OVERSIZE larger (a larger network at a larger λ codes
            # better); λ then starts where the rate should land and rd.py steers it (docs/ratecontrol.md)
            rd_mode = model.weight_coding == "rd"
            model = ratecontrol.size_network(base.model, clip, round(clip.payload_bytes(bpp)
                                                                     * (ratecontrol.RD_OVERSIZE if rd_mode else 1)))
            if rd_mode:
                lmbda = ratecontrol.rd_lambda(model, clip, clip.payload_bytes(bpp))
        factor = scale_product(model)
        train = _patches_for_large_frames(base.train, clip, factor)
        if "epochs" in ov:
            train = _scaled_epochs(train, ov["epochs"])
        elif "steps" in ov or name not in FIXED_LENGTH:
            steps = ov.get("steps") or ratecontrol.default_steps(clip)
            split = ratecontrol.split_for(model, bpp is not None)
            train = ratecontrol.schedule_for_steps(train, max(1, int(steps)), clip, factor, split)
        train = replace(train, **{k: int(ov[k]) for k in ("prune_epochs", "qat_epochs", "batch_size", "seed")
                                  if k in ov})
        if train.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        cfg = Preset(model, train, base.description, bpp, lmbda)
        if ov.get("time_limit"):
            cfg = self._fit_time(cfg, clip, float(ov["time_limit"]))
        return cfg

    def _fit_time(self, cfg: Preset, clip: Clip, seconds: float) -> Preset:
        per_step = ratecontrol.seconds_per_step(cfg.model, cfg.train, clip, torch.device(clip.device))
        segments = max(1, math.ceil(clip.frames / clip.segment_frames))
        factor = scale_product(cfg.model)
        fit = int(seconds / segments / per_step)
        if fit < 1:
            raise ConfigError(f"--time-limit {seconds:g}s is shorter than one training step of this network "
                              f"({per_step:.2f} s on this device)")
        if fit >= ratecontrol.total_steps(cfg.train, clip, factor):
            return cfg
        split = ratecontrol.split_for(cfg.model, cfg.stream_bpp is not None)
        return replace(cfg, train=ratecontrol.schedule_for_steps(cfg.train, fit, clip, factor, split))

    def plan(self, cfg: Preset, clip: Clip) -> dict:
        hc, wc = coded_frame_size(clip.height, clip.width, cfg.model)
        params, _ = ratecontrol.count_parameters(cfg.model, clip.segment_frames, clip.height, clip.width)
        segments = max(1, math.ceil(clip.frames / clip.segment_frames))
        steps = ratecontrol.total_steps(cfg.train, clip, scale_product(cfg.model)) * segments
        per_step = ratecontrol.seconds_per_step(cfg.model, cfg.train, clip, torch.device(clip.device))
        m = cfg.model
        return {"parameters": params, "steps": steps, "estimated_s": round(steps * per_step, 1),
                "seconds_per_step": round(per_step, 4), "stream_bpp": cfg.stream_bpp,
                "summary": f"HiNeRV {m.channels}/{m.channels >> 1}/{m.channels >> 2} wide, grids "
                           f"{m.base_grid_channels}+{m.local_grid_channels} ch, {params:,} parameters per segment "
                           f"(coded {wc}x{hc}), {cfg.train.epochs}+{cfg.train.prune_epochs}+{cfg.train.qat_epochs}"
                           f" epochs = {steps:,} steps"
                           + (f", weights coded for RD (λ {cfg.lmbda:.3g})" if m.weight_coding == "rd" else "")}

    def settings(self, cfg: Preset) -> dict:
        out = {"model": cfg.model.to_dict(), "train": dataclasses.asdict(cfg.train), "stream_bpp": cfg.stream_bpp}
        if cfg.model.weight_coding == "rd":
            out["lambda"] = cfg.lmbda
        return out

    def preset_summary(self, name: str) -> str:
        p = PRESETS[name]
        length = (f"{p.train.epochs}+{p.train.prune_epochs}+{p.train.qat_epochs} epochs" if name in FIXED_LENGTH
                  else "steps from the clip, a fixed λ (a rate target steers it)" if p.model.weight_coding == "rd"
                  else "steps from the clip, sized to the rate target")
        return f"{length}  {p.description}"

    def shrink(self, cfg: Preset) -> Preset | None:
        """Half the batch (CUDA out-of-memory fallback); None at batch 1."""
        if cfg.train.batch_size <= 1:
            return None
        return replace(cfg, train=replace(cfg.train, batch_size=cfg.train.batch_size // 2))

    def _load(self, payload: bytes, cfg: HiNeRVConfig, num_frames: int, height: int, width: int,
              device: torch.device | str) -> torch.nn.Module:
        hc, wc = coded_frame_size(height, width, cfg)
        with torch.device("meta"):
            shapes = [(n, tuple(p.shape)) for n, p in segment_model(cfg, num_frames, hc, wc).named_parameters()]
        total = sum(math.prod(s) for _, s in shapes)
        if total > min(MAX_DECODE_PARAMETERS, FREE_PARAMETERS + PARAMETERS_PER_PAYLOAD_BYTE * len(payload)):
            raise BitstreamError(f"corrupt stream: a {total}-parameter model cannot be coded in {len(payload)} bytes")
        records = self._records(payload, cfg, shapes)
        model = segment_model(cfg, num_frames, hc, wc)
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.copy_(torch.from_numpy(records[name].values()))
        return model.to(device).eval()

    def _records(self, payload: bytes, cfg: HiNeRVConfig, shapes: list) -> dict:
        reader = ByteReader(payload, "HiNeRV payload")
        if cfg.weight_coding == "rd":
            records = read_rd_tensors(reader, shapes, {n for n, s in shapes if len(s) > 1})
        else:
            records = read_tensors(reader, shapes)
        reader.expect_end()
        return records

    def decode_segment(self, payload: bytes, config: HiNeRVConfig, num_frames: int, height: int, width: int,
                       device: torch.device | str) -> Iterator[torch.Tensor]:
        model = self._load(payload, config, num_frames, height, width, device)
        coded, tile = coded_frame_size(height, width, config), patch.render_tile(scale_product(config))
        with torch.no_grad():
            for t in range(num_frames):  # large frames by tiles (nvc_pipe.stages.patch.render_frames)
                frame = patch.render_frames(overfit.default_forward, model, torch.tensor([t], device=device), coded,
                                            tile)[0]
                yield frame[:height, :width].float()

    def describe(self, payload: bytes, config: HiNeRVConfig, num_frames: int, height: int, width: int) -> dict:
        hc, wc = coded_frame_size(height, width, config)
        with torch.device("meta"):
            model = segment_model(config, num_frames, hc, wc)
            shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        records = self._records(payload, config, shapes)
        groups: dict[str, int] = {}
        for name, rec in records.items():
            key = name.split(".")[0]
            groups[key] = groups.get(key, 0) + math.prod(rec.shape)
        if config.weight_coding == "rd":
            zeros = sum(int((r.q == 0).sum()) for r in records.values() if r.q is not None)
            return {"parameters": sum(math.prod(s) for _, s in shapes), "weight_coding": "rd", "zero_weights": zeros,
                    "coded_size": [hc, wc], "parameters_by_module": groups}
        pruned = sum(int((~r.mask).sum()) for r in records.values() if r.mask is not None)
        return {"parameters": sum(math.prod(s) for _, s in shapes), "pruned_weights": pruned,
                "coded_size": [hc, wc], "parameters_by_module": groups}


WHOLE_FRAME_MAX_PIXELS = 1 << 22  # pixels of one whole-frame step above which training goes by patches
LARGE_FRAME_PATCH = (512, 512)


def _patches_for_large_frames(train: TrainConfig, clip: Clip, factor: int) -> TrainConfig:
    """Whole-frame recipes (fast, tiny) train by LARGE_FRAME_PATCH patches when one step of whole frames would
    hold more than WHOLE_FRAME_MAX_PIXELS (memory: a 4096x4096 frame at the tiny preset stays within 4 GiB)."""
    hc, wc = patch.coded_size(clip.height, clip.width, factor)
    if train.patch_size is not None or min(train.batch_size, clip.segment_frames) * hc * wc <= WHOLE_FRAME_MAX_PIXELS:
        return train
    return replace(train, patch_size=LARGE_FRAME_PATCH)


def _scaled_epochs(train: TrainConfig, epochs: int) -> TrainConfig:
    """--epochs N: the main stage's epochs; warm-up, pruning and QAT keep the recipe's proportions."""
    ratio = epochs / max(train.epochs, 1)
    scaled = {k: max(1 if k != "warmup_epochs" else 0, round(getattr(train, k) * ratio))
              for k in ("warmup_epochs", "prune_epochs", "qat_epochs") if getattr(train, k) > 0}
    return replace(train, epochs=int(epochs), **scaled)


codec = HiNeRVCodec()
