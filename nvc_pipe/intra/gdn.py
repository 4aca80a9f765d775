"""Generalized divisive normalization (GDN) and its approximate inverse (IGDN), our own implementation.

    GDN:  y_i = x_i / sqrt(β_i + Σ_j γ_ij · x_j²)        IGDN: y_i = x_i · sqrt(β_i + Σ_j γ_ij · x_j²)

β and γ are stored through a non-negative reparameterisation: a raw parameter p maps to
max(p, bound)² − pedestal, with pedestal = 2⁻³⁶ and bound = sqrt(minimum + pedestal). So β ≥ `BETA_MIN` (1e-6) and
γ ≥ 0 whatever an optimizer does to p. The lower bound passes gradients that point back into the allowed region
(otherwise a parameter pushed below its bound would be stuck there for good). Initial values: β = 1, γ = 0.1·I.

Public: `GDN(channels, inverse=False)`, `IGDN(channels)`, `NonNegative`, `BETA_MIN`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

BETA_MIN = 1e-6
PEDESTAL = 2.0**-36


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows where it would raise x (or where x is already above the bound)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, bound: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        passes = (x >= ctx.bound) | (grad < 0)
        return grad * passes.to(grad.dtype), None


class NonNegative(nn.Module):
    """Maps a raw parameter to a value ≥ `minimum` (squared, lower-bounded, with a small pedestal)."""

    def __init__(self, minimum: float = 0.0) -> None:
        super().__init__()
        self.minimum = float(minimum)
        self.bound = (self.minimum + PEDESTAL) ** 0.5

    def init(self, value: torch.Tensor) -> torch.Tensor:
        """The raw parameter that maps to `value`."""
        return torch.sqrt(torch.clamp(value + PEDESTAL, min=PEDESTAL))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        return _LowerBound.apply(raw, self.bound) ** 2 - PEDESTAL


class GDN(nn.Module):
    """GDN over the channel axis of NCHW tensors; `inverse=True` gives IGDN."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = BETA_MIN, gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_map = NonNegative(beta_min)
        self.gamma_map = NonNegative(0.0)
        self.beta = nn.Parameter(self.beta_map.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_map.init(gamma_init * torch.eye(channels)))

    def effective(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The (β, γ) actually used: β ≥ beta_min, γ ≥ 0."""
        return self.beta_map(self.beta), self.gamma_map(self.gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective()
        c = gamma.shape[0]
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        return x * torch.sqrt(norm) if self.inverse else x * torch.rsqrt(norm)


class IGDN(GDN):
    """Inverse GDN (the synthesis-side nonlinearity)."""

    def __init__(self, channels: int, beta_min: float = BETA_MIN, gamma_init: float = 0.1):
        super().__init__(channels, inverse=True, beta_min=beta_min, gamma_init=gamma_init)
