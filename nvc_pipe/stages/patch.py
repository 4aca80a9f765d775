"""Patching stage: put a segment's frames on the device, padded to the coded size, and lay out training patches.

The coded size is the frame size rounded up to a multiple of the model's upsampling product (edge pixels
replicated; the decoder crops them back). Patches tile each coded frame; the last row/column of patches is moved
inwards so every patch lies inside the frame (they may overlap). One epoch visits every (frame, patch) once.
Temporal segmentation happens before this stage, in demux (`--segment-frames`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..pipeline import Work

RENDER_TILE_PIXELS = 1 << 22  # frames above this many (coded) pixels render in tiles of at most 1 << 20


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def coded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    return round_up(height, multiple), round_up(width, multiple)


@dataclass
class PatchData:
    """A segment resident on the device, plus the patch layout used for training."""

    frames: torch.Tensor  # (T, Hc, Wc, 3) integer samples, padded
    max_value: int
    height: int  # original size (crop on output)
    width: int
    patch: tuple[int, int]  # (ph, pw), multiples of the model's upsampling product
    origins: torch.Tensor  # (P, 3) int64: (t, y, x) of every training patch
    multiple: int = 1  # the model's upsampling product (patch sizes and origins are multiples of it)

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def coded_size(self) -> tuple[int, int]:
        return self.frames.shape[1], self.frames.shape[2]

    def targets(self, origins: torch.Tensor) -> torch.Tensor:
        """Float targets in [0, 1], (N, ph, pw, 3), for patch origins (N, 3)."""
        ph, pw = self.patch
        dev = self.frames.device
        rows = origins[:, 1:2] + torch.arange(ph, device=dev)
        cols = origins[:, 2:3] + torch.arange(pw, device=dev)
        out = self.frames[origins[:, 0, None, None], rows[:, :, None], cols[:, None, :]]
        return out.float() / self.max_value

    def frame_targets(self, t: torch.Tensor) -> torch.Tensor:
        return self.frames[t].float() / self.max_value


def patch_origins(num_frames: int, coded: tuple[int, int], patch: tuple[int, int]) -> torch.Tensor:
    """Every (t, y, x) patch origin, last row/column clamped inside the frame."""
    ys = sorted({min(y, coded[0] - patch[0]) for y in range(0, coded[0], patch[0])})
    xs = sorted({min(x, coded[1] - patch[1]) for x in range(0, coded[1], patch[1])})
    grid = np.array([(t, y, x) for t in range(num_frames) for y in ys for x in xs], dtype=np.int64)
    return torch.from_numpy(grid)


def render_frames(forward, model: torch.nn.Module, t: torch.Tensor, coded: tuple[int, int],
                  tile: tuple[int, int]) -> torch.Tensor:
    """Frames `t` (N,) as (N, Hc, Wc, 3) from `forward(model, t, yx, size)`: one frame-mode call when the frame has
    at most RENDER_TILE_PIXELS, else tiles of `tile` (multiples of the model's upsampling product, inside the frame;
    the last row/column moved inwards, overlapping, as training patches are laid out)."""
    hc, wc = coded
    if hc * wc <= RENDER_TILE_PIXELS:
        return forward(model, t, None, None)
    th, tw = min(tile[0], hc), min(tile[1], wc)
    origins = patch_origins(1, coded, (th, tw))[:, 1:].tolist()
    out = None
    for y, x in origins:
        yx = torch.tensor([[y, x]], device=t.device).expand(t.shape[0], 2)
        part = forward(model, t, yx, (th, tw))
        if out is None:
            out = part.new_empty((t.shape[0], hc, wc, part.shape[-1]))
        out[:, y : y + th, x : x + tw] = part
    return out


def render_tile(multiple: int, side: int = 1024) -> tuple[int, int]:
    """The largest square tile of at most `side` pixels a side that is a multiple of `multiple`."""
    edge = max(multiple, side // multiple * multiple)
    return edge, edge


def make_patch_data(rgb: np.ndarray, max_value: int, multiple: int, patch: tuple[int, int] | None,
                    device: torch.device) -> PatchData:
    """Build `PatchData` from (T, H, W, 3) frames; `patch=None` trains on whole (coded) frames."""
    t, h, w, _ = rgb.shape
    hc, wc = coded_size(h, w, multiple)
    dtype = torch.uint8 if rgb.dtype == np.uint8 else torch.int32
    frames = torch.from_numpy(rgb.astype(np.uint8 if dtype == torch.uint8 else np.int32)).to(device)
    if (hc, wc) != (h, w):
        # replicate-pad on H and W: F.pad wants (N, C, H, W) float
        padded = F.pad(frames.permute(0, 3, 1, 2).float(), (0, wc - w, 0, hc - h), mode="replicate")
        frames = padded.permute(0, 2, 3, 1).to(dtype).contiguous()
    if patch is None:
        size = (hc, wc)
    else:
        size = (min(round_up(patch[0], multiple), hc), min(round_up(patch[1], multiple), wc))
    origins = patch_origins(t, (hc, wc), size).to(device)
    return PatchData(frames, max_value, h, w, size, origins, multiple)


def run(work: Work, multiple: int) -> Work:
    """Stage entry point: `multiple` is the model's spatial upsampling product."""
    work.data = make_patch_data(work.segment.rgb, work.info.max_value, multiple, work.config.train.patch_size,
                                work.device)
    work.report["coded_size"] = list(work.data.coded_size)
    work.report["patch"] = list(work.data.patch)
    return work
