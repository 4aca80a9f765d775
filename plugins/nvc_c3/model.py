"""C3 decoder architecture: config, patch layout, latent grids, upsampling, synthesis, ARM contexts, MACs.

One C3 model per spatio-temporal patch (C3, Kim et al. CVPR 2024; §1 of the reference notes):

    K latent grids  g_k: ⌈T/2^k⌉ × ⌈H/2^k⌉ × ⌈W/2^k⌉ (one channel each, zero-initialised)
      symbols       ŷ_k = Q(2^k · g_k / q_step)          (fixed gain 2^k; Q = proxy in training, round at coding)
      upsample      ŷ_k · q_step → T × H × W, trilinear, half-pixel centres (no parameters), or `learned`:
                    hierarchical ×2 steps with a symmetric 8-tap separable filter per level (bicubic init)
      synthesis     per-pixel MLP (K → widths → 3, GELU or ReLU) → x + conv(x) → x + conv(act(x)) (3×3 per
                    frame or 3×3×3, replicate padding, zero-initialised) [+ linear(K → 3) of the upsampled
                    latents, `synthesis_linear`: Cool-Chic's stabiliser] → clip to [0, 1]
    ARM per grid (or one shared) over the symbols: see arm.py. A grid with one latent frame gets no
    previous-frame context; `context_size` keeps the N nearest offsets per latent frame; `coarse_context` adds
    the N nearest symbols of the next coarser grid around the co-located one (grids then coded coarse → fine).

`C3Config` is exactly what a decoder needs (sequence-header JSON; `from_dict` is strict). Patches tile a segment
on a grid of ⌈T/pt⌉ × ⌈H/ph⌉ × ⌈W/pw⌉ and each axis is split into near-equal parts (sizes differ by at most one),
so edge patches are never slivers; a short segment or a small video simply gives smaller patches; a patch size
of 0 is the whole axis (one patch over a small frame).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .arm import LEARNED_GRIDS, Arm, Offsets, arm_macs, full_context, learned_context
from .shifts import shifted_windows

CONTEXTS = ("full", "learned")
COARSE_MAX = 25  # coarse-context offsets come from the 5×5 window around the co-located coarser symbol
UPSAMPLINGS = ("trilinear", "learned")


@dataclass(frozen=True)
class C3Config:
    """Decoder-side architecture of every patch of a stream."""

    num_grids: int = 5
    q_step: float = 0.3  # latent quantization step (symbols = latent / q_step)
    synthesis_widths: tuple[int, ...] = (12, 12)
    per_frame_conv: bool = True  # residual convs 3×3 per frame (True) or 3×3×3
    arm_widths: tuple[int, ...] = (2, 2)
    arm_per_grid: bool = True  # one ARM per grid ("cond") or one shared by all ("no_cond")
    context: str = "full"  # "full" (1,4,4) mask or "learned" previous-frame window
    context_size: int = 0  # > 0: only the N nearest offsets of the context per latent frame (Cool-Chic's arm=N)
    arm_residual: bool = False  # square hidden ARM layers add their input (Cool-Chic)
    arm_linear: bool = False  # a linear context → (μ, raw) branch added to the ARM output (Cool-Chic)
    activation: str = "gelu"  # of the ARM (gelu_poly) and the synthesis (GELU), or "relu" (Cool-Chic's)
    upsampling: str = "trilinear"  # or "learned": ×2 steps, separable symmetric 8-tap filters per level (bicubic init)
    synthesis_linear: bool = False  # a linear latents → RGB branch added to the synthesis output (Cool-Chic)
    coarse_context: int = 0  # > 0: the ARM of grid k also reads the N nearest symbols of grid k + 1 around the
    #                          co-located position (decoded before: grids then go coarse → fine)
    patch_frames: int = 30
    patch_height: int = 180
    patch_width: int = 240

    def __post_init__(self) -> None:
        if not 1 <= self.num_grids <= 12:
            raise ValueError("num_grids must be in 1..12")
        if not (math.isfinite(self.q_step) and 1e-3 <= self.q_step <= 16):
            raise ValueError("q_step must be in [1e-3, 16]")
        if any(not 1 <= w <= 512 for w in self.synthesis_widths + self.arm_widths):
            raise ValueError("layer widths must be in 1..512")
        if self.context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}")
        if self.activation not in ("gelu", "relu"):
            raise ValueError("activation must be gelu or relu")
        if self.upsampling not in UPSAMPLINGS:
            raise ValueError(f"upsampling must be one of {UPSAMPLINGS}")
        if not 0 <= self.context_size <= 64:
            raise ValueError("context_size must be in 0..64")
        if not 0 <= self.coarse_context <= COARSE_MAX:
            raise ValueError(f"coarse_context must be in 0..{COARSE_MAX}")
        if self.context == "learned" and not self.arm_per_grid:
            raise ValueError("the learned context needs per-grid ARMs (grids differ in context)")
        if any(not 0 <= v <= 65536 for v in (self.patch_frames, self.patch_height, self.patch_width)):
            raise ValueError("patch sizes must be in 0..65536 (0: the whole axis)")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "C3Config":
        """Inverse of `to_dict`: every key required, none unknown, exact JSON types; ValueError otherwise."""
        if not isinstance(d, dict):
            raise ValueError("config must be a JSON object")
        kinds = {f.name: f.type for f in fields(cls)}
        if set(d) != set(kinds):
            missing, unknown = sorted(set(kinds) - set(d)), sorted(set(d) - set(kinds))
            raise ValueError(f"keys differ: missing {missing}, unknown {unknown}")
        kw = {}
        for key, val in d.items():
            kind = kinds[key]
            if kind.startswith("tuple"):
                if not isinstance(val, list) or not val or not all(_is_int(v) for v in val):
                    raise ValueError(f"{key} must be a non-empty list of ints")
                val = tuple(val)
            elif kind == "bool":
                if not isinstance(val, bool):
                    raise ValueError(f"{key} must be a bool")
            elif kind == "float":
                if not (_is_int(val) or isinstance(val, float)):
                    raise ValueError(f"{key} must be a number")
                val = float(val)
            elif kind == "str":
                if not isinstance(val, str):
                    raise ValueError(f"{key} must be a string")
            elif not _is_int(val):
                raise ValueError(f"{key} must be an int")
            kw[key] = val
        return cls(**kw)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# ---------------------------------------------------------------------------------------------- layout
def _split(n: int, target: int) -> list[tuple[int, int]]:
    """(start, size) of ⌈n/target⌉ near-equal parts of n (target 0: one part)."""
    parts = -(-n // target) if target else 1
    base, extra = divmod(n, parts)
    out, start = [], 0
    for i in range(parts):
        size = base + (i < extra)
        out.append((start, size))
        start += size
    return out


def patch_boxes(cfg: C3Config, frames: int, height: int, width: int) -> list[tuple[int, int, int, int, int, int]]:
    """(t0, y0, x0, pt, ph, pw) of every patch, ordered by time chunk, then row, then column."""
    return [(t0, y0, x0, pt, ph, pw)
            for t0, pt in _split(frames, cfg.patch_frames)
            for y0, ph in _split(height, cfg.patch_height)
            for x0, pw in _split(width, cfg.patch_width)]


def grid_shapes(shape: tuple[int, int, int], num_grids: int) -> list[tuple[int, int, int]]:
    t, h, w = shape
    return [(-(-t // 2**k), -(-h // 2**k), -(-w // 2**k)) for k in range(num_grids)]


def grid_contexts(cfg: C3Config, windows: list[tuple[int, int]] | None,
                  shape: tuple[int, int, int]) -> list[Offsets]:
    """Context offsets of each grid of a patch of `shape` (`windows`: learned previous-frame window per grid <
    LEARNED_GRIDS). A grid with one latent frame has no previous-frame offsets (they would read only zeros and
    never get a gradient); a shared ARM keeps them unless the whole patch is one frame."""
    frames = [s[0] for s in grid_shapes(shape, cfg.num_grids)]
    single = [f == 1 for f in frames] if cfg.arm_per_grid else [shape[0] == 1] * cfg.num_grids
    if cfg.context == "full":
        out = [tuple(o for o in full_context() if o[0] == 0) if one else full_context() for one in single]
    else:
        out = [learned_context(windows[k] if k < LEARNED_GRIDS and not single[k] else None)
               for k in range(cfg.num_grids)]
    return [nearest_current(o, cfg.context_size) for o in out] if cfg.context_size else out


def nearest_current(offsets: Offsets, n: int) -> Offsets:
    """`offsets` with only the n offsets nearest the centre in each latent frame (current frame: distance to the
    position decoded, previous frame: to the co-located one; ties in raster order), in raster (t, y, x) order."""
    keep = set()
    for dt in (-1, 0):
        frame = sorted((o for o in offsets if o[0] == dt), key=lambda o: (o[1] ** 2 + o[2] ** 2, o[1], o[2]))
        keep.update(frame[:n])
    return tuple(o for o in offsets if o in keep)


def coarse_offsets(cfg: C3Config, k: int) -> tuple[tuple[int, int], ...]:
    """(dy, dx) offsets that grid k's ARM reads in grid k + 1 around the co-located symbol (t//2, y//2, x//2):
    the `coarse_context` nearest in its 5×5 window (ties in raster order), raster order. None for the coarsest
    grid with per-grid ARMs; a shared ARM keeps the inputs there (they read zeros) unless there is one grid."""
    n = cfg.coarse_context
    if not n or cfg.num_grids == 1 or (cfg.arm_per_grid and k == cfg.num_grids - 1):
        return ()
    window = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]
    keep = set(sorted(window, key=lambda o: (o[0] ** 2 + o[1] ** 2, o[0], o[1]))[:n])
    return tuple(o for o in window if o in keep)


def grid_order(cfg: C3Config) -> list[int]:
    """Order in which a patch's grids are coded: 0..K−1, or coarsest first when grids read coarser ones."""
    return list(range(cfg.num_grids))[::-1] if cfg.coarse_context else list(range(cfg.num_grids))


def num_windows(cfg: C3Config) -> int:
    return min(LEARNED_GRIDS, cfg.num_grids) if cfg.context == "learned" else 0


# ---------------------------------------------------------------------------------------------- networks
def upsample(grid: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resize with half-pixel centres (jax.image.resize 'bilinear' on 3-D), no parameters."""
    if tuple(grid.shape) == tuple(size):
        return grid
    return F.interpolate(grid[None, None], size=size, mode="trilinear", align_corners=False)[0, 0]


def _bicubic(d: float, a: float = -0.75) -> float:
    d = abs(d)
    return (a + 2) * d**3 - (a + 3) * d**2 + 1 if d <= 1 else a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a


BICUBIC_HALF = (_bicubic(1.75), _bicubic(1.25), _bicubic(0.75), _bicubic(0.25))  # outer → inner taps


class LearnedUpsampling(nn.Module):
    """Hierarchical ×2 upsampling (Cool-Chic's idea, our own code): from the coarsest grid up, the stack of grids
    so far is upsampled ×2 in y and x by a separable, symmetric 8-tap transposed filter of that level (4 free
    taps, initialised to bicubic, replicate padding, half-pixel centres), linearly ×2 in t, cropped to the next
    finer grid's size and joined by it. Output: every grid at full size, (T, H, W, K)."""

    def __init__(self, num_grids: int):
        super().__init__()
        self.taps = nn.Parameter(torch.tensor([BICUBIC_HALF] * max(num_grids - 1, 0), dtype=torch.float32))

    def _up(self, x: torch.Tensor, level: int, size: tuple[int, int, int]) -> torch.Tensor:
        """x: (C, T, H, W) → (C, T', H', W') with T', H', W' = `size` (≤ 2× each)."""
        c, t, h, w = x.shape
        k = torch.cat([self.taps[level], self.taps[level].flip(0)]).view(1, 1, 8)
        v = x.reshape(c * t, 1, h, w)
        rows = F.pad(v, (0, 0, 2, 2), mode="replicate").permute(0, 3, 1, 2).reshape(-1, 1, h + 4)
        rows = F.conv_transpose1d(rows, k, stride=2)[..., 7 : 7 + size[1]]
        v = rows.reshape(c * t, w, size[1]).transpose(1, 2).reshape(-1, 1, w)
        cols = F.conv_transpose1d(F.pad(v, (2, 2), mode="replicate"), k, stride=2)[..., 7 : 7 + size[2]]
        v = cols.reshape(c, t, size[1], size[2])
        if size[0] != t:
            v = F.interpolate(v[None], size=size, mode="trilinear", align_corners=False)[0]
        return v

    def one(self, grid: torch.Tensor, k: int, shapes: list[tuple[int, ...]]) -> torch.Tensor:
        """Grid k alone through the levels below it: channel k of `forward` (each channel is filtered on its own),
        (T, H, W)."""
        x = grid[None]
        for level in range(k, 0, -1):
            x = self._up(x, level - 1, tuple(shapes[level - 1]))
        return x[0]

    def forward(self, grids: list[torch.Tensor]) -> torch.Tensor:
        x = grids[-1][None]
        for level in range(len(grids) - 1, 0, -1):
            x = torch.cat([self._up(x, level - 1, tuple(grids[level - 1].shape)), grids[level - 1][None]])
        return x.flip(0).permute(1, 2, 3, 0)  # channel k = grid k


class Synthesis(nn.Module):
    """Per-pixel MLP (GELU or ReLU) + two zero-initialised residual 3-channel convs (+ a linear K → 3 branch)."""

    def __init__(self, in_channels: int, widths: tuple[int, ...], per_frame_conv: bool, activation: str = "gelu",
                 linear: bool = False):
        super().__init__()
        self.act = F.gelu if activation == "gelu" else F.relu
        dims = (in_channels, *widths, 3)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.per_frame_conv = per_frame_conv
        conv = nn.Conv2d if per_frame_conv else nn.Conv3d
        self.res = nn.ModuleList(conv(3, 3, 3) for _ in range(2))
        with torch.no_grad():
            for c in self.res:
                c.weight.zero_()
                c.bias.zero_()
        self.linear = nn.Linear(in_channels, 3, bias=False) if linear else None  # registered last: record order

    def _conv(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """x: (3, T, H, W), channels first; replicate padding, valid convolution. Per frame: one GEMM over the nine
        gathered shifted windows (shifts.py; on CPU faster than a 3-channel conv2d and its backward)."""
        conv = self.res[i]
        if self.per_frame_conv:
            c, t, h, w = x.shape
            windows = shifted_windows(F.pad(x, (1, 1, 1, 1), mode="replicate"),
                                      [(0, dy, dx) for dy in range(3) for dx in range(3)], (t, h, w))
            weight = conv.weight.permute(0, 2, 3, 1).reshape(conv.out_channels, -1)  # (out, ky, kx, in)
            return torch.addmm(conv.bias[:, None], weight, windows.reshape(9 * c, -1)).view(-1, t, h, w)
        v = F.pad(x[None], (1, 1, 1, 1, 1, 1), mode="replicate")
        return conv(v)[0]

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """(T, H, W, K) upsampled latents → (T, H, W, 3), not clipped (a channels-last view). Runs channels
        first: every layer is one (out, in) × (in, T·H·W) GEMM (`PatchModel.features` hands over a channels-last
        view of a (K, T, H, W) tensor, so nothing is transposed)."""
        t, h, w, k = feats.shape
        f = feats.permute(3, 0, 1, 2).reshape(k, -1)
        x = f
        for i, layer in enumerate(self.mlp):
            x = torch.addmm(layer.bias[:, None], layer.weight, x)
            if i < len(self.mlp) - 1:
                x = self.act(x)
        x = x.view(3, t, h, w)
        x = x + self._conv(0, x)
        x = x + self._conv(1, self.act(x))
        if self.linear is not None:
            x = x + (self.linear.weight @ f).view(3, t, h, w)
        return x.permute(1, 2, 3, 0)


class PatchModel(nn.Module):
    """Latent grids + synthesis + ARM(s) of one patch of shape (T, H, W)."""

    def __init__(self, cfg: C3Config, shape: tuple[int, int, int], windows: list[tuple[int, int]] | None = None,
                 contexts: list[Offsets] | None = None):
        """`windows`: learned previous-frame windows; `contexts` overrides the contexts (mask-learning probe)."""
        super().__init__()
        self.cfg, self.shape = cfg, tuple(shape)
        self.windows = list(windows) if windows is not None else [(0, 0)] * num_windows(cfg)
        self.latents = nn.ParameterList(nn.Parameter(torch.zeros(s)) for s in grid_shapes(self.shape, cfg.num_grids))
        self.synthesis = Synthesis(cfg.num_grids, cfg.synthesis_widths, cfg.per_frame_conv, cfg.activation,
                                   cfg.synthesis_linear)
        self.upsampling = LearnedUpsampling(cfg.num_grids) if cfg.upsampling == "learned" else None
        contexts = contexts or grid_contexts(cfg, self.windows, self.shape)
        n_arms = cfg.num_grids if cfg.arm_per_grid else 1
        self.arms = nn.ModuleList(Arm(contexts[k], cfg.arm_widths, cfg.arm_residual, cfg.arm_linear, cfg.activation,
                                      coarse_offsets(cfg, k))
                                  for k in range(n_arms))
        self.latent_gains = [2.0**k / cfg.q_step for k in range(cfg.num_grids)]  # encoder only (`set_latent_gain`)

    def set_latent_gain(self, gain: float) -> None:
        """Symbols = gain_k · g_k: C3's 2^k / q_step per grid (gain 0), or one gain for every grid (Cool-Chic's
        encoder gain, 16). Encoder-side only: it sets how fast Adam moves each grid's symbols, the decoder never
        sees it (it reads symbols)."""
        self.latent_gains = [2.0**k / self.cfg.q_step if gain <= 0 else gain for k in range(self.cfg.num_grids)]

    def arm(self, k: int) -> Arm:
        return self.arms[k if self.cfg.arm_per_grid else 0]

    def unquantized_symbols(self, k: int) -> torch.Tensor:
        """gain_k · g_k (C3: 2^k / q_step): the grid in symbol units before quantization."""
        return self.latents[k] * self.latent_gains[k]

    def render(self, symbols: list[torch.Tensor]) -> torch.Tensor:
        """Symbols per grid (float) → (T, H, W, 3) reconstruction, not clipped."""
        return self.synthesis(self.features(symbols))

    def features(self, symbols: list[torch.Tensor]) -> torch.Tensor:
        """Symbols per grid → the synthesis input (T, H, W, K): every grid upsampled to the patch."""
        if self.upsampling is not None:
            return self.upsampling([s * self.cfg.q_step for s in symbols])
        return torch.stack([upsample(s * self.cfg.q_step, self.shape) for s in symbols]).permute(1, 2, 3, 0)

    def grid_feature(self, k: int, symbols: torch.Tensor, shapes: list[tuple[int, ...]]) -> torch.Tensor:
        """Channel k of `features` from grid k's symbols alone (`shapes`: every grid's), (T, H, W): the upsampling
        is linear and per channel, so a search that changes one grid re-upsamples only that grid."""
        if self.upsampling is not None:
            return self.upsampling.one(symbols * self.cfg.q_step, k, shapes)
        return upsample(symbols * self.cfg.q_step, self.shape)

    def network_parameters(self) -> dict[str, nn.Parameter]:
        """Everything but the latents: what travels as tensor records."""
        return {n: p for n, p in self.named_parameters() if not n.startswith("latents.")}


# ---------------------------------------------------------------------------------------------- cost
def _upsampling_macs(cfg: C3Config, shape: tuple[int, int, int]) -> int:
    """Trilinear: 16 MACs per upsampled grid and pixel (C3's count); learned: 8 MACs per output sample and
    channel of each ×2 level (4 taps per axis, separable) plus 2 for its temporal ×2."""
    n = math.prod(shape)
    if cfg.upsampling == "trilinear":
        return 16 * (cfg.num_grids - 1) * n
    shapes = grid_shapes(shape, cfg.num_grids)
    return sum((cfg.num_grids - lv) * math.prod(shapes[lv - 1]) * (8 + 2 * (shapes[lv][0] != shapes[lv - 1][0]))
               for lv in range(1, cfg.num_grids))


def macs_per_pixel(cfg: C3Config, boxes: list[tuple[int, ...]]) -> float:
    """Decoder MACs per pixel with C3's own counting (utils/macs.py): ARM per latent, MLP, residual convs, and
    16 MACs per upsampled grid; averaged over the patches by pixel count."""
    total = pixels = 0
    for *_, pt, ph, pw in boxes:
        n = pt * ph * pw
        contexts = grid_contexts(cfg, [(0, 0)] * num_windows(cfg), (pt, ph, pw))
        arm = sum(math.prod(s) * arm_macs(len(contexts[k]) + len(coarse_offsets(cfg, k)), cfg.arm_widths,
                                          cfg.arm_linear)
                  for k, s in enumerate(grid_shapes((pt, ph, pw), cfg.num_grids)))
        dims = (cfg.num_grids, *cfg.synthesis_widths, 3)
        mlp = sum(a * b for a, b in zip(dims[:-1], dims[1:])) + 3 * cfg.num_grids * cfg.synthesis_linear
        res = 2 * (81 if cfg.per_frame_conv else 243)
        total += arm + n * (mlp + res) + _upsampling_macs(cfg, (pt, ph, pw))
        pixels += n
    return total / max(pixels, 1)
