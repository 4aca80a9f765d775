"""Per-channel non-parametric factorized prior (Ballé et al. 2018 appendix / TFC "deep factorized"), its export
to integer frequency tables, and table-based latent coding.

Shared interface (stable; the Ballé and EVC plugins use it):

* `FactorizedDensity(channels)`: one monotone density per channel. The cumulative is sigmoid(f(x)) with
  f: 1→3→3→3→3→1, each layer `softplus(H)·x + b` followed (except the last) by `x + tanh(a)·tanh(x)`.
  `likelihood(y)` is the probability of the unit interval around `y` (use it on y + U(−½, ½) while training, on
  round(y) at test time), lower-bounded by 1e-9. `cdf(x)` for checks.
* `FactorizedDensity.export_tables(precision=16)` → `EntropyTables`: done ONCE at export time, in float64. Per
  channel: an offset (the median, rounded to fp16), the first symbol `lo`, and integer frequencies summing to
  2**precision, each ≥ 1, whose last bin is the escape bin. Tables ship with the weights
  (`to_arrays`/`from_arrays`), so decoding never evaluates the density and is bit-exact on any device.
* `encode_latents(q, tables)` / `decode_latents(data, tables, shape)`: integer latents (C, H, W) (already
  `round(y − offset)`) ⇄ bytes. Layout (docs/bitstream.md §9.3): escapes:varint, svarint × escapes, then the
  range-coded words (all the rest), channel after channel in C order. A value outside a channel's table is coded as
  the escape bin and its value follows as an svarint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import entropy
from ..bitstream.fields import ByteReader, ByteWriter
from ..errors import BitstreamError

LIKELIHOOD_MIN = 1e-9
MAX_TABLE_BINS = 4096  # bins per channel, escape included


class FactorizedDensity(nn.Module):
    """C independent learned univariate densities (see the module docstring)."""

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3), init_scale: float = 10.0) -> None:
        super().__init__()
        self.channels = channels
        widths = (1, *filters, 1)
        scale = init_scale ** (1.0 / (len(widths) - 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(widths) - 1):
            value = math.log(math.expm1(1.0 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), value)))
            self.biases.append(nn.Parameter(torch.rand(channels, widths[i + 1], 1) - 0.5))
            if i < len(widths) - 2:
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) for x of shape (C, 1, n): the logit of the cumulative (monotone increasing in x)."""
        for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
            x = torch.matmul(F.softplus(m), x) + b
            if i < len(self.factors):
                x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
        return x

    def cdf(self, x: torch.Tensor) -> torch.Tensor:
        """Cumulative at x (C, n) → (C, n)."""
        return torch.sigmoid(self.logits(x.unsqueeze(1))).squeeze(1)

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(y − ½ < Y ≤ y + ½) per element of y (N, C, H, W), lower-bounded by 1e-9."""
        n, c, h, w = y.shape
        v = y.permute(1, 0, 2, 3).reshape(c, 1, -1)
        lower, upper = self.logits(v - 0.5), self.logits(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the tail where sigmoid differences are precise
        sign = torch.where(sign == 0, torch.ones_like(sign), sign)
        lik = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        lik = lik.reshape(c, n, h, w).permute(1, 0, 2, 3)
        return lik.clamp_min(LIKELIHOOD_MIN)

    @torch.no_grad()
    def _quantile(self, dens: "FactorizedDensity", target_logit: float) -> torch.Tensor:
        lo = torch.full((self.channels, 1, 1), -1e5, dtype=torch.float64)
        hi = torch.full((self.channels, 1, 1), 1e5, dtype=torch.float64)
        for _ in range(80):
            mid = (lo + hi) / 2
            below = dens.logits(mid) < target_logit
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return ((lo + hi) / 2).reshape(-1)

    @torch.no_grad()
    def export_tables(self, precision: int = 16, tail_mass: float = 1e-9,
                      max_bins: int = MAX_TABLE_BINS) -> "EntropyTables":
        """Integer tables of the current density (float64 on the CPU; run once, ship the result)."""
        import copy

        dens = copy.deepcopy(self).to(device="cpu", dtype=torch.float64)
        offsets = self._quantile(dens, 0.0).to(torch.float16).to(torch.float64)
        low = self._quantile(dens, math.log(tail_mass / 2) - math.log1p(-tail_mass / 2))
        high = self._quantile(dens, -math.log(tail_mass / 2) + math.log1p(-tail_mass / 2))
        lo = torch.floor(low - offsets).clamp(-(1 << 20), 0).to(torch.int64)
        hi = torch.ceil(high - offsets).clamp(0, 1 << 20).to(torch.int64)
        hi = torch.minimum(hi, lo + max_bins - 2)
        lengths = (hi - lo + 2).numpy()  # values lo..hi, then the escape bin
        total = 1 << precision
        freqs = np.zeros((self.channels, int(lengths.max())), dtype=np.int64)
        for c in range(self.channels):
            k = torch.arange(int(lo[c]), int(hi[c]) + 1, dtype=torch.float64) + offsets[c]
            edges = torch.cat([k - 0.5, k[-1:] + 0.5]).reshape(1, 1, -1)
            cum = torch.sigmoid(dens.logits(edges.expand(self.channels, 1, -1))[c, 0]).numpy()
            pmf = np.diff(cum)
            escape = max(cum[0] + (1.0 - cum[-1]), 0.0)
            freqs[c, : lengths[c]] = quantize_pmf(np.append(np.maximum(pmf, 0.0), escape), total)
        return EntropyTables(offsets.numpy().astype(np.float16), lo.numpy().astype(np.int32), freqs.astype(np.int32),
                             lengths.astype(np.int32), precision)


def quantize_pmf(pmf: np.ndarray, total: int) -> np.ndarray:
    """Integer frequencies ≥ 1 summing exactly to `total`, close to `pmf` (float64, any positive sum)."""
    n = pmf.size
    if n > total:
        raise ValueError(f"{n} bins do not fit in a total of {total}")
    p = pmf / pmf.sum() if pmf.sum() > 0 else np.full(n, 1.0 / n)
    freqs = 1 + np.floor(p * (total - n)).astype(np.int64)
    short = total - int(freqs.sum())
    order = np.argsort(-(p * (total - n) - np.floor(p * (total - n))), kind="stable")
    freqs[order[:short]] += 1  # largest remainders first
    return freqs


@dataclass
class EntropyTables:
    """Integer coding tables of a factorized prior: channel c codes value v as bin v − lo[c] (escape: last bin)."""

    offsets: np.ndarray  # (C,) float16: ŷ = q + offset
    lo: np.ndarray  # (C,) int32
    freqs: np.ndarray  # (C, max_len) int32, zero-padded past lengths[c]; each row sums to 2**precision
    lengths: np.ndarray  # (C,) int32, bins per channel including the escape bin
    precision: int

    @property
    def channels(self) -> int:
        return int(self.lo.size)

    def to_arrays(self, prefix: str = "tables.") -> dict[str, np.ndarray]:
        return {prefix + "offsets": self.offsets, prefix + "lo": self.lo, prefix + "freqs": self.freqs,
                prefix + "lengths": self.lengths, prefix + "precision": np.array(self.precision, dtype=np.int32)}

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "tables.") -> "EntropyTables":
        t = cls(np.asarray(arrays[prefix + "offsets"], dtype=np.float16), np.asarray(arrays[prefix + "lo"], np.int32),
                np.asarray(arrays[prefix + "freqs"], np.int32), np.asarray(arrays[prefix + "lengths"], np.int32),
                int(arrays[prefix + "precision"]))
        t.validate()
        return t

    def validate(self) -> None:
        c = self.channels
        if self.offsets.shape != (c,) or self.lengths.shape != (c,) or self.freqs.ndim != 2 or self.freqs.shape[0] != c:
            raise ValueError("entropy tables have inconsistent shapes")
        if (self.lengths < 2).any() or (self.lengths > self.freqs.shape[1]).any():
            raise ValueError("entropy tables have invalid lengths")
        for ch in range(c):
            row = self.freqs[ch, : self.lengths[ch]]
            if (row < 1).any() or int(row.sum()) != 1 << self.precision:
                raise ValueError(f"entropy table of channel {ch} does not sum to 2**{self.precision}")

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """ŷ = q + offset for integer latents (C, H, W), float32."""
        return q.astype(np.float32) + self.offsets.astype(np.float32)[:, None, None]

    def bins(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat bin indices, flat channel indices, escaped values) for integer latents (C, H, W)."""
        c = q.shape[0]
        rel = q.reshape(c, -1).astype(np.int64) - self.lo.astype(np.int64)[:, None]
        esc = self.lengths.astype(np.int64)[:, None] - 1
        outside = (rel < 0) | (rel >= esc)
        idx = np.where(outside, esc, rel)
        channel = np.repeat(np.arange(c), q[0].size)
        return idx.reshape(-1), channel, q.reshape(c, -1)[outside].astype(np.int64)

    def entropy_bits(self, q: np.ndarray) -> float:
        """Information content of the bins of `q` under the tables (escape values not counted)."""
        idx, channel, _ = self.bins(q)
        return entropy.table_entropy_bits(idx, channel, self.freqs, self.lengths)


def encode_latents(q: np.ndarray, tables: EntropyTables, w: ByteWriter) -> None:
    """Append integer latents (C, H, W) with C = tables.channels (escapes, then the coded words)."""
    if q.ndim != 3 or q.shape[0] != tables.channels:
        raise ValueError(f"latents of shape {q.shape} do not match {tables.channels} tables")
    idx, channel, escaped = tables.bins(q)
    w.varint(int(escaped.size), "escape count")
    for v in escaped:
        w.svarint(int(v), "escaped value")
    w.raw(entropy.encode_tables(idx, channel, tables.freqs, tables.lengths))


def decode_latents(r: ByteReader, tables: EntropyTables, shape: tuple[int, int, int]) -> np.ndarray:
    """Read what `encode_latents` wrote (all the reader's remaining bytes); integer latents of `shape`."""
    c, h, w = shape
    if c != tables.channels:
        raise BitstreamError(f"corrupt stream: {c} latent channels where the model has {tables.channels}")
    n = c * h * w
    n_esc = r.varint("escape count", limit=min(n, r.remaining))
    escaped = np.array([r.svarint("escaped value", limit=1 << 30) for _ in range(n_esc)], dtype=np.int64)
    channel = np.repeat(np.arange(c), h * w)
    idx = entropy.decode_tables(r.take(r.remaining, "coded latents"), channel, tables.freqs, tables.lengths)
    esc_bin = tables.lengths.astype(np.int64)[channel] - 1
    outside = idx == esc_bin
    if int(outside.sum()) != n_esc:
        raise BitstreamError(f"corrupt stream: {int(outside.sum())} escaped latents, {n_esc} values stored")
    q = idx + tables.lo.astype(np.int64)[channel]
    q[outside] = escaped
    return q.reshape(c, h, w)
