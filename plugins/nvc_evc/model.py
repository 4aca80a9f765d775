"""EVC networks: configuration, slimmable encoder/decoder, the shared entropy model, and the training forward.

Data flow (our notes §2.2–2.5):

    x ─enc─▶ y/(q_basic·q_scale) ─hyper_enc─▶ z ─round─▶ ẑ ─hyper_dec─▶ ─y_prior_fusion─▶ (q_step, log σ, μ)
    y/q_step, two-step checkerboard ("dual prior"): step 1 codes half the elements with (μ, σ) of the hyperprior,
    y_spatial_prior([ŷ₀·mask0, ŷ₁·mask1, μ, log σ, q_step]) gives (log σ, μ) for step 2.
    ŷ·q_basic·q_scale ─dec─▶ x̂

Differences from the released EVC, all made for bit-exact coding (`fixedpoint.py`): the prior networks predict
**log σ** (clamped to [ln 0.11, ln 64]) instead of σ, and their LeakyReLU slopes are dyadic (1/64, 1/8).
`EVCConfig.official(size)` builds the published widths; `EVCConfig.small(size)` is the reduced configuration of the
shipped weights (transform widths ÷3, N = 96) trained on 2 CPU cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .layers import (DepthConvBlock, PriorDCB, ResBlockDown, ResBlockUp, SubpelConv, leaky, SLOPE_SMALL)

OFFICIAL_WIDTHS = {"L": (192, 192, 192), "M": (128, 128, 192), "S": (64, 64, 128)}
SMALL_WIDTHS = {"L": (64, 64, 64), "M": (42, 42, 64), "S": (21, 21, 42)}
LAMBDAS = (0.0022, 0.0050, 0.012, 0.027)  # λ of the 4 anchors, on the λ·255²·MSE + bpp scale
Q_SCALE_INIT = (1.093, 0.839, 0.643, 0.500)  # EVC_SS checkpoint anchors (notes §2.5), our starting point
LOG_SIGMA_MIN, LOG_SIGMA_MAX = math.log(0.11), math.log(64.0)
Q_STEP_MIN = 0.5
ALIGN = 64


@dataclass(frozen=True)
class EVCConfig:
    enc: tuple[int, int, int]  # encoder widths c2, c4, c8 (c16 = n)
    dec: tuple[int, int, int]
    n: int  # latent / hyper-latent channels (even)

    @staticmethod
    def official(size: str = "LL") -> "EVCConfig":
        return EVCConfig(OFFICIAL_WIDTHS[size[0]], OFFICIAL_WIDTHS[size[1]], 192)

    @staticmethod
    def small(size: str = "LL") -> "EVCConfig":
        return EVCConfig(SMALL_WIDTHS[size[0]], SMALL_WIDTHS[size[1]], 96)

    def to_dict(self) -> dict:
        return {"enc": list(self.enc), "dec": list(self.dec), "n": self.n}


class Encoder(nn.Module):
    def __init__(self, widths: tuple[int, int, int], n: int) -> None:
        super().__init__()
        c2, c4, c8 = widths
        self.blocks = nn.ModuleList([ResBlockDown(3, c2), DepthConvBlock(c2), ResBlockDown(c2, c4),
                                     DepthConvBlock(c4), ResBlockDown(c4, c8), DepthConvBlock(c8)])
        self.out = nn.Conv2d(c8, n, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks:
            x = b(x)
        return self.out(x)

    def stages(self) -> list[list[nn.Module]]:
        """Blocks sharing one channel set (a stage's width): (c2), (c4), (c8)."""
        return [list(self.blocks[i:i + 2]) for i in (0, 2, 4)]


class Decoder(nn.Module):
    def __init__(self, widths: tuple[int, int, int], n: int) -> None:
        super().__init__()
        c2, c4, c8 = widths
        self.head = DepthConvBlock(n)
        self.blocks = nn.ModuleList([ResBlockUp(n, c8), DepthConvBlock(c8), ResBlockUp(c8, c4), DepthConvBlock(c4),
                                     ResBlockUp(c4, c2), DepthConvBlock(c2)])
        self.out = SubpelConv(c2, 3)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        y = self.head(y)
        for b in self.blocks:
            y = b(y)
        return self.out(y)

    def stages(self) -> list[list[nn.Module]]:
        """(c8), (c4), (c2) in data-flow order."""
        return [list(self.blocks[i:i + 2]) for i in (0, 2, 4)]


class BitEstimator(nn.Module):
    """Factorized per-channel CDF of z (EVC's BitEstimator layout: 3 × (h, b, a) + (h, b) per channel).

    cdf(x) = sigmoid(f₄(f₃(f₂(f₁(x))))), fᵢ(x) = x·softplus(hᵢ) + bᵢ + tanh(aᵢ)·tanh(x·softplus(hᵢ) + bᵢ).
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.h = nn.Parameter(torch.full((4, n), -0.5))
        self.b = nn.Parameter(torch.empty(4, n).uniform_(-0.5, 0.5))
        self.a = nn.Parameter(torch.zeros(3, n))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., C, H, W) → logit of the CDF, per channel."""
        for i in range(4):
            x = x * F.softplus(self.h[i]).view(-1, 1, 1) + self.b[i].view(-1, 1, 1)
            if i < 3:
                x = x + torch.tanh(self.a[i]).view(-1, 1, 1) * torch.tanh(x)
        return x

    def likelihood(self, z: torch.Tensor) -> torch.Tensor:
        lo, hi = self.logits(z - 0.5), self.logits(z + 0.5)
        sign = -torch.sign(lo + hi).detach()  # CompressAI's trick: difference of the far tails, numerically stable
        return (torch.sigmoid(sign * hi) - torch.sigmoid(sign * lo)).abs()


class EntropyModel(nn.Module):
    """Everything shared by every EVC size: hyperprior, prior fusion, spatial prior, z density, q_basic, q_scale."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.hyper_enc = nn.Sequential(PriorDCB(n, n), nn.Conv2d(n, n, 3, 2, 1), nn.LeakyReLU(0.01),
                                       nn.Conv2d(n, n, 3, 2, 1))
        self.hyper_dec = nn.Sequential(PriorDCB(n, n), SubpelConv(n, n), PriorDCB(n, n), SubpelConv(n, n),
                                       PriorDCB(n, n))
        self.y_prior_fusion = nn.Sequential(PriorDCB(n, 2 * n), PriorDCB(2 * n, 3 * n))
        self.y_spatial_prior = nn.Sequential(PriorDCB(4 * n, 3 * n), PriorDCB(3 * n, 2 * n), PriorDCB(2 * n, 2 * n))
        self.z_density = BitEstimator(n)
        self.q_basic = nn.Parameter(torch.ones(1, n, 1, 1))
        self.q_scale = nn.Parameter(torch.tensor(Q_SCALE_INIT).view(4, 1, 1, 1))

    def q_enc(self, q_scale: torch.Tensor) -> torch.Tensor:
        """q_basic (≥ 0.5) × q_scale, broadcast over a batch of q_scales (B,) → (B, N, 1, 1)."""
        return self.q_basic.clamp_min(0.5) * q_scale.view(-1, 1, 1, 1)

    def fuse(self, z_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q_step, log_sigma, mu = self.y_prior_fusion(self.hyper_dec(z_hat)).chunk(3, 1)
        return q_step.clamp_min(Q_STEP_MIN), log_sigma, mu

    def spatial(self, y_hat1: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                q_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Step-2 (log σ, μ) over all N channels from the step-1 values (zero at step-2 positions)."""
        s0, m0, s1, m1 = self.y_spatial_prior(torch.cat([y_hat1, mu, log_sigma, q_step], 1)).chunk(4, 1)
        return torch.cat([s0, s1], 1), torch.cat([m0, m1], 1)


def checkerboard(n: int, h: int, w: int, device=None) -> torch.Tensor:
    """(1, n, h, w) step-1 mask: channel half 0 at 2×2 positions [[1,0],[0,1]], half 1 at the complement."""
    yy, xx = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    m0 = ((yy + xx) % 2 == 0).float()
    return torch.cat([m0.expand(n // 2, h, w), (1 - m0).expand(n - n // 2, h, w)], 0)[None]


def gaussian_likelihood(r: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """P(round(r) bin) of a zero-mean Gaussian with σ = exp(clamp(log σ)), floored at 1e-9."""
    sigma = torch.exp(log_sigma.clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX))
    inv = 1.0 / (sigma * math.sqrt(2.0))
    p = 0.5 * (torch.erfc(-(r + 0.5) * inv) - torch.erfc(-(r - 0.5) * inv))
    return p.clamp_min(1e-9)


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


class EVC(nn.Module):
    """One EVC size: an encoder, a decoder and the (shared) entropy model."""

    def __init__(self, cfg: EVCConfig, entropy: EntropyModel | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc = Encoder(cfg.enc, cfg.n)
        self.dec = Decoder(cfg.dec, cfg.n)
        self.entropy = entropy if entropy is not None else EntropyModel(cfg.n)

    def forward(self, x: torch.Tensor, q_scale: torch.Tensor) -> dict:
        """Training forward on (B, 3, H, W) in [0, 1] (H, W multiples of 64), one q_scale per sample (B,).

        Rate: additive uniform noise on the residuals and on z; distortion and the spatial prior's inputs:
        straight-through rounding. Returns x_hat, per-sample bits (B,), and the latent sizes.
        """
        em = self.entropy
        q = em.q_enc(q_scale)
        y = self.enc(x) / q
        z = em.hyper_enc(y)
        z_hat = ste_round(z)
        bits_z = -torch.log2(em.z_density.likelihood(z + torch.empty_like(z).uniform_(-0.5, 0.5)).clamp_min(1e-9))
        q_step, log_sigma, mu = em.fuse(z_hat)
        yq = y / q_step
        mask1 = checkerboard(em.n, y.shape[2], y.shape[3], y.device)
        noise = torch.empty_like(yq).uniform_(-0.5, 0.5)
        r1 = yq - mu
        y_hat1 = (ste_round(r1) + mu) * q_step * mask1
        bits1 = -torch.log2(gaussian_likelihood(r1 + noise, log_sigma)) * mask1
        log_sigma2, mu2 = em.spatial(y_hat1, mu, log_sigma, q_step)
        r2 = yq - mu2
        y_hat2 = (ste_round(r2) + mu2) * q_step * (1 - mask1)
        bits2 = -torch.log2(gaussian_likelihood(r2 + noise, log_sigma2)) * (1 - mask1)
        x_hat = self.dec((y_hat1 + y_hat2) * q)
        bits = bits_z.sum((1, 2, 3)) + bits1.sum((1, 2, 3)) + bits2.sum((1, 2, 3))
        return {"x_hat": x_hat, "bits": bits, "y_bits": (bits1 + bits2).sum((1, 2, 3))}


def pad_to(x: torch.Tensor, align: int = ALIGN) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % align, 0, -h % align))


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["EVC", "EVCConfig", "EntropyModel", "Encoder", "Decoder", "BitEstimator", "checkerboard",
           "gaussian_likelihood", "pad_to", "count_params", "LAMBDAS", "leaky", "SLOPE_SMALL"]
