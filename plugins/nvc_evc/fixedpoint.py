"""The EVC entropy-parameter path in fixed point: hyper_dec, y_prior_fusion and y_spatial_prior on integers.

Why: the coder's probabilities come from these networks; a float ulp of difference between the encoder's and the
decoder's machine would desynchronise the range coder. So both sides run this integer twin of the float networks
(the float ones are only used in training), and every value handed to the coder is a function of integers.

Arithmetic (normative, docs/bitstream.md §9.4):
* Activations are integers with F = 12 fractional bits, clamped to ±2^24 after every layer.
* Each conv output channel o has an integer weight row w_o (|w| ≤ 2^11) with step 2^−e_o and an integer bias b_o
  with step 2^−(F + e_o): acc_o = Σ w_o·a + b_o, a'_o = rshift(acc_o, e_o), rshift(v, s) = ⌊(v + 2^(s−1)) / 2^s⌋.
  e_o = min(11 − ex_o, 24, bias bound) where max|W_o| = f·2^ex_o, f ∈ [0.5, 1) (frexp), so |w| ≤ 2^11.
* LeakyReLU with slope 2^−k: a if a ≥ 0 else rshift(a, k). PixelShuffle is a permutation.
* Only 1×1 convs (a matrix product) and depthwise 3×3 convs (9 shifted products, zero padding) occur.

Every intermediate is an integer below 2^53 (|a|·|w|·fan-in ≤ 2^24·2^11·2^11 plus |b| < 2^50), so holding the
integers in float64 tensors is exact whatever the summation order, thread count or BLAS: the results equal the
int64 reference `int_reference_conv1x1` (tested), on any CPU or GPU that has IEEE float64.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .layers import SLOPE_BIG, SLOPE_SMALL, PriorDCB, PriorDepthConv, PriorFFN, SubpelConv
from .model import EntropyModel

FRAC = 12
ONE = 1 << FRAC
A_MAX = float(1 << 24)
W_BITS = 11
E_MAX = 24
K_SMALL, K_BIG = 6, 3  # slopes 1/64, 1/8
assert 2.0 ** -K_SMALL == SLOPE_SMALL and 2.0 ** -K_BIG == SLOPE_BIG


def rshift(v: torch.Tensor, s) -> torch.Tensor:
    """⌊(v + 2^(s−1)) / 2^s⌋ on integer-valued float64 (s ≥ 1; a tensor broadcasts per channel)."""
    p = torch.as_tensor(2.0, dtype=torch.float64, device=v.device) ** s
    return torch.floor((v + p / 2) / p)


def clamp_act(a: torch.Tensor) -> torch.Tensor:
    return a.clamp(-A_MAX, A_MAX)


def ileaky(a: torch.Tensor, k: int) -> torch.Tensor:
    return torch.where(a >= 0, a, rshift(a, k))


class IntConv:
    """Integer twin of a 1×1 or depthwise 3×3 nn.Conv2d (see the module doc for the rounding)."""

    def __init__(self, conv: nn.Conv2d, device=None) -> None:
        w = conv.weight.detach().double().cpu().numpy()
        b = (conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(w.shape[0]))
        out = w.shape[0]
        self.depthwise = conv.groups > 1
        if self.depthwise != (conv.kernel_size == (3, 3)) or (not self.depthwise and conv.kernel_size != (1, 1)):
            raise ValueError("fixed point supports 1×1 and depthwise 3×3 convolutions only")
        wmax = np.abs(w.reshape(out, -1)).max(1)
        bmax = np.abs(b)
        e = np.full(out, E_MAX, dtype=np.int64)
        nz = wmax > 0
        e[nz] = np.minimum(e[nz], W_BITS - np.frexp(wmax[nz])[1])
        bnz = bmax > 0
        e[bnz] = np.minimum(e[bnz], 49 - FRAC - np.frexp(bmax[bnz])[1])
        self.e = e
        scale = np.ldexp(1.0, e)  # exact powers of two
        self.w = torch.tensor(np.round(w * scale.reshape(-1, 1, 1, 1)), dtype=torch.float64, device=device)
        self.b = torch.tensor(np.round(b * np.ldexp(1.0, e + FRAC)), dtype=torch.float64, device=device)
        self.shift = torch.tensor(e, dtype=torch.float64, device=device).view(1, -1, 1, 1)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        if self.depthwise:
            n, c, h, w = a.shape
            p = F.pad(a, (1, 1, 1, 1))
            acc = torch.zeros_like(a)
            for dy in range(3):
                for dx in range(3):
                    acc = acc + p[:, :, dy:dy + h, dx:dx + w] * self.w[:, 0, dy, dx].view(1, -1, 1, 1)
        else:
            acc = torch.einsum("oi,nihw->nohw", self.w[:, :, 0, 0], a)
        return clamp_act(rshift(acc + self.b.view(1, -1, 1, 1), self.shift))


class IntDCB:
    def __init__(self, m: PriorDCB, device=None) -> None:
        dc: PriorDepthConv = m.dc
        ffn: PriorFFN = m.ffn
        self.c1, self.dw, self.c2 = IntConv(dc.conv1, device), IntConv(dc.dw, device), IntConv(dc.conv2, device)
        self.adaptor = IntConv(dc.adaptor, device) if dc.adaptor is not None else None
        self.f1, self.f2 = IntConv(ffn.conv1, device), IntConv(ffn.conv2, device)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        h = self.c2(self.dw(ileaky(self.c1(a), K_SMALL)))
        a = clamp_act(h + (a if self.adaptor is None else self.adaptor(a)))
        return clamp_act(a + self.f2(ileaky(self.f1(a), K_BIG)))


class IntSubpel:
    def __init__(self, m: SubpelConv, device=None) -> None:
        self.conv = IntConv(m.conv, device)

    def __call__(self, a: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(a), 2)


def _int_seq(seq: nn.Sequential, device) -> list:
    out = []
    for m in seq:
        out.append(IntDCB(m, device) if isinstance(m, PriorDCB) else IntSubpel(m, device))
    return out


def _run(layers: list, a: torch.Tensor) -> torch.Tensor:
    for f in layers:
        a = f(a)
    return a


class IntPrior:
    """Integer hyper_dec → y_prior_fusion and y_spatial_prior of an `EntropyModel` (weights frozen at build)."""

    def __init__(self, em: EntropyModel, device=None) -> None:
        self.n = em.n
        self.device = device
        self.hyper_dec = _int_seq(em.hyper_dec, device)
        self.fusion = _int_seq(em.y_prior_fusion, device)
        self.spatial_prior = _int_seq(em.y_spatial_prior, device)

    def fuse(self, z_hat: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Integer ẑ (1, N, h, w) → (q_step, log σ, μ) in units of 2^−F, q_step ≥ ½."""
        a = torch.as_tensor(np.asarray(z_hat, dtype=np.float64) * ONE, device=self.device)
        q_step, log_sigma, mu = _run(self.fusion, _run(self.hyper_dec, a)).chunk(3, 1)
        return q_step.clamp_min(ONE // 2), log_sigma, mu

    def spatial(self, y_hat1: torch.Tensor, mu: torch.Tensor, log_sigma: torch.Tensor,
                q_step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0, m0, s1, m1 = _run(self.spatial_prior, torch.cat([y_hat1, mu, log_sigma, q_step], 1)).chunk(4, 1)
        return torch.cat([s0, s1], 1), torch.cat([m0, m1], 1)


def y_hat_fixed(r: torch.Tensor, mu: torch.Tensor, q_step: torch.Tensor) -> torch.Tensor:
    """Step-1 value (r + μ)·q_step in units of 2^−F from the integer residual r and fixed-point μ, q_step."""
    return clamp_act(rshift((r * ONE + mu) * q_step, FRAC))


def int_reference_conv1x1(conv: IntConv, a: np.ndarray) -> np.ndarray:
    """int64 numpy reference of a 1×1 `IntConv` (tests: the float64 path must equal it exactly)."""
    w = conv.w[:, :, 0, 0].cpu().numpy().astype(np.int64)
    acc = np.einsum("oi,nihw->nohw", w, a.astype(np.int64)) + conv.b.cpu().numpy().astype(np.int64)[None, :, None, None]
    e = conv.e[None, :, None, None]
    out = (acc + (np.int64(1) << (e - 1))) >> e
    return np.clip(out, -int(A_MAX), int(A_MAX))
