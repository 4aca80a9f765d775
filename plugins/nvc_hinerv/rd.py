"""HiNeRV's rate–distortion weight coding (`weight_coding = "rd"`, the `rd-*` presets), NVRC-like.

    init ─▶ rd_train (noise) ─▶ rd_ste (hard rounding, straight-through) ─▶ rd_code (integers ─▶ payload)

Every parameter with more than one dimension (weights, feature grids) has a learned step Δ per tensor and a
zero-mean Laplace model of its integers whose scale b is fitted, not learned: mean |q̃| while training (the
maximum-likelihood scale, detached), the bit-cheapest of a few scales around mean |q| when coding; biases stay
fp16. Training loss = distortion (the shared
`loss_fn`) + λ · bits / pixels, the bits being the information content of the integers under the zero-mean
Laplace binned on the integers (`laplace_bits`, the same model `nvc_pipe.bitstream.rdweights` codes with):

- rd_train: q̃ = w/Δ + U(−½, ½), weights w + Δ·u (additive noise, the usual proxy of rounding);
- rd_ste: q = round(w/Δ₁₆) with a straight-through gradient (Δ₁₆: Δ rounded to fp16, straight-through too),
  weights q·Δ₁₆, exactly the decoder's; lr × `qat_lr_scale`, 2/15 of a step budget (`ratecontrol.RD_SPLIT`);
- evaluation and coding: Δ rounded to fp16 first, q = round(w/Δ₁₆), weights q·Δ₁₆ (what the decoder computes).

The rate term prunes by itself (integers pulled to zero cost little), so this mode has no pruning stage. λ is the
preset's, or, with a rate target, steered while training: every `CONTROL_EVERY` steps the payload the network
would code now (`estimate_bytes`) is compared with the segment's budget and log λ moves by `CONTROL_GAIN` × the
log ratio. λ lives in the network as an untrained parameter, so `--resume` restores it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from nvc_pipe.bitstream.fields import ByteWriter
from nvc_pipe.bitstream.rdweights import RDRecord, rd_record, ratio_of_scale, write_rd_tensors
from nvc_pipe.pipeline import Work
from nvc_pipe.stages.overfit import TrainConfig, cosine_lr, evaluate, fit

INIT_LEVELS = 4  # initial step of a weight = std(w) / INIT_LEVELS (~4 bits a weight; training moves it)
GRID_STEP = 4e-3  # initial step of a feature grid (grids start at ±1e-3 and grow ~20x while training)
STEP_SPEED = 4.0  # log Δ = STEP_SPEED · the trained parameter: Adam moves log Δ up to 4 × lr per step
MIN_SCALE = 0.05  # Laplace scale floor (integer units)
CONTROL_EVERY = 8  # steps between λ updates when a budget is set
CONTROL_GAIN = 0.25
AIM = 0.99  # aim this fraction of the budget
LAMBDA_RANGE = (1e-7, 10.0)
_LN2 = math.log(2.0)


def quantized_names(net: nn.Module) -> list[str]:
    return [n for n, p in net.named_parameters() if p.ndim > 1]


class RDNet(nn.Module):
    """A segment network and its coding parameters: log Δ per quantized tensor (scaled, `STEP_SPEED`); log λ (not
    trained)."""

    def __init__(self, net: nn.Module, lmbda: float):
        super().__init__()
        self.net = net
        self.names = quantized_names(net)
        params = dict(net.named_parameters())
        grids = {n for n in self.names if n.startswith("base.") or ".enc.grids." in n}
        steps = [math.log(GRID_STEP if n in grids else max(float(params[n].detach().float().std()), 1e-4)
                          / INIT_LEVELS) for n in self.names]
        self.step_param = nn.Parameter(torch.tensor(steps) / STEP_SPEED)
        self.log_lmbda = nn.Parameter(torch.tensor(math.log(lmbda)), requires_grad=False)

    @property
    def log_step(self) -> Tensor:
        return self.step_param * STEP_SPEED

    @property
    def lmbda(self) -> float:
        return float(self.log_lmbda.exp())

    def forward(self, t: Tensor, yx: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        return functional_call(self.net, hard_params(self), (t, yx, size))


def laplace_bits(x: Tensor, b: Tensor) -> Tensor:
    """Σ −log2 P(x) for P(x) = F(x + ½) − F(x − ½), F the CDF of Laplace(0, b) (x real: noisy or integer)."""
    a = x.abs()
    tail = -(a - 0.5) / b + torch.log(-0.5 * torch.expm1(-1.0 / b))
    ac = a.clamp(max=0.5)
    centre = torch.log((1 - 0.5 * torch.exp(-(0.5 - ac) / b) - 0.5 * torch.exp(-(0.5 + ac) / b)).clamp_min(1e-30))
    return -torch.where(a >= 0.5, tail, centre).sum() / _LN2


def _cdf(x: float, b: float) -> float:
    return 0.5 * math.exp(x / b) if x < 0 else 1 - 0.5 * math.exp(-x / b)


def coded_bits(q: Tensor, b: float) -> float:
    """Bits of the integers `q` under the coder's table: the Laplace truncated to [min q, max q], renormalised."""
    if q.numel() == 0 or float(q.min()) == float(q.max()):
        return 0.0
    mass = _cdf(float(q.max()) + 0.5, b) - _cdf(float(q.min()) - 0.5, b)
    return float(laplace_bits(q, torch.tensor(b))) + q.numel() * math.log2(max(mass, 1e-300))


def _steps16(rd: RDNet) -> Tensor:
    return rd.log_step.detach().exp().half().float()


def hard_params(rd: RDNet) -> dict[str, Tensor]:
    """What the decoder will use: q·Δ₁₆ for quantized tensors, fp16-rounded biases."""
    out = {}
    steps = _steps16(rd)
    params = dict(rd.net.named_parameters())
    for i, n in enumerate(rd.names):
        out[n] = torch.round(params[n].detach() / steps[i]) * steps[i]
    for n, p in params.items():
        if n not in out:
            out[n] = p.detach().half().float()
    return out


def soft_params(rd: RDNet, mode: str) -> tuple[dict[str, Tensor], Tensor]:
    """Training weights ("noise" or "ste") and their bits, differentiable in w, log Δ and log b."""
    params = dict(rd.net.named_parameters())
    steps = rd.log_step.exp()
    if mode == "ste":  # the decoder's fp16 steps, straight-through: the rounding trained is the one coded
        steps = steps + (steps.half().float() - steps).detach()
    out, bits = {}, []
    for i, n in enumerate(rd.names):
        x = params[n] / steps[i]
        if mode == "noise":
            x = x + (torch.rand_like(x) - 0.5)
        else:
            x = x + (torch.round(x) - x).detach()
        out[n] = x * steps[i]
        bits.append(laplace_bits(x, x.detach().abs().mean().clamp_min(MIN_SCALE)))
    return out, torch.stack(bits).sum()


def fitted_scale(q: Tensor) -> float:
    """The Laplace scale, among mean |q| × 2^(k/8) for k = −8..8, that codes the integers `q` in the fewest bits."""
    b0 = max(float(q.abs().mean()), MIN_SCALE)
    cands = [b0 * 2 ** (k / 8) for k in range(-8, 9)]
    return min(cands, key=lambda b: coded_bits(q, b))


@torch.no_grad()
def integers(rd: RDNet) -> list[tuple[str, Tensor, float, float]]:
    """(name, q, Δ₁₆, fitted scale) of every quantized tensor: what `records` codes."""
    steps = _steps16(rd)
    params = dict(rd.net.named_parameters())
    out = []
    for i, n in enumerate(rd.names):
        q = torch.round(params[n].detach().float() / steps[i]).cpu()
        out.append((n, q, float(steps[i]), fitted_scale(q)))
    return out


def records(rd: RDNet, ints: list | None = None) -> list[RDRecord]:
    """The network's parameters as rd records (integers under Δ₁₆, the table ratio of the fitted scale)."""
    ints = {n: (q, step, b) for n, q, step, b in (ints or integers(rd))}
    out = []
    for n, p in rd.net.named_parameters():
        if n in ints:
            q, step, b = ints[n]
            out.append(rd_record(n, q.numpy().astype(np.int64), step, ratio_of_scale(b)))
        else:
            out.append(RDRecord(n, tuple(p.shape), fp16=p.detach().float().cpu().half().numpy()))
    return out


@torch.no_grad()
def estimate_bytes(rd: RDNet, ints: list | None = None) -> float:
    """The model's estimate of the payload: exact side information + bits of the integers under their Laplace."""
    ints = ints or integers(rd)
    bits = sum(coded_bits(q, b) for _, q, _, b in ints)
    return side_bytes(rd, ints) + bits / 8


def side_bytes(rd: RDNet, ints: list) -> int:
    """Bytes of everything but the coded integers (signature, count, record headers, fp16 biases, word count)."""
    w = ByteWriter()
    for _, q, _, _ in ints:
        w.svarint(int(q.min()) if q.numel() else 0)
        w.svarint(int(q.max()) if q.numel() else 0)
    n_fp16 = sum(p.numel() for n, p in rd.net.named_parameters() if n not in rd.names)
    n_params = len(list(rd.net.parameters()))
    return 4 + 1 + n_params + 2 * n_fp16 + 4 * len(ints) + len(w.getvalue()) + 2


def _pixels(work: Work) -> int:
    return work.data.num_frames * work.data.height * work.data.width


def _train(work: Work, stage: str, mode: str, epochs: int, lr: float, min_lr: float, warmup: int) -> Work:
    rd: RDNet = work.model
    cfg: TrainConfig = work.config.train
    pixels = _pixels(work)
    held = {}

    def forward(model: RDNet, t, yx, size):
        if not model.training:
            return model(t, yx, size)
        params, bits = soft_params(model, mode)
        held["bits"] = bits
        return functional_call(model.net, params, (t, yx, size))

    def penalty() -> Tensor:
        return rd.log_lmbda.exp() * held.pop("bits") / pixels

    count = [0]
    budget = work.budget_bytes
    n_items = work.data.origins.shape[0]
    start = warmup * max(1, n_items // min(cfg.batch_size, n_items))  # no control while the lr warms up

    def control() -> None:
        count[0] += 1
        if budget is None or count[0] <= start or count[0] % CONTROL_EVERY:
            return
        est = estimate_bytes(rd)
        with torch.no_grad():
            rd.log_lmbda.add_(CONTROL_GAIN * math.log(max(est, 1.0) / (AIM * budget)))
            rd.log_lmbda.clamp_(math.log(LAMBDA_RANGE[0]), math.log(LAMBDA_RANGE[1]))

    def lr_at(step: int, steps_per_epoch: int) -> float:
        return cosine_lr(step, epochs * steps_per_epoch, warmup * steps_per_epoch, lr, cfg.warmup_lr if warmup
                         else lr, min_lr)

    history = fit(work, stage=stage, epochs=epochs, lr_at=lr_at, forward=forward, after_step=control,
                  penalty=penalty)
    work.report.setdefault("history", []).extend(history)
    return work


def train(work: Work) -> Work:
    """Stage: train with noise for the recipe's main + pruning epochs; then the float network's quality."""
    cfg: TrainConfig = work.config.train
    work = _train(work, "rd_train", "noise", cfg.epochs + cfg.prune_epochs, cfg.lr, cfg.min_lr, cfg.warmup_epochs)
    rd: RDNet = work.model
    psnr = evaluate(rd.net, work.data)["psnr_db"]
    work.report["rd_float"] = {"psnr_db": psnr, "lambda": rd.lmbda}
    work.report["history"].append({"stage": "rd_train_float", "epoch": cfg.epochs + cfg.prune_epochs, "psnr_db": psnr})
    return work


def ste(work: Work) -> Work:
    """Stage: fine-tune with hard rounding (straight-through) for the recipe's QAT epochs."""
    cfg: TrainConfig = work.config.train
    return _train(work, "rd_ste", "ste", cfg.qat_epochs, cfg.lr * cfg.qat_lr_scale, cfg.min_lr * cfg.qat_lr_scale, 0)


def code(work: Work) -> Work:
    """Stage: the integers and their models become the payload."""
    rd: RDNet = work.model
    ints = integers(rd)
    w = ByteWriter()
    sizes = write_rd_tensors(records(rd, ints), w)
    work.payload = w.getvalue()
    estimate = estimate_bytes(rd, ints)
    work.report["rd"] = {"lambda": rd.lmbda, "estimated_bytes": round(estimate, 1),
                         "payload_bytes": len(work.payload), **sizes,
                         "float_psnr_db": work.report.get("rd_float", {}).get("psnr_db")}
    if work.budget_bytes is not None:
        work.report["rate"] = {"budget_bytes": work.budget_bytes, "lambda": rd.lmbda,
                               "payload_bytes": len(work.payload)}
    return work
