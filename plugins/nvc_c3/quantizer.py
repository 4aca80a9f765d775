"""Latent quantization proxies and the latent rate: soft-rounding, Kumaraswamy noise, STE, quantized Laplace bits.

Pure functions on tensors, no state. Notation follows C3 (Kim et al., CVPR 2024, arXiv 2312.02753, §3 / App. A),
which takes soft-rounding from Agustsson & Theis, "Universally Quantized Neural Compression", NeurIPS 2020:

    s_T(y)   = m + tanh((y − m) / T) / (2 tanh(1 / (2T))),     m = ⌊y⌋ + ½          (soft-round)
    s_T⁻¹(z) = m + T · atanh(2 tanh(1 / (2T)) · (z − m)),      m = ⌊z⌋ + ½          (its inverse)
    r_T(z)   = s_T⁻¹(z − ½) + ½                                                      (conditional mean)
    ŷ        = r_T(s_T(y) + u),  u = K⁻¹(v; a, b) − ½,  v ~ U(0, 1)                  (training proxy, stage 1)

s_T tends to rounding as T → 0 and to the identity as T → ∞. The Kumaraswamy inverse CDF is
K⁻¹(v) = (1 − (1 − v)^(1/b))^(1/a) with b = (2^a (a − 1) + 1) / a, which puts the mode at ½ (a = 1: uniform).
Stage 2 uses `ste_round`: forward `round`, backward the gradient of s_T (C3: T = 1e-4).

All quantities are in *symbol units* (latent / q_step). The rate of a symbol k under Laplace(μ, b) is
−log2(F(k + ½) − F(k − ½)), capped at 16 bits (C3 §2.5 of our notes), computed in a numerically stable form.
"""

from __future__ import annotations

import math

import torch

MAX_BITS_PER_SYMBOL = 16.0


def soft_round(y: torch.Tensor, temperature: float) -> torch.Tensor:
    """s_T(y): a differentiable staircase; → round(y) as T → 0, → y as T → ∞."""
    m = torch.floor(y) + 0.5
    return m + torch.tanh((y - m) / temperature) / (2.0 * math.tanh(1.0 / (2.0 * temperature)))


def soft_round_inverse(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """s_T⁻¹(z) (the argument of atanh is clamped just inside (−1, 1))."""
    m = torch.floor(z) + 0.5
    arg = (2.0 * math.tanh(1.0 / (2.0 * temperature))) * (z - m)
    return m + temperature * torch.atanh(arg.clamp(-1 + 1e-6, 1 - 1e-6))


def soft_round_conditional_mean(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """r_T(z) = s_T⁻¹(z − ½) + ½: E[y | s_T(y) + u = z] for uniform u (Agustsson & Theis 2020, eq. 7)."""
    return soft_round_inverse(z - 0.5, temperature) + 0.5


def kumaraswamy_b(a: float) -> float:
    """b such that the Kumaraswamy(a, b) mode is ½ (C3); b = 1 when a = 1."""
    if a == 1.0:
        return 1.0
    return (2.0**a * (a - 1.0) + 1.0) / a


def kumaraswamy_noise(shape, a: float, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu") -> torch.Tensor:
    """u = K⁻¹(v; a, b) − ½ ∈ (−½, ½), v ~ U(0, 1); mode at 0 for a > 1, uniform for a = 1."""
    b = kumaraswamy_b(a)
    v = torch.rand(shape, generator=generator, device=device).clamp(1e-6, 1 - 1e-6)
    return (1.0 - (1.0 - v) ** (1.0 / b)) ** (1.0 / a) - 0.5


def noisy_soft_round(y: torch.Tensor, temperature: float, a: float,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Stage-1 proxy ŷ = r_T(s_T(y) + u) with Kumaraswamy noise u."""
    u = kumaraswamy_noise(y.shape, a, generator, y.device)
    return soft_round_conditional_mean(soft_round(y, temperature) + u, temperature)


def ste_round(y: torch.Tensor, temperature: float = 1e-4) -> torch.Tensor:
    """Forward round(y); backward through s_T(y) (C3's `ste_soft_round`)."""
    soft = soft_round(y, temperature)
    return soft + (torch.round(y) - soft).detach()


def laplace_bits(symbols: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor,
                 max_bits: float = MAX_BITS_PER_SYMBOL) -> torch.Tensor:
    """−log2 P(k) for Laplace(mean, scale) integrated over [k − ½, k + ½], capped at `max_bits` (16 in training).

    Computed in the log domain on the mirrored bin (the Laplace is symmetric): with c = −|k − mean| ≤ 0,
    a bin entirely left of the mean has log P = log ½ + (c + ½)/b + log(1 − e^(−1/b)) (no underflow, useful
    gradients far in the tail); the bin holding the mean has P = 1 − ½e^((c − ½)/b) − ½e^(−(c + ½)/b).
    """
    c = -(symbols - mean).abs()
    inv_b = 1.0 / scale
    tail = math.log(0.5) + (c + 0.5) * inv_b + torch.log(-torch.expm1(-inv_b))
    hi = (c + 0.5).clamp(min=0)
    centre = torch.log((1 - 0.5 * torch.exp((c - 0.5) * inv_b) - 0.5 * torch.exp(-hi * inv_b)).clamp_min(1e-30))
    bits = -torch.where(c <= -0.5, tail, centre) / math.log(2.0)
    return bits.clamp(max=max_bits)
