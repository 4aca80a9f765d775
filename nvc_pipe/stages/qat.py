"""Quant-Noise QAT stage (HiNeRV §3.2): fine-tune with 90 % of each weight replaced by its 6-bit value per step.

Applies to every parameter with more than one dimension (weights and feature grids, not biases). The model is
run through `torch.func.functional_call` with the noised parameters, so the module itself is never modified.
Learning rate: main lr × 0.1, no warm-up, cosine over the QAT epochs. Pruning masks stay applied.
"""

from __future__ import annotations

import torch
from torch.func import functional_call

from ..pipeline import Work
from ..quant import quant_noise
from .overfit import TrainConfig, cosine_lr, fit
from .prune import apply_masks


def run(work: Work) -> Work:
    cfg: TrainConfig = work.config.train
    if cfg.qat_epochs <= 0:
        return work
    names = [n for n, p in work.model.named_parameters() if p.ndim > 1]

    def forward(model: torch.nn.Module, t, yx, size):
        if not model.training:
            return model(t, yx, size)
        params = dict(model.named_parameters())
        noised = {n: quant_noise(params[n], cfg.bits, cfg.quant_noise) for n in names}
        return functional_call(model, noised, (t, yx, size))

    total = cfg.qat_epochs
    lr, min_lr = cfg.lr * cfg.qat_lr_scale, cfg.min_lr * cfg.qat_lr_scale

    def lr_at(step: int, steps_per_epoch: int) -> float:
        return cosine_lr(step, total * steps_per_epoch, 0, lr, lr, min_lr)

    history = fit(work, stage="qat", epochs=cfg.qat_epochs, lr_at=lr_at, forward=forward,
                  after_step=(lambda: apply_masks(work.model, work.masks)) if work.masks else None)
    work.report.setdefault("history", []).extend(history)
    return work
