"""Uniform symmetric weight quantization (HiNeRV §3.3) and Quant-Noise (Fan et al. 2020, HiNeRV §3.2).

For n bits: ``scale = 2·max|x| / (2^n − 1) + 1e-6`` with the max taken *along* one axis (one scale per slice over
the other axes), ``q = clamp(round(x / scale), −2^(n−1), 2^(n−1) − 1)``, ``x̂ = q · scale``.

Axis rule: among the axes longer than 20 (each slice then holds < 5 % of the tensor), take the longest (the first
one on ties); if none qualifies, one scale covers the tensor (axis −1).

Deviation from the reference, on purpose: the scale is rounded to fp16 *before* ``q`` is computed, so the encoder
quantizes with exactly the scale the decoder multiplies by (the reference stores fp16 scales but rounds with the
fp32 ones).
"""

from __future__ import annotations

import torch

from .bitstream.tensors import QuantizedTensor

AXIS_MIN_LENGTH = 20


def choose_axis(shape: tuple[int, ...]) -> int:
    """The axis the max is taken along, or -1 for one scale per tensor."""
    candidates = [i for i, d in enumerate(shape) if d > AXIS_MIN_LENGTH]
    if not candidates:
        return -1
    return max(candidates, key=lambda i: (shape[i], -i))


def scale_shape(shape: tuple[int, ...], axis: int) -> tuple[int, ...]:
    """Shape of the scale tensor (the tensor's shape with `axis` reduced to 1; all ones for axis -1)."""
    if axis < 0:
        return tuple(1 for _ in shape)
    return tuple(1 if i == axis else d for i, d in enumerate(shape))


def fake_quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """x → q·scale in x's dtype, differentiable nowhere (used detached by Quant-Noise)."""
    axis = choose_axis(tuple(x.shape))
    xf = x.detach().float()
    amax = xf.abs().amax() if axis < 0 else xf.abs().amax(dim=axis, keepdim=True)
    scale = (2 * amax / (2**bits - 1) + 1e-6).half().float()
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return (torch.clamp(torch.round(xf / scale), lo, hi) * scale).to(x.dtype)


def quantize(x: torch.Tensor, bits: int) -> QuantizedTensor:
    """Quantize a float tensor with the axis rule above."""
    axis = choose_axis(tuple(x.shape))
    xf = x.detach().float().cpu()
    amax = xf.abs().amax() if axis < 0 else xf.abs().amax(dim=axis, keepdim=True)
    scale16 = (2 * amax / (2**bits - 1) + 1e-6).half()
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = torch.clamp(torch.round(xf / scale16.float()), lo, hi).to(torch.int64)
    return QuantizedTensor(q.numpy(), scale16.reshape(scale_shape(tuple(x.shape), axis)).numpy(), axis, bits)


def quant_noise(w: torch.Tensor, bits: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Quant-Noise: replace a random fraction `p` of `w` by its quantized value (detached: no STE).

    The gradient flows only through the elements kept in float, as in HiNeRV's default (`--quant-ste false`).
    """
    mask = torch.rand(w.shape, device=w.device, generator=generator) < p
    return torch.where(mask, fake_quantize(w, bits).detach(), w)
