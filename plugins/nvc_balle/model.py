"""The Ballé 2017 network (ICLR 2017, "End-to-end optimized image compression"), our re-implementation.

    g_a: conv 9×9/4 (3→N) GDN, conv 5×5/2 (N→N) GDN, conv 5×5/2 (N→N)          total downsampling 16
    g_s: deconv 5×5/2 (N→N) IGDN, deconv 5×5/2 (N→N) IGDN, deconv 9×9/4 (N→3)
    prior: `FactorizedDensity(N)` (one non-parametric density per latent channel)

Inputs are RGB in [0, 1], NCHW, height and width multiples of 16 (`pad16`). The training forward returns the
reconstruction and the bits per pixel under additive uniform noise; the loss is bpp + λ·MSE on the 0..255 scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nvc_pipe.intra.factorized import FactorizedDensity
from nvc_pipe.intra.gdn import GDN, IGDN

STRIDE = 16


@dataclass(frozen=True)
class BalleConfig:
    channels: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BalleConfig":
        if set(d) != {"channels"} or not isinstance(d["channels"], int) or not 1 <= d["channels"] <= 1024:
            raise ValueError(f"bad Ballé config {d!r}")
        return cls(**d)


class BalleModel(nn.Module):
    def __init__(self, cfg: BalleConfig) -> None:
        super().__init__()
        n = cfg.channels
        self.cfg = cfg
        self.analysis = nn.Sequential(
            nn.Conv2d(3, n, 9, stride=4, padding=4), GDN(n),
            nn.Conv2d(n, n, 5, stride=2, padding=2), GDN(n),
            nn.Conv2d(n, n, 5, stride=2, padding=2))
        self.synthesis = nn.Sequential(
            nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1), IGDN(n),
            nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1), IGDN(n),
            nn.ConvTranspose2d(n, 3, 9, stride=4, padding=4, output_padding=3))
        self.prior = FactorizedDensity(n)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training forward: (x̂, bpp) with y + U(−½, ½) in place of rounding."""
        y = self.analysis(x)
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5)
        bits = -torch.log2(self.prior.likelihood(y_tilde)).sum()
        bpp = bits / (x.shape[0] * x.shape[2] * x.shape[3])
        return self.synthesis(y_tilde), bpp


def rd_loss(x: torch.Tensor, x_hat: torch.Tensor, bpp: torch.Tensor, lmbda: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(bpp + λ·MSE₂₅₅, MSE₂₅₅)."""
    mse = F.mse_loss(x_hat, x) * 255.0**2
    return bpp + lmbda * mse, mse


def pad16(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad NCHW on the right/bottom to multiples of 16."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % STRIDE, (-w) % STRIDE
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
