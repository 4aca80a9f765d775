"""The autoregressive entropy model (ARM): causal 3-D contexts, a float MLP for training, an integer twin for coding.

Context (C3 §1.5 of our notes). A context is a fixed list of (dt, dy, dx) offsets into the same latent grid, in
symbol units, zero outside the grid and before its first frame:

* ``full`` (C3's (1,4,4) mask): the whole 9×9 window of the previous latent frame (81 values) and the causal part
  of the current frame's 9×9 window (4 rows of 9, then 4 values to the left): 121 values, raster (t, y, x) order.
* ``learned`` (C3's learned inter-frame receptive field): a 4×4 window of the previous frame at a per-grid learned
  offset (grids 0–2 only), then the causal 7×7 window of the current frame (24 values).

Float ARM (training): Linear(C → w1) · gelu_poly · … · Linear(→ 2) giving (μ, raw); scale = exp(−½·clip(raw + 8,
−2 ln 150, −2 ln 1e-3)) (C3's shifted, clipped log-scale). Over a whole grid the first layer is one GEMM on the gathered
shifted windows (masked convolutions for contexts of more than `GATHER_MAX_INPUTS` offsets), every layer channels
first; `Arm.forward_contexts` runs the same MLP on gathered contexts and the tests check both agree.

Integer ARM (coding, encoder and decoder): numpy int64 on the CPU whatever device trains or renders, and identical
on every machine because it is integer arithmetic with no overflow (products < 2^48).
* Inputs are the integer symbols; activations are fixed point with ACT_FRAC = 8 fractional bits.
* A layer's weights are integers w with a power-of-two step 2^−kw, its biases b with step 2^−kb (the exponents
  are the network-weight quantization steps sent in the stream). acc = a·wᵀ (2^−(8+kw)) + b aligned to that
  scale; the result is requantized by a rounding right shift of kw bits and clamped to ±2^23.
* `gelu_poly` is GELU with I-BERT's second-order erf (Kim et al., ICML 2021) on dyadic constants:
  erf(z) ≈ sgn(z)·(A·(min(|z|, B) − B)² + 1), A = −18927/2^16, B = 453/2^8, z = x·46341/2^16. Training uses the
  same formula in float, so the integer net is the float net up to 2^−8 rounding.
* Outputs μ and raw in 2^−8 units map to the coder's parameters without any transcendental function at decode:
  mean = clip(μ, ±255·2^8) / 2^8 (exact in float64); scale = SCALE_TABLE[clip(raw + 2048, −2565, 3537) + 2565],
  SCALE_TABLE[i] = exp(−v/512) for v = i − 2565, computed once with Python's `decimal` (correctly rounded, then
  correctly rounded to float64), hence the same table on every machine.

Decode order (`wavefront_steps`): grids one after another, latent frames in order (a frame's context needs the
whole previous frame), and within a frame the anti-diagonal wavefront s = x + k·y with k = 1 + the largest dx of a
current-frame offset above the current row (k = 5 for ``full``, 4 for ``learned``). Every offset of a position
lies on an earlier step, so all positions of one step are decoded in one batch (proof in docs/bitstream.md §8).
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .shifts import shifted_windows

ACT_FRAC = 8
ACT_MAX = 1 << 23
SYMBOL_MAX = 255
RAW_SHIFT_Q8 = 8 << ACT_FRAC  # C3's +8 on the raw log-scale output
RAW_MIN_Q8, RAW_MAX_Q8 = -2565, 3537  # round(256·(−2 ln 150)), round(256·(−2 ln 1e-3))
ERF_A_Q16, ERF_B_Q8, INV_SQRT2_Q16 = -18927, 453, 46341
LEARNED_WINDOW = 4
LEARNED_GRIDS = 3  # grids with a previous-frame window in the learned variant
# the first ARM layer is a GEMM over gathered windows up to this many inputs and this many gathered values (beyond:
# masked convolutions; measured on CPU, docs/perf.md: 2.0× faster for c3-fast-cool's 33 inputs, 1.3× for the
# full context's 121)
GATHER_MAX_INPUTS = 128
GATHER_MAX_ELEMENTS = 1 << 26

Offsets = tuple[tuple[int, int, int], ...]


# ---------------------------------------------------------------------------------------------- contexts
def full_context(rows: int = 4, cols: int = 4) -> Offsets:
    """C3's (1, rows, cols) causal mask: previous-frame window then the causal current-frame part (121 for 4, 4)."""
    prev = [(-1, dy, dx) for dy in range(-rows, rows + 1) for dx in range(-cols, cols + 1)]
    cur = [(0, dy, dx) for dy in range(-rows, 0) for dx in range(-cols, cols + 1)]
    return tuple(prev + cur + [(0, 0, dx) for dx in range(-cols, 0)])


def learned_context(window: tuple[int, int] | None, radius: int = 3) -> Offsets:
    """Previous-frame 4×4 window with top-left at (dy, dx) = `window` (None: none), then the causal 7×7 window."""
    prev = [] if window is None else [(-1, window[0] + i, window[1] + j)
                                      for i in range(LEARNED_WINDOW) for j in range(LEARNED_WINDOW)]
    cur = [(0, dy, dx) for dy in range(-radius, 0) for dx in range(-radius, radius + 1)]
    return tuple(prev + cur + [(0, 0, dx) for dx in range(-radius, 0)])


def search_context(radius: int, cur_radius: int = 3) -> Offsets:
    """Mask-learning context: the whole (2r+1)² previous-frame window, then the causal 7×7 window."""
    prev = [(-1, dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    return tuple(prev) + learned_context(None, cur_radius)


def check_causal(offsets: Offsets) -> None:
    for dt, dy, dx in offsets:
        if dt not in (-1, 0) or (dt == 0 and not (dy < 0 or (dy == 0 and dx < 0))):
            raise ValueError(f"offset {(dt, dy, dx)} is not causal")


def context_pad(offsets: Offsets) -> int:
    return max([abs(dy) for _, dy, _ in offsets] + [abs(dx) for _, _, dx in offsets] + [0])


def wavefront_slope(offsets: Offsets) -> int:
    """k such that every context position of (y, x) has x' + k·y' < x + k·y."""
    return 1 + max([dx for dt, dy, dx in offsets if dt == 0 and dy < 0] + [0])


@lru_cache(maxsize=64)
def wavefront_steps(height: int, width: int, slope: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(ys, xs) of every step s = x + slope·y, s = 0, 1, …, ys ascending within a step."""
    steps = []
    for s in range(width + slope * (height - 1)):
        ys = np.arange(max(0, -(-(s - width + 1) // slope)), min(height - 1, s // slope) + 1, dtype=np.int64)
        steps.append((ys, s - slope * ys))
    return tuple(steps)


def decode_permutation(shape: tuple[int, int, int], slope: int) -> np.ndarray:
    """Flat (t, y, x) raster indices of a grid in decode order."""
    t, h, w = shape
    per_frame = np.concatenate([ys * w + xs for ys, xs in wavefront_steps(h, w, slope)])
    return (np.arange(t, dtype=np.int64)[:, None] * (h * w) + per_frame[None]).reshape(-1)


def padded_volume(symbols: torch.Tensor, pad: int) -> torch.Tensor:
    """(T, H, W) → (T + 1, H + 2·pad, W + 2·pad): a zero frame first, zeros around."""
    return F.pad(symbols, (pad, pad, pad, pad, 1, 0))


def flat_offsets(offsets: Offsets, hp: int, wp: int) -> torch.Tensor:
    return torch.tensor([dt * hp * wp + dy * wp + dx for dt, dy, dx in offsets], dtype=torch.int64)


def centre_indices(t: torch.Tensor, y: torch.Tensor, x: torch.Tensor, hp: int, wp: int, pad: int) -> torch.Tensor:
    return ((t + 1) * hp + y + pad) * wp + x + pad


def all_contexts(symbols: torch.Tensor, offsets: Offsets, positions: torch.Tensor | None = None) -> torch.Tensor:
    """(T·H·W, C) context of every position (raster order), gathered from a zero-padded copy; only the flat raster
    indices `positions` (in their order) if given."""
    t, h, w = symbols.shape
    pad = context_pad(offsets)
    vol = padded_volume(symbols, pad).reshape(-1)
    hp, wp = h + 2 * pad, w + 2 * pad
    flat = torch.arange(t * h * w) if positions is None else positions
    tt, yy, xx = flat // (h * w), flat // w % h, flat % w
    centres = centre_indices(tt, yy, xx, hp, wp, pad).to(symbols.device)
    return vol[centres[:, None] + flat_offsets(offsets, hp, wp).to(symbols.device)]


# ---------------------------------------------------------------------------------------------- float ARM
def gelu_poly(x: torch.Tensor) -> torch.Tensor:
    """GELU with I-BERT's polynomial erf on the dyadic constants of the integer ARM."""
    z = x * (INV_SQRT2_Q16 / 65536.0)
    c = z.abs().clamp(max=ERF_B_Q8 / 256.0) - ERF_B_Q8 / 256.0
    erf = torch.sign(z) * ((ERF_A_Q16 / 65536.0) * c * c + 1.0)
    return 0.5 * x * (1.0 + erf)


def scale_from_raw(raw: torch.Tensor) -> torch.Tensor:
    """C3: scale = exp(−½·clip(raw + 8, −2 ln 150, −2 ln 1e-3)) ∈ [1e-3, 150] (symbol units)."""
    v = (raw + RAW_SHIFT_Q8 / 256.0).clamp(RAW_MIN_Q8 / 256.0, RAW_MAX_Q8 / 256.0)
    return torch.exp(-0.5 * v)


class Arm(nn.Module):
    """Float ARM over one context: MLP (C → widths → 2) with gelu_poly; outputs (μ, raw log-scale).

    `residual`: a hidden layer whose input and output widths match adds its input (h + W·act(h) + b, Cool-Chic's
    residual ARM layers, zero-initialised); `linear`: a linear branch from the context straight to (μ, raw),
    added to the MLP's output (Cool-Chic's "stabiliser"); `activation`: gelu_poly or ReLU (Cool-Chic's).
    """

    def __init__(self, offsets: Offsets, widths: tuple[int, ...], residual: bool = False, linear: bool = False,
                 activation: str = "gelu", coarse: tuple[tuple[int, int], ...] = ()):
        super().__init__()
        check_causal(offsets)
        self.offsets = tuple(offsets)
        self.coarse = tuple(coarse)  # (dy, dx) around the co-located symbol of the next coarser grid
        n_in = len(offsets) + len(self.coarse)
        self.residual = residual
        self.act = gelu_poly if activation == "gelu" else F.relu
        self._taps: dict = {}  # (offset columns, device) → (column index, kernel tap index) tensors
        dims = (n_in, *widths, 2)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.linear = nn.Linear(n_in, 2) if linear else None
        with torch.no_grad():  # C3's "linear-like" init of the masked layer: σ = 1/√(#unmasked)
            self.layers[0].weight.normal_(0.0, n_in ** -0.5)
            self.layers[0].bias.zero_()
            for layer in self.layers[1:-1]:
                if residual and layer.in_features == layer.out_features:
                    layer.weight.zero_()
                    layer.bias.zero_()
            if self.linear is not None:
                self.linear.weight.normal_(0.0, 0.25 * n_in ** -0.5)
                self.linear.bias.zero_()

    def _first(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's (weight, bias) with the linear branch's stacked under it: (w1 [+ 2], C), (w1 [+ 2],)."""
        weight, bias = self.layers[0].weight, self.layers[0].bias
        if self.linear is not None:
            weight, bias = torch.cat([weight, self.linear.weight]), torch.cat([bias, self.linear.bias])
        return weight, bias

    def _tail(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer outputs, channels first, (w1 [+ 2], N) → μ (N,), raw (N,). Channels first, every layer is
        one (out, in) × (in, N) GEMM (on CPU several times faster for these widths than N-row activations)."""
        lin = h[self.layers[0].out_features :] if self.linear is not None else None
        h = h[: self.layers[0].out_features]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers[1:], 1):
            v = torch.addmm(layer.bias[:, None], layer.weight, self.act(h))
            h = h + v if self.residual and i < last and layer.in_features == layer.out_features else v
        if lin is not None:
            h = h + lin
        return h[0], h[1]

    def forward_contexts(self, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, C) contexts (the coarse inputs last, `coarse_inputs`) → μ (N,), raw (N,)."""
        weight, bias = self._first()
        return self._tail(torch.addmm(bias[:, None], weight, ctx.t()))

    def forward_grid(self, symbols: torch.Tensor, coarser: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(T, H, W) symbols → μ, raw of every position (T, H, W). `coarser`: the next coarser grid's symbols
        (None: the coarse inputs read zeros).

        The first layer (and the linear branch, stacked on it) runs over every position at once: up to
        `GATHER_MAX_INPUTS` offsets as one GEMM over the gathered shifted windows (shifts.py), larger contexts as
        masked convolutions (one over the offsets' bounding box, or one per latent-frame offset when that box
        would be mostly empty). The coarse inputs run at the coarser grid's resolution and are repeated ×2 on every
        axis (the co-located position is (t//2, y//2, x//2)).
        """
        t, h, w = symbols.shape
        pad = context_pad(self.offsets)
        weight, bias = self._first()
        n_cur = len(self.offsets)
        if n_cur <= GATHER_MAX_INPUTS and n_cur * t * h * w <= GATHER_MAX_ELEMENTS:
            x = padded_volume(symbols, pad)
            starts = [(1 + dt, pad + dy, pad + dx) for dt, dy, dx in self.offsets]
            ctx = shifted_windows(x, starts, (t, h, w)).reshape(n_cur, -1)
            out = torch.addmm(bias[:, None], weight[:, :n_cur], ctx)
        else:
            out = self._masked_convs(symbols, weight, pad).reshape(weight.shape[0], -1) + bias[:, None]
        if self.coarse and coarser is not None:
            out = out + self._coarse(coarser, weight[:, n_cur:], (t, h, w))
        mu, raw = self._tail(out)
        return mu.view(t, h, w), raw.view(t, h, w)

    def _masked_convs(self, symbols: torch.Tensor, weight: torch.Tensor, pad: int) -> torch.Tensor:
        t, h, w = symbols.shape
        x = padded_volume(symbols, pad)[None, None]
        groups = [list(range(len(self.offsets)))]
        if _box_volume([self.offsets[i] for i in groups[0]]) > 4 * len(self.offsets):
            groups = [[i for i, o in enumerate(self.offsets) if o[0] == dt] for dt in (-1, 0)]
        out = 0
        for cols in filter(None, groups):
            out = out + self._masked_conv(x, weight, cols, t, h, w, pad)
        return out

    def _masked_conv(self, x: torch.Tensor, weight: torch.Tensor, cols: list[int], t: int, h: int, w: int,
                     pad: int) -> torch.Tensor:
        """Σ over offsets `cols` of weight · symbol at that offset, for every position: (w1, T, H, W)."""
        offs = [self.offsets[i] for i in cols]
        (t0, y0, x0), (kt, kh, kw) = _box(offs)
        key = (tuple(cols), x.device)
        if key not in self._taps:  # built once per group and device: no host-to-device copy per step
            taps = [((dt - t0) * kh + dy - y0) * kw + dx - x0 for dt, dy, dx in offs]
            self._taps[key] = (torch.tensor(cols, device=x.device), torch.tensor(taps, device=x.device))
        cols_t, taps_t = self._taps[key]
        kernel = weight.new_zeros(weight.shape[0], kt * kh * kw).index_copy(1, taps_t, weight.index_select(1, cols_t))
        kernel = kernel.view(-1, 1, kt, kh, kw)
        if kt == 1:  # one latent frame per offset: a 2-D convolution per frame (much faster on CPU than 3-D)
            frames = x[0, :, 1 + t0 : 1 + t0 + t].transpose(0, 1)  # (t, 1, Hp, Wp)
            y = F.conv2d(frames, kernel[:, :, 0]).transpose(0, 1)  # (w1, t, H', W')
            return y[:, :, y0 + pad : y0 + pad + h, x0 + pad : x0 + pad + w]
        y = F.conv3d(x, kernel)[0]  # output (t', y', x') reads padded input from (t', y', x') on
        return y[:, 1 + t0 : 1 + t0 + t, y0 + pad : y0 + pad + h, x0 + pad : x0 + pad + w]


    def _coarse(self, coarser: torch.Tensor, weight: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
        """Σ over the coarse offsets of weight · coarser symbol at (t//2, y//2 + dy, x//2 + dx): (w1 [+ 2], T·H·W).
        On the coarser grid repeated ×2 (r[i] = c[i // 2]) that symbol is r[t, y + 2·dy, x + 2·dx]: a shifted
        window again."""
        tc, hc, wc = coarser.shape
        rep = coarser[:, None, :, None, :, None].expand(tc, 2, hc, 2, wc, 2).reshape(2 * tc, 2 * hc, 2 * wc)
        x = F.pad(rep, (4, 4, 4, 4))
        ctx = shifted_windows(x, [(0, 4 + 2 * dy, 4 + 2 * dx) for dy, dx in self.coarse], shape)
        return weight @ ctx.reshape(len(self.coarse), -1)


def coarse_inputs(coarser: torch.Tensor | None, shape: tuple[int, int, int],
                  coarse: tuple[tuple[int, int], ...], positions: torch.Tensor | None = None) -> torch.Tensor:
    """(T·H·W, P) coarse ARM inputs of a grid of `shape` (raster order): the next coarser grid's symbols at
    (t//2, y//2 + dy, x//2 + dx), zero outside it (all zero when `coarser` is None); only the flat raster indices
    `positions` if given."""
    t, h, w = shape
    flat = torch.arange(t * h * w) if positions is None else positions
    if coarser is None:
        return torch.zeros(len(flat), len(coarse), dtype=torch.int64)
    vol = F.pad(coarser, (2, 2, 2, 2))
    tt, yy, xx = (flat // (h * w)) // 2, (flat // w % h) // 2, (flat % w) // 2
    tt, yy, xx = tt.reshape(-1, 1), yy.reshape(-1, 1) + 2, xx.reshape(-1, 1) + 2
    dy = torch.tensor([o[0] for o in coarse], dtype=torch.int64)
    dx = torch.tensor([o[1] for o in coarse], dtype=torch.int64)
    return vol[tt, yy + dy, xx + dx]


def _box(offsets) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    lo = tuple(min(o[i] for o in offsets) for i in range(3))
    return lo, tuple(max(o[i] for o in offsets) - lo[i] + 1 for i in range(3))


def _box_volume(offsets) -> int:
    _, size = _box(offsets)
    return size[0] * size[1] * size[2]


# ---------------------------------------------------------------------------------------------- integer ARM
@dataclass(frozen=True)
class IntLayer:
    """Integer weights (out, in) with step 2^−w_exp and biases (out,) with step 2^−b_exp (numpy int64)."""

    weight: np.ndarray
    w_exp: int
    bias: np.ndarray
    b_exp: int


def _rshift_round(v: np.ndarray, s: int) -> np.ndarray:
    """round(v / 2^s), ties towards +∞: exact int64 floor division (s ≤ 0: multiply by 2^−s)."""
    if s <= 0:
        return v * (1 << -s)
    return (v + (1 << (s - 1))) // (1 << s)


def int_gelu(x: np.ndarray) -> np.ndarray:
    """gelu_poly on Q8 int64 integers (every intermediate product < 2^48)."""
    z = _rshift_round(x * INV_SQRT2_Q16, 16)
    c = np.minimum(np.abs(z), ERF_B_Q8) - ERF_B_Q8
    erf = np.sign(z) * (_rshift_round(ERF_A_Q16 * c * c, 16) + 65536)
    return _rshift_round(x * (65536 + erf), 17)


@dataclass(frozen=True)
class IntArm:
    """An integer ARM: its MLP layers, whether square hidden layers are residual, and its linear branch."""

    layers: list[IntLayer]
    residual: bool = False
    linear: IntLayer | None = None
    activation: str = "gelu"  # or "relu"


def _int_affine(a: np.ndarray, layer: IntLayer) -> np.ndarray:
    """a (Q8) · wᵀ + b, requantized to Q8 (rounding shift of w_exp bits)."""
    acc = a @ layer.weight.T + _rshift_round(layer.bias, layer.b_exp - ACT_FRAC - layer.w_exp)
    return _rshift_round(acc, layer.w_exp)


def int_arm_forward(net: "IntArm | list[IntLayer]", ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) integer symbols → (μ, raw) int64 in 2^−8 units.

    numpy int64 on the CPU, wherever the rest of the codec runs: integer arithmetic with no overflow (bounds in
    the module doc; a residual sum is clamped like any activation), so every machine computes the same integers;
    rows are independent, so batching never changes a result.
    """
    if not isinstance(net, IntArm):
        net = IntArm(list(net))
    layers = net.layers
    x = np.asarray(ctx, dtype=np.int64) * (1 << ACT_FRAC)
    a = x
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        v = _int_affine((int_gelu(a) if net.activation == "gelu" else np.maximum(a, 0)) if i else a, layer)
        a = a + v if net.residual and 0 < i < last and layer.weight.shape[0] == layer.weight.shape[1] else v
        if i < last:
            a = np.minimum(np.maximum(a, -ACT_MAX), ACT_MAX)
    if net.linear is not None:
        a = a + _int_affine(x, net.linear)
    return a[:, 0], a[:, 1]


@lru_cache(maxsize=1)
def scale_table() -> np.ndarray:
    """SCALE_TABLE[i] = exp(−(i + RAW_MIN_Q8)/512) in float64, identical on every machine (see module doc)."""
    ctx = decimal.Context(prec=40, rounding=decimal.ROUND_HALF_EVEN)
    return np.array([float(ctx.exp(ctx.divide(decimal.Decimal(-v), decimal.Decimal(512))))
                     for v in range(RAW_MIN_Q8, RAW_MAX_Q8 + 1)], dtype=np.float64)


def coder_params(mu_q8: np.ndarray, raw_q8: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer ARM outputs → (means, scales) float64 arrays for the quantized-Laplace coder."""
    mu = np.minimum(np.maximum(mu_q8, -SYMBOL_MAX << ACT_FRAC), SYMBOL_MAX << ACT_FRAC)
    idx = np.minimum(np.maximum(raw_q8 + RAW_SHIFT_Q8, RAW_MIN_Q8), RAW_MAX_Q8) - RAW_MIN_Q8
    return mu.astype(np.float64) / float(1 << ACT_FRAC), scale_table()[idx]


def arm_macs(context_size: int, widths: tuple[int, ...], linear: bool = False) -> int:
    dims = (context_size, *widths, 2)
    return sum(a * b for a, b in zip(dims[:-1], dims[1:])) + (2 * context_size if linear else 0)
