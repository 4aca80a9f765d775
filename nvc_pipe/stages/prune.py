"""Adaptive pruning stage (HiNeRV §3.1): one-shot magnitude pruning with a size-aware score, then fine-tuning.

Score of a weight in layer l: |w| / (n_l^0.5 + 1e-6), n_l = the layer's unpruned weights, so large layers are
pruned harder. One global threshold: the k-th smallest score with k = ratio × (all model parameters, grids and
biases included), taken among the prunable weights. Masks stay fixed during the fine-tune (new Adam, no warm-up,
cosine from the main lr), re-applied after every optimizer step so pruned weights stay exactly zero.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..pipeline import Work
from .overfit import TrainConfig, cosine_lr, fit

Prunable = Callable[[torch.nn.Module], list[tuple[str, torch.nn.Parameter]]]


def compute_masks(model: torch.nn.Module, prunable: list[tuple[str, torch.nn.Parameter]], ratio: float,
                  exponent: float = 0.5) -> dict[str, torch.Tensor]:
    """Boolean keep-masks for the prunable weights (True = kept)."""
    total = sum(p.numel() for p in model.parameters())
    k = int(ratio * total)
    if k <= 0 or not prunable:
        return {}
    scores = {name: p.detach().abs().float() / (p.numel() ** exponent + 1e-6) for name, p in prunable}
    flat = torch.cat([s.reshape(-1) for s in scores.values()])
    k = min(k, flat.numel())
    threshold = torch.kthvalue(flat.cpu(), k).values.to(flat.device)
    return {name: s > threshold for name, s in scores.items()}


def apply_masks(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def run(work: Work, prunable: Prunable) -> Work:
    cfg: TrainConfig = work.config.train
    if cfg.prune_ratio <= 0:
        return work
    work.masks = compute_masks(work.model, prunable(work.model), cfg.prune_ratio)
    apply_masks(work.model, work.masks)
    kept = sum(int(m.sum()) for m in work.masks.values())
    size = sum(m.numel() for m in work.masks.values())
    work.report["pruned_fraction_of_prunable"] = round(1 - kept / max(size, 1), 4)
    total = cfg.prune_epochs

    def lr_at(step: int, steps_per_epoch: int) -> float:
        return cosine_lr(step, total * steps_per_epoch, 0, cfg.lr, cfg.lr, cfg.min_lr)

    history = fit(work, stage="prune", epochs=cfg.prune_epochs, lr_at=lr_at,
                  after_step=lambda: apply_masks(work.model, work.masks))
    work.report.setdefault("history", []).extend(history)
    return work
