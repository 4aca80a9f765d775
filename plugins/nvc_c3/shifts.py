"""Stacks of shifted windows of one tensor, with a scatter-add backward: small convolutions as one matmul.

C3's first ARM layer (a few dozen causal offsets, 1 input channel) and the synthesis's 3 → 3 residual convs are
convolutions with tiny channel counts, where the CPU convolution's backward is several times its forward (measured
on a 256×144×8 patch: docs/perf.md). Written as "gather the shifted windows, then one matmul", both directions are
plain copies and one GEMM. `shifted_windows` is that gather; autograd sees one node whose backward adds each
window's gradient back into place (a strided in-place add per window, no zero-filled copy per window).
"""

from __future__ import annotations

import torch


class _ShiftedWindows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, starts: tuple[tuple[int, int, int], ...], size: tuple[int, int, int]):
        t, h, w = size
        out = x.new_empty(len(starts), *x.shape[:-3], t, h, w)
        for i, (a, b, c) in enumerate(starts):
            out[i] = x[..., a : a + t, b : b + h, c : c + w]
        ctx.meta = (x.shape, starts, size)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        shape, starts, (t, h, w) = ctx.meta
        gx = grad.new_zeros(shape)
        for i, (a, b, c) in enumerate(starts):
            gx[..., a : a + t, b : b + h, c : c + w] += grad[i]
        return gx, None, None


def shifted_windows(x: torch.Tensor, starts, size: tuple[int, int, int]) -> torch.Tensor:
    """x (..., T', H', W') → (len(starts), ..., T, H, W): the window of `size` starting at each (t, y, x) of
    `starts` (every window inside x)."""
    return _ShiftedWindows.apply(x, tuple(tuple(s) for s in starts), tuple(size))
