"""Structured mask decay: turn a trained EVC-L encoder/decoder into the M and S widths, then slim physically.

The paper's exact decay rule and sparsity loss were not retrieved (notes §2.1, §2.6); this is our design
(docs/intra.md, "EVC"):

1. **What is removed.** Every slimmable channel set of the transforms (a stage's width, shared through the
   residuals by its `ResBlockDown/Up` and `DepthConvBlock`; the internal width of each block; the 4c FFN width)
   keeps its `target` most important channels. Importance of a channel = ‖producer weights‖₂ · ‖consumer
   weights‖₂ (the conv rows that write it, the conv columns that read it), measured once at the start.
2. **Decay.** The masks of the removed channels fall linearly from 1 to 0 over the first `DECAY_FRAC` of the
   fine-tuning budget and stay 0 afterwards (the kept channels' masks stay 1), while the encoder and decoder are
   fine-tuned on the usual variable-rate RD loss. The shared entropy model is frozen (all sizes share it).
3. **Sparsity regulariser.** R = β · Σ_removed (1 − m_c) · ‖θ_c‖₂ / √|θ_c|, a group lasso on the producer
   weights θ_c of each removed channel whose strength rises as its mask falls: the kept channels learn to carry
   the signal while the masked ones still pass part of it, and the weights being dropped are near 0 when m hits
   0, so slimming changes nothing.
4. **Slimming.** With every removed mask at 0 the removed channels are exactly 0, so deleting their conv rows and
   the matching input columns gives the same function (`slim_model`, tested).

L → M, then M → S (decaying twice, S inherits from M), `run_mask_decay`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import torch
from torch import nn

from .layers import DepthConvBlock, ResBlockDown, ResBlockUp, _slim_conv
from .model import EVC, EVCConfig

DECAY_FRAC = 0.6
BETA = 2e-3


def _rows(w: torch.Tensor, per: int = 1) -> torch.Tensor:
    """(out·per, ...) weights → per-channel squared norms (out,), `per` consecutive rows per channel."""
    return w.detach().reshape(w.shape[0] // per, -1).pow(2).sum(1)


def _cols(w: torch.Tensor) -> torch.Tensor:
    return w.detach().transpose(0, 1).reshape(w.shape[1], -1).pow(2).sum(1)


@dataclass
class Point:
    """One mask point: the blocks it multiplies, its width, the channels kept, the mask, producer params."""

    blocks: list  # (block, mask name)
    keep: torch.Tensor
    drop: torch.Tensor
    mask: torch.Tensor
    producers: list  # (weight tensor, rows per channel)


def _point(pairs, score: torch.Tensor, target: int, producers) -> Point:
    order = torch.argsort(score, descending=True)
    keep, drop = order[:target].sort().values, order[target:].sort().values
    mask = torch.ones(score.numel())
    for block, name in pairs:
        block.masks[name] = mask
    return Point(pairs, keep, drop, mask, producers)


def _block_points(b: nn.Module, target: int, nxt_in_cols: torch.Tensor) -> list[Point]:
    """Internal points of one block (mid, ffn), given its stage target width."""
    pts = []
    if isinstance(b, ResBlockDown):
        s = _rows(b.conv1.weight) * _cols(b.conv2.weight)
        pts.append(_point([(b, "mid")], s, target, [(b.conv1.weight, 1), (b.conv1.bias, 1)]))
    elif isinstance(b, ResBlockUp):
        s = _rows(b.up.weight, 4) * _cols(b.conv.weight)
        pts.append(_point([(b, "mid")], s, target, [(b.up.weight, 4), (b.up.bias, 4)]))
    else:
        s = _rows(b.dw.weight) * _cols(b.dc2.weight)
        pts.append(_point([(b, "mid")], s, target, [(b.dw.weight, 1), (b.dc1.weight, 1)]))
        s = _rows(b.ff1.weight) * _cols(b.ff2.weight)
        pts.append(_point([(b, "ffn")], s, 4 * target, [(b.ff1.weight, 1), (b.ff1.bias, 1)]))
    return pts


def _stage_out(down_or_up: nn.Module, dcb: DepthConvBlock, consumer: torch.Tensor, target: int) -> Point:
    if isinstance(down_or_up, ResBlockDown):
        prod = [(down_or_up.conv2.weight, 1), (down_or_up.skip.weight, 1)]
    else:
        prod = [(down_or_up.conv.weight, 1), (down_or_up.skip.weight, 4)]
    prod += [(dcb.dc2.weight, 1), (dcb.ff2.weight, 1)]
    s = sum(_rows(w, per) for w, per in prod) * consumer
    return _point([(down_or_up, "out"), (dcb, "out")], s, target, prod)


def attach_masks(model: EVC, target: EVCConfig) -> list[Point]:
    """Create every mask point of `model`'s transforms for the widths of `target`."""
    points = []
    enc_stages, dec_stages = model.enc.stages(), model.dec.stages()
    enc_next = [enc_stages[1][0].conv1.weight, enc_stages[2][0].conv1.weight, model.enc.out.weight]
    for (a, b), t, nxt in zip(enc_stages, target.enc, enc_next):
        points.append(_stage_out(a, b, _cols(nxt), t))
        points += _block_points(a, t, None) + _block_points(b, t, None)
    dec_next = [dec_stages[1][0].up.weight, dec_stages[2][0].up.weight, model.dec.out.conv.weight]
    for (a, b), t, nxt in zip(dec_stages, reversed(target.dec), dec_next):
        points.append(_stage_out(a, b, _cols(nxt), t))
        points += _block_points(a, t, None) + _block_points(b, t, None)
    return points


def set_decay(points: list[Point], frac: float) -> None:
    """Masks of the removed channels at 1 − frac/DECAY_FRAC (≥ 0); kept channels at 1."""
    level = max(0.0, 1.0 - frac / DECAY_FRAC)
    for p in points:
        p.mask[p.drop] = level


def sparsity_loss(points: list[Point]) -> torch.Tensor:
    total = torch.zeros(())
    for p in points:
        strength = 1.0 - p.mask[p.drop]
        for w, per in p.producers:
            g = w.reshape(w.shape[0] // per, -1)[p.drop]
            total = total + (strength * g.pow(2).sum(1).add(1e-12).sqrt() / g.shape[1] ** 0.5).sum()
    return BETA * total


def slim_model(model: EVC, points: list[Point], target: EVCConfig) -> EVC:
    """The physically smaller model (masks removed): exact when every removed channel's mask is 0."""
    by_key = {(id(b), name): p for p in points for b, name in p.blocks}

    def keep_of(block):
        return {name: p.keep for (bid, name), p in by_key.items() if bid == id(block)}

    new = EVC(target, entropy=model.entropy)
    in_keep = None
    for i, b in enumerate(model.enc.blocks):
        k = keep_of(b)
        new.enc.blocks[i] = b.slim(in_keep, k)
        in_keep = k.get("out", in_keep)
    new.enc.out = _slim_conv(model.enc.out, None, in_keep)
    new.dec.head = model.dec.head
    in_keep = None
    for i, b in enumerate(model.dec.blocks):
        k = keep_of(b)
        new.dec.blocks[i] = b.slim(in_keep, k)
        in_keep = k.get("out", in_keep)
    new.dec.out.conv = _slim_conv(model.dec.out.conv, None, in_keep)
    for m in new.modules():
        if hasattr(m, "masks"):
            m.masks = {}
    return new


def clear_masks(model: nn.Module) -> None:
    for m in model.modules():
        if hasattr(m, "masks"):
            m.masks = {}


def decay_phase(model: EVC, target: EVCConfig, pool, seconds: float, crop: int, batch: int, lr: float, log,
                seed: int, **fit_kw) -> EVC:
    from .train import fit

    for p in model.entropy.parameters():
        p.requires_grad_(False)
    points = attach_masks(model, target)
    params = list(model.enc.parameters()) + list(model.dec.parameters())
    steps = fit(model, params, pool, seconds, crop, batch, lr, log, seed=seed,
                extra_loss=lambda step, frac: sparsity_loss(points),
                on_step=lambda step, frac: set_decay(points, frac), **fit_kw)
    set_decay(points, 1.0)
    slim = slim_model(model, points, target)
    log(f"mask decay to enc {target.enc} dec {target.dec}: {steps} steps")
    return slim


def run_mask_decay(model: EVC, pool, seconds: float, crop: int, batch: int, lr: float, log, work) -> None:
    """L → M → S, half the budget each; saves MM.pt and SS.pt (whole modules) in `work`."""
    start = time.time()
    info = {}
    for size, seed in (("MM", 1), ("SS", 2)):
        t0 = time.time()
        model = decay_phase(model, EVCConfig.small(size), pool, seconds / 2, crop, batch, lr, log, seed)
        torch.save(model.state_dict(), work / f"{size}.pt")  # a state dict: loaded with weights_only=True
        info[size] = round(time.time() - t0)
    info["seconds"] = round(time.time() - start)
    (work / "decay.json").write_text(json.dumps(info))
