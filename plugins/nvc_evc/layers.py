"""EVC building blocks (Wang et al., ICLR 2023; layout per our notes §2.2–2.3), with channel masks and slimming.

Transform blocks (encoder/decoder, slimmable):

* `ResBlockDown(a→b)`: conv3×3/2 → LeakyReLU → conv3×3 → LeakyReLU(0.1), plus a 1×1/2 skip.
* `ResBlockUp(a→b)`: 1×1 conv to 4b + PixelShuffle(2) → LeakyReLU → conv3×3 → LeakyReLU(0.1), plus a 1×1 conv +
  PixelShuffle(2) skip.
* `DepthConvBlock(c)` = `DepthConv` (1×1, LeakyReLU, depthwise 3×3, LeakyReLU, 1×1, LeakyReLU, + identity) then
  `ConvFFN` (1×1 to 4c, ReLU, 1×1 back, ReLU, + identity).

Every transform block has named mask points (`masks`: name → (C,) buffer, absent = all ones) where a channel set is
multiplied by its mask, and a `slim(keep)` that returns the physically smaller block once masked channels are 0:

* ``"out"``: the block's output channels (the stage's width, shared with the next block through the residuals),
* ``"mid"``: the internal width of `ResBlockDown`/`ResBlockUp`/`DepthConv`, ``"ffn"``: the 4c width of `ConvFFN`.

Prior blocks (`PriorDepthConv`, `PriorFFN`, `PriorDCB`) follow the hyperprior file of our notes (no activation after
the depthwise conv and after the last 1×1; FFN width max(min(4c, 1024), 2c)) and use dyadic LeakyReLU slopes
(1/64 for 0.01, 1/8 for 0.1) so that `fixedpoint.py` runs the identical network in integers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SLOPE_SMALL = 1 / 64  # stands for EVC's LeakyReLU(0.01) in the entropy-parameter path (dyadic: exact in integers)
SLOPE_BIG = 1 / 8  # stands for LeakyReLU(0.1) there


def _keep_idx(keep: torch.Tensor | None, n: int) -> torch.Tensor:
    return torch.arange(n) if keep is None else keep


def _slim_conv(conv: nn.Conv2d, out_keep=None, in_keep=None, depthwise: bool = False) -> nn.Conv2d:
    """A copy of `conv` keeping output channels `out_keep` and input channels `in_keep` (index tensors)."""
    o = _keep_idx(out_keep, conv.out_channels)
    w = conv.weight.data[o]
    if not depthwise:
        w = w[:, _keep_idx(in_keep, conv.in_channels)]
    groups = len(o) if depthwise else 1
    new = nn.Conv2d(w.shape[1] * groups, len(o), conv.kernel_size, conv.stride, conv.padding, groups=groups,
                    bias=conv.bias is not None)
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.data[o])
    return new


def _shuffle_idx(keep: torch.Tensor) -> torch.Tensor:
    """Conv output channels feeding PixelShuffle(2) channels `keep` (4 consecutive each)."""
    return (keep[:, None] * 4 + torch.arange(4)[None]).reshape(-1)


class Maskable(nn.Module):
    """Holds named channel masks; `_m(x, name)` multiplies NCHW `x` by the mask if one is set."""

    def __init__(self) -> None:
        super().__init__()
        self.masks: dict[str, torch.Tensor] = {}

    def _m(self, x: torch.Tensor, name: str) -> torch.Tensor:
        m = self.masks.get(name)
        return x if m is None else x * m.view(1, -1, 1, 1)


class ResBlockDown(Maskable):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 2, 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, 2)
        self.widths = {"mid": cout, "out": cout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._m(F.leaky_relu(self.conv1(x), 0.01), "mid")
        h = F.leaky_relu(self.conv2(h), 0.1)
        return self._m(h + self.skip(x), "out")

    def slim(self, in_keep, keep: dict) -> "ResBlockDown":
        mid, out = keep.get("mid"), keep.get("out")
        new = ResBlockDown(1, 1)
        new.conv1 = _slim_conv(self.conv1, mid, in_keep)
        new.conv2 = _slim_conv(self.conv2, out, mid)
        new.skip = _slim_conv(self.skip, out, in_keep)
        new.widths = {"mid": new.conv1.out_channels, "out": new.conv2.out_channels}
        return new


class ResBlockUp(Maskable):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.Conv2d(cin, 4 * cout, 1)
        self.conv = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, 4 * cout, 1)
        self.widths = {"mid": cout, "out": cout}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._m(F.leaky_relu(F.pixel_shuffle(self.up(x), 2), 0.01), "mid")
        h = F.leaky_relu(self.conv(h), 0.1)
        return self._m(h + F.pixel_shuffle(self.skip(x), 2), "out")

    def slim(self, in_keep, keep: dict) -> "ResBlockUp":
        mid, out = keep.get("mid"), keep.get("out")
        new = ResBlockUp(1, 1)
        new.up = _slim_conv(self.up, None if mid is None else _shuffle_idx(mid), in_keep)
        new.conv = _slim_conv(self.conv, out, mid)
        new.skip = _slim_conv(self.skip, None if out is None else _shuffle_idx(out), in_keep)
        new.widths = {"mid": new.conv.in_channels, "out": new.conv.out_channels}
        return new


class DepthConvBlock(Maskable):
    """DepthConv(c) then ConvFFN(c) of the transforms (width-preserving; the residuals tie in and out channels)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dc1 = nn.Conv2d(c, c, 1)
        self.dw = nn.Conv2d(c, c, 3, 1, 1, groups=c)
        self.dc2 = nn.Conv2d(c, c, 1)
        self.ff1 = nn.Conv2d(c, 4 * c, 1)
        self.ff2 = nn.Conv2d(4 * c, c, 1)
        self.widths = {"mid": c, "ffn": 4 * c, "out": c}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.dc1(x), 0.01)
        h = self._m(F.leaky_relu(self.dw(h), 0.01), "mid")
        x = self._m(x + F.leaky_relu(self.dc2(h), 0.01), "out")
        h = self._m(F.relu(self.ff1(x)), "ffn")
        return self._m(x + F.relu(self.ff2(h)), "out")

    def slim(self, in_keep, keep: dict) -> "DepthConvBlock":
        mid, ffn, out = keep.get("mid"), keep.get("ffn"), in_keep
        new = DepthConvBlock(1)
        new.dc1 = _slim_conv(self.dc1, mid, out)
        new.dw = _slim_conv(self.dw, mid, None, depthwise=True)
        new.dc2 = _slim_conv(self.dc2, out, mid)
        new.ff1 = _slim_conv(self.ff1, ffn, out)
        new.ff2 = _slim_conv(self.ff2, out, ffn)
        new.widths = {"mid": new.dw.out_channels, "ffn": new.ff1.out_channels, "out": new.dc2.out_channels}
        return new


def leaky(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.where(x >= 0, x, x * slope)


class PriorDepthConv(nn.Module):
    """Hyperprior-file DepthConv(a→b): 1×1 (a→a), LeakyReLU(1/64), depthwise 3×3, 1×1 (a→b), + identity/1×1 adaptor."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 1)
        self.dw = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin)
        self.conv2 = nn.Conv2d(cin, cout, 1)
        self.adaptor = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(self.dw(leaky(self.conv1(x), SLOPE_SMALL)))
        return h + (x if self.adaptor is None else self.adaptor(x))


def ffn_width(c: int) -> int:
    return max(min(4 * c, 1024), 2 * c)


class PriorFFN(nn.Module):
    """ConvFFN(c): 1×1 to max(min(4c, 1024), 2c), LeakyReLU(1/8), 1×1 back, + identity."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, ffn_width(c), 1)
        self.conv2 = nn.Conv2d(ffn_width(c), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(leaky(self.conv1(x), SLOPE_BIG))


class PriorDCB(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.dc = PriorDepthConv(cin, cout)
        self.ffn = PriorFFN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.dc(x))


class SubpelConv(nn.Module):
    """1×1 conv to 4c then PixelShuffle(2)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 4 * cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)
