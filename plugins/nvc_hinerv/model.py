"""The HiNeRV network (Kwan et al., "HiNeRV: Video Compression with Hierarchical Encoding-based Neural
Representation", NeurIPS 2023, arXiv 2306.09818), written from the facts in our HiNeRV notes (hinerv.md).

Owns: the network (base temporal grids -> stem -> stages of [LayerNorm, bilinear xS, + local-grid encoding,
ConvNeXt blocks] -> linear head + sigmoid), its exact frame/patch rendering, and the lists of prunable and grid
parameters. Does not own training, pruning, quantization or any bitstream layout.

Layout is channels-last (N, H, W, C). A patch is rendered on a padded window per stage (padding computed
backwards from the output); positions outside the frame are zeroed after the stem, after every block and in the
encodings, and bilinear upsampling replicates the frame border, so a patch equals the same crop of the frame.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configs import HiNeRVConfig

_EPS = 1e-6


class Grid(nn.Module):
    """A feature grid stored as a 2-D `weight` [prod(shape[:-1]), shape[-1]], initialised U(-1e-3, 1e-3)."""

    def __init__(self, *shape: int):
        super().__init__()
        self.shape = tuple(shape)
        rows = 1
        for s in shape[:-1]:
            rows *= s
        self.weight = nn.Parameter(torch.empty(rows, shape[-1]))
        nn.init.uniform_(self.weight, -1e-3, 1e-3)

    def grid(self) -> Tensor:
        return self.weight.view(self.shape)


def _time_lerp(t: Tensor, frames: int, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """Linear sampling of `steps` grid steps at frames t of `frames` (half-pixel, border clamp).

    src = (t + 0.5) * steps / frames - 0.5, computed in exact integer arithmetic up to the final fraction.
    Returns (i0, i1, w) with value = g[i0] * (1 - w) + g[i1] * w; w has shape (N, 1, 1, 1).
    """
    num = (2 * t + 1) * steps - frames
    den = 2 * frames
    i0 = torch.div(num, den, rounding_mode="floor")
    frac = (num - i0 * den).to(torch.float32) / den
    w = torch.where((i0 < 0) | (i0 >= steps - 1), torch.zeros_like(frac), frac)
    i0 = i0.clamp(0, steps - 1)
    i1 = (i0 + 1).clamp(max=steps - 1)
    return i0, i1, w.view(-1, 1, 1, 1)


def _conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """'same' conv on channels-last (N, H, W, C)."""
    return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class Block(nn.Module):
    """ConvNeXt block: dwconv k -> LN -> Linear -> GELU -> Linear (no biases), masked, + residual if same width."""

    def __init__(self, c_in: int, c_out: int, exp: float, k: int):
        super().__init__()
        hidden = int(c_out * exp)
        self.dwconv = nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, bias=False)
        self.fc1 = nn.Linear(c_in, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, c_out, bias=False)
        self.residual = c_in == c_out

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        y = _conv(x, self.dwconv)
        y = self.fc2(F.gelu(self.fc1(F.layer_norm(y, y.shape[-1:], eps=_EPS))))
        if mask is not None:
            y = y * mask
        return x + y if self.residual else y


class LocalEncoding(nn.Module):
    """Hierarchical local-grid encoding of one stage: levels [T/2^j, S, S, Cs*2^j], linear in t, concat, Linear."""

    def __init__(self, num_frames: int, scale: int, c: int, levels: int, c_out: int):
        super().__init__()
        self.frames = num_frames
        self.grids = nn.ModuleList(
            Grid(max(1, num_frames >> j), scale, scale, c << j) for j in range(levels))
        self.proj = nn.Linear(sum(g.shape[-1] for g in self.grids), c_out)
        nn.init.zeros_(self.proj.bias)

    def forward(self, t: Tensor) -> Tensor:
        """Encodings (N, S, S, C_out) for frames t."""
        feats = []
        for g in self.grids:
            i0, i1, w = _time_lerp(t, self.frames, g.shape[0])
            v = g.grid()
            feats.append(torch.lerp(v[i0], v[i1], w))
        return self.proj(torch.cat(feats, dim=-1))


class UpsamplingLevel(nn.Module):
    """LayerNorm -> bilinear xS (align_corners=False) -> + local encoding -> blocks."""

    def __init__(self, cfg: HiNeRVConfig, i: int, c_in: int, c_out: int, num_frames: int):
        super().__init__()
        self.scale = cfg.scales[i]
        c_loc = max(1, int(cfg.local_grid_channels * 0.5 ** i))
        self.enc = LocalEncoding(num_frames, self.scale, c_loc, cfg.local_grid_levels, c_in)
        self.blocks = nn.ModuleList(
            Block(c_in if j == 0 else c_out, c_out, cfg.exps[i], cfg.kernel_size) for j in range(cfg.depths[i]))


class HiNeRV(nn.Module):
    """HiNeRV for a `num_frames` x `height` x `width` video; renders frames or patches (see `forward`)."""

    def __init__(self, cfg: HiNeRVConfig, num_frames: int, height: int, width: int):
        super().__init__()
        self.cfg, self.num_frames, self.height, self.width = cfg, num_frames, height, width
        self.factor = cfg.factor
        hb, wb = height // self.factor, width // self.factor
        self.base = nn.ModuleList(
            Grid(max(1, cfg.base_grid_frames >> i), hb, wb, cfg.base_grid_channels << i)
            for i in range(cfg.base_grid_levels))
        c_base = sum(g.shape[-1] for g in self.base)
        ks = cfg.stem_kernel_size
        self.stem = nn.Conv2d(c_base, cfg.channels, ks, padding=ks // 2)
        nn.init.zeros_(self.stem.bias)
        widths = [cfg.channels >> i for i in range(len(cfg.scales))]
        self.stages = nn.ModuleList(
            UpsamplingLevel(cfg, i, widths[max(i - 1, 0)], widths[i], num_frames) for i in range(len(cfg.scales)))
        self.head = nn.Linear(widths[-1], 3)
        nn.init.zeros_(self.head.bias)
        # Patch padding, backwards from the output: stage i runs its blocks on a window padded by q[i] at its
        # output resolution and needs its input padded by p[i]; the stem input is padded by p[0] + ks // 2.
        r = cfg.kernel_size // 2
        self._q, self._p, out_pad = [], [], 0
        for s, d in zip(reversed(cfg.scales), reversed(cfg.depths)):
            q = out_pad + d * r
            out_pad = -(-(2 * q + s - 1) // (2 * s))  # ceil: input rows needed incl. the bilinear neighbours
            self._q.insert(0, q)
            self._p.insert(0, out_pad)
        self._stem_pad = self._p[0] + ks // 2

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, t: Tensor, yx: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        """Render N patches of `size` (h, w) with top-left output pixel yx[i] (N, 2) in frame t[i] (N,).

        yx=None and size=None render whole frames. Origins and sizes must be multiples of prod(scales)
        and patches must lie inside the frame (origins are not checked, to keep forward sync-free).
        Returns (N, h, w, 3) in [0, 1].
        """
        if (yx is None) != (size is None):
            raise ValueError("give both yx and size (patch mode) or neither (frame mode)")
        f = self.factor
        if size is None:
            return self._render(t, None, self.height // f, self.width // f)
        h, w = int(size[0]), int(size[1])
        if h <= 0 or w <= 0 or h % f or w % f or h > self.height or w > self.width:
            raise ValueError(f"patch size {h}x{w} must be positive multiples of {f} within "
                             f"the {self.height}x{self.width} frame")
        return self._render(t, yx.to(t.device).long() // f, h // f, w // f)

    def _window(self, o: Tensor, n: int, pad: int, full: int) -> tuple[Tensor, Tensor]:
        """Global coordinates (N, n + 2 pad) of a window around patch origins o (N,), and in-frame flags."""
        g = o[:, None] - pad + torch.arange(n + 2 * pad, device=o.device)
        return g, (g >= 0) & (g < full)

    def _render(self, t: Tensor, o: Tensor | None, h: int, w: int) -> Tensor:
        """o: patch origins at base resolution (N, 2) or None for frames; (h, w): patch size at base resolution."""
        t = t.long()
        n = t.shape[0]
        hf, wf = self.height // self.factor, self.width // self.factor
        bidx = torch.arange(n, device=t.device)
        # Base grid encoding (zero outside the frame) -> stem.
        if o is None:
            gy = gx = mask = None
        else:
            pad = self._stem_pad
            gy, vy = self._window(o[:, 0], h, pad, hf)
            gx, vx = self._window(o[:, 1], w, pad, wf)
            mask = (vy[:, :, None] & vx[:, None, :]).unsqueeze(-1)
            gy, gx = gy.clamp(0, hf - 1)[:, :, None], gx.clamp(0, wf - 1)[:, None, :]
        feats = []
        for g in self.base:
            i0, i1, wt = _time_lerp(t, self.num_frames, g.shape[0])
            v = g.grid()
            if o is None:
                a, b = v[i0], v[i1]
            else:
                a, b = v[i0[:, None, None], gy, gx], v[i1[:, None, None], gy, gx]
            feats.append(torch.lerp(a, b, wt))
        x = torch.cat(feats, dim=-1)
        if mask is not None:
            x = x * mask.to(x.dtype)
        x = _conv(x, self.stem)
        if mask is not None:
            x = x * mask.to(x.dtype)
        cur = self._stem_pad  # current window padding (at the current resolution)
        for st, p, q in zip(self.stages, self._p, self._q):
            s = st.scale
            if o is None:
                x = F.layer_norm(x, x.shape[-1:], eps=_EPS)
                x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=s, mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
                h, w, hf, wf = h * s, w * s, hf * s, wf * s
                e = st.enc(t)  # (N, S, S, C): broadcast over the S x S cells
                x = (x.unflatten(1, (h // s, s)).unflatten(3, (w // s, s)) + e[:, None, :, None]).flatten(3, 4)
                x = x.flatten(1, 2)
                mask = None
            else:
                # Take the p-padded input window, replicating the frame border (= bilinear clamping), LN, upsample.
                ry = (o[:, 0:1] - p + torch.arange(h + 2 * p, device=o.device)).clamp(0, hf - 1) - (o[:, 0:1] - cur)
                rx = (o[:, 1:2] - p + torch.arange(w + 2 * p, device=o.device)).clamp(0, wf - 1) - (o[:, 1:2] - cur)
                x = x[bidx[:, None, None], ry[:, :, None], rx[:, None, :]]
                x = F.layer_norm(x, x.shape[-1:], eps=_EPS)
                x = F.interpolate(x.permute(0, 3, 1, 2), scale_factor=s, mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
                c0 = s * p - q
                o, h, w, hf, wf = o * s, h * s, w * s, hf * s, wf * s
                x = x[:, c0:c0 + h + 2 * q, c0:c0 + w + 2 * q]
                _, vy = self._window(o[:, 0], h, q, hf)
                _, vx = self._window(o[:, 1], w, q, wf)
                # Window origins are all = -q (mod S): the local (u mod S, v mod S) index is shared by the batch.
                loc = (torch.arange(h + 2 * q, device=o.device) - q) % s
                e = st.enc(t)[:, loc[:, None], ((torch.arange(w + 2 * q, device=o.device) - q) % s)[None, :]]
                mask = (vy[:, :, None] & vx[:, None, :]).unsqueeze(-1).to(x.dtype)
                x = (x + e) * mask
                cur = q
            for blk in st.blocks:
                x = blk(x, mask)
        if o is not None:
            x = x[:, cur:cur + h, cur:cur + w]
        return torch.sigmoid(self.head(x))


def build_model(cfg: HiNeRVConfig, num_frames: int, height: int, width: int) -> HiNeRV:
    """HiNeRV for a video of `num_frames` frames of coded size height x width (multiples of prod(scales))."""
    f = cfg.factor
    if height <= 0 or width <= 0 or height % f or width % f:
        raise ValueError(f"coded size {width}x{height} must be a positive multiple of prod(scales)={f} "
                         f"in both dimensions (pad the video to a multiple of {f})")
    if num_frames < 1:
        raise ValueError("num_frames must be >= 1")
    return HiNeRV(cfg, num_frames, height, width)


def prunable_parameters(model: HiNeRV) -> list[tuple[str, nn.Parameter]]:
    """Weights that pruning may mask (§3.1): stem conv, block dwconv/fc1/fc2, head; no grids, F_enc or biases."""
    out = [("stem.weight", model.stem.weight)]
    for i, st in enumerate(model.stages):
        for j, b in enumerate(st.blocks):
            for name in ("dwconv", "fc1", "fc2"):
                out.append((f"stages.{i}.blocks.{j}.{name}.weight", getattr(b, name).weight))
    out.append(("head.weight", model.head.weight))
    return out


def grid_parameters(model: HiNeRV) -> list[tuple[str, nn.Parameter]]:
    """Base grids and local grids (each a 2-D `weight`); Quant-Noise applies to these too."""
    out = [(f"base.{i}.weight", g.weight) for i, g in enumerate(model.base)]
    for i, st in enumerate(model.stages):
        out += [(f"stages.{i}.enc.grids.{j}.weight", g.weight) for j, g in enumerate(st.enc.grids)]
    return out
