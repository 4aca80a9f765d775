"""Entropy coding with constriction: the only module that imports it.

Two coders, both range coding (constriction's `stream.queue`, FIFO), 32-bit words stored little-endian:

* `encode_iid` / `decode_iid`: i.i.d. integer symbols under a categorical model built from the symbols' own
  histogram. The histogram travels in the block as integers (at the precision that makes the block smallest),
  so encoder and decoder build their model from the same integers (float64 division of integers is exact IEEE on every
  platform: no float drift between machines).
* `encode_geometric` / `decode_geometric`: i.i.d. integer symbols under a two-sided geometric model (a discrete
  Laplace peaked at 0) given by one 16-bit decay; its integer frequencies are rebuilt by integer arithmetic on
  both sides, so small tensors do not pay for a histogram (bit-exact like `encode_iid`).
* `encode_laplace` / `decode_laplace`: symbols under per-symbol quantized-Laplace models (means, scales given by
  the caller, who must make them bit-identical on both sides).

Block layout of `encode_iid` (docs/bitstream.md, "categorical block"):
    n:varint  [min:svarint  bins:varint  [freq:varint × bins  words:varint  u32 × words]]
Block layout of `encode_geometric` (docs/bitstream.md, "geometric block"):
    n:varint  [min:svarint  bins:varint  [decay:u16  words:varint  u32 × words]]
The symbol count `n` is checked against what the caller expects, so no length field can make us allocate more
than the stream justifies.

constriction's `Categorical` takes `perfect` explicitly (its default differs across versions; it shapes the bits).
"""

from __future__ import annotations

import numpy as np

import constriction

from .bitstream.fields import ByteReader, ByteWriter
from .errors import BitstreamError

MAX_BINS = 1 << 16
_PERFECT = False


def _varint_bytes(values: np.ndarray) -> np.ndarray:
    return 1 + (np.log2(np.maximum(values, 1)) // 7).astype(np.int64)


def quantized_histogram(symbols: np.ndarray, lo: int, bins: int) -> np.ndarray:
    """Frequencies of `symbols - lo` over `bins` bins, at the precision that minimises the block's size.

    Candidates: the exact counts, and counts scaled to totals 2**4 … 2**12 (present symbols kept >= 1). Cost of a
    candidate = its varint bytes + the symbols' information content under it; the cheapest wins (small tensors
    get coarse histograms, large ones precise ones).
    """
    counts = np.bincount(symbols - lo, minlength=bins).astype(np.int64)
    n = int(counts.sum())
    present = counts > 0
    candidates = [counts] + [np.where(present, np.maximum(np.rint(counts * (2**k / n)), 1), 0).astype(np.int64)
                             for k in range(4, 13) if 2**k < n]
    best, best_bits = counts, float("inf")
    for freqs in candidates:
        p = freqs[present] / freqs.sum()
        bits = 8 * _varint_bytes(freqs).sum() - float((counts[present] * np.log2(p)).sum())
        if bits < best_bits:
            best, best_bits = freqs, bits
    return best


def _categorical(freqs: np.ndarray):
    probs = freqs.astype(np.float64) / float(freqs.sum())
    return constriction.stream.model.Categorical(probs, perfect=_PERFECT)


def _encode_block(symbols: np.ndarray, w: ByteWriter, write_model) -> None:
    """Append a block: count, min, bins, then (if more than one bin) the model `write_model(flat, lo, bins, w)`
    writes and returns the frequencies of, then the range-coded words of the symbols under them."""
    flat = np.asarray(symbols).reshape(-1).astype(np.int64)
    w.varint(flat.size, "symbol count")
    if flat.size == 0:
        return
    lo, hi = int(flat.min()), int(flat.max())
    bins = hi - lo + 1
    if bins > MAX_BINS:
        raise ValueError(f"symbol range {lo}..{hi} exceeds {MAX_BINS} bins")
    w.svarint(lo, "min symbol")
    w.varint(bins, "bins")
    if bins == 1:
        return
    freqs = write_model(flat, lo, bins, w)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode((flat - lo).astype(np.int32), _categorical(freqs))
    words = enc.get_compressed()
    w.varint(words.size, "word count")
    w.raw(words.astype("<u4").tobytes())


def _histogram_model(flat: np.ndarray, lo: int, bins: int, w: ByteWriter) -> np.ndarray:
    freqs = quantized_histogram(flat, lo, bins)
    for f in freqs:
        w.varint(int(f), "frequency")
    return freqs


def encode_iid(symbols: np.ndarray, w: ByteWriter) -> None:
    """Append a categorical block coding the integer array `symbols` (any shape, flattened)."""
    _encode_block(symbols, w, _histogram_model)


def geometric_freqs(lo: int, bins: int, decay: int) -> np.ndarray:
    """Frequencies of symbols lo … lo+bins−1: g(0) = 2^16, g(k+1) = (g(k) · decay) >> 16, f(s) = max(1, g(|s|))."""
    reach = max(abs(lo), abs(lo + bins - 1)) + 1
    g = np.zeros(reach, dtype=np.int64)
    v = 1 << 16
    for k in range(reach):
        g[k] = v
        v = (v * decay) >> 16
        if v == 0:
            break
    return np.maximum(g[np.abs(np.arange(lo, lo + bins))], 1)


def _geometric_fit(flat: np.ndarray, lo: int, bins: int) -> int:
    """The decay (1 … 65535) under which the symbols cost the fewest bits (a log-spaced search, encoder only)."""
    counts = np.bincount(flat - lo, minlength=bins)
    present = np.nonzero(counts)[0]
    best, best_bits = 1, float("inf")
    for decay in np.unique(np.rint(65536 - np.geomspace(1, 65535, 96)).astype(np.int64)):
        freqs = geometric_freqs(lo, bins, int(decay))
        bits = -float((counts[present] * np.log2(freqs[present] / freqs.sum())).sum())
        if bits < best_bits:
            best, best_bits = int(decay), bits
    return best


def _geometric_model(flat: np.ndarray, lo: int, bins: int, w: ByteWriter) -> np.ndarray:
    decay = _geometric_fit(flat, lo, bins)
    w.u16(decay, "decay")
    return geometric_freqs(lo, bins, decay)


def encode_geometric(symbols: np.ndarray, w: ByteWriter) -> None:
    """Append a geometric block coding the integer array `symbols` (any shape, flattened)."""
    _encode_block(symbols, w, _geometric_model)


def decode_geometric(r: ByteReader, expected: int, lo_limit: int = -(1 << 15), hi_limit: int = (1 << 15) - 1
                     ) -> np.ndarray:
    """Read a geometric block of `expected` symbols within [lo_limit, hi_limit]; BitstreamError otherwise."""
    n = r.varint("symbol count")
    if n != expected:
        raise BitstreamError(f"corrupt stream: {n} symbols where {expected} were expected")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo = r.svarint("min symbol", limit=1 << 31)
    bins = r.varint("bins", limit=MAX_BINS)
    if bins == 0 or lo < lo_limit or lo + bins - 1 > hi_limit:
        raise BitstreamError(f"corrupt stream: geometric block range {lo}+{bins} outside {lo_limit}..{hi_limit}")
    if bins == 1:
        return np.full(n, lo, dtype=np.int64)
    decay = r.u16("decay")
    freqs = geometric_freqs(lo, bins, decay)
    return _decode_words(r, n, freqs) + lo


def _decode_words(r: ByteReader, n: int, freqs: np.ndarray) -> np.ndarray:
    n_words = r.varint("word count", limit=r.remaining // 4)
    words = np.frombuffer(r.take(4 * n_words, "coded words"), dtype="<u4").astype(np.uint32)
    try:
        out = constriction.stream.queue.RangeDecoder(words).decode(_categorical(freqs), n)
    except BaseException as exc:  # constriction raises pyo3 PanicException (a BaseException) on garbage
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BitstreamError(f"corrupt stream: entropy decoding failed ({type(exc).__name__})") from None
    out = np.asarray(out, dtype=np.int64)
    if out.size != n or (freqs[out] == 0).any():
        raise BitstreamError("corrupt stream: entropy decoder produced impossible symbols")
    return out


def decode_iid(r: ByteReader, expected: int) -> np.ndarray:
    """Read a categorical block; return `expected` int64 symbols or raise BitstreamError."""
    n = r.varint("symbol count")
    if n != expected:
        raise BitstreamError(f"corrupt stream: {n} symbols where {expected} were expected")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    lo = r.svarint("min symbol", limit=1 << 31)
    bins = r.varint("bins", limit=MAX_BINS)
    if bins == 0:
        raise BitstreamError("corrupt stream: categorical block with zero bins")
    if bins == 1:
        return np.full(n, lo, dtype=np.int64)
    if bins > r.remaining:
        raise BitstreamError("truncated stream: histogram")
    freqs = np.array([r.varint("frequency", limit=1 << 40) for _ in range(bins)], dtype=np.int64)
    if freqs.sum() == 0:
        raise BitstreamError("corrupt stream: empty histogram")
    return _decode_words(r, n, freqs) + lo


def encode_laplace(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray, lo: int, hi: int) -> bytes:
    """Range-code int symbols in [lo, hi] under per-symbol quantized Laplace(mean, scale); returns the words."""
    model = constriction.stream.model.QuantizedLaplace(lo, hi)
    enc = constriction.stream.queue.RangeEncoder()
    enc.encode(np.asarray(symbols, dtype=np.int32).reshape(-1), model,
               np.asarray(means, dtype=np.float64).reshape(-1), np.asarray(scales, dtype=np.float64).reshape(-1))
    return enc.get_compressed().astype("<u4").tobytes()


def decode_laplace(data: bytes, means: np.ndarray, scales: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Inverse of `encode_laplace`; `means`/`scales` must be bit-identical to the encoder's."""
    if len(data) % 4:
        raise BitstreamError("corrupt stream: Laplace block is not whole 32-bit words")
    model = constriction.stream.model.QuantizedLaplace(lo, hi)
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    try:
        out = constriction.stream.queue.RangeDecoder(words).decode(
            model, np.asarray(means, dtype=np.float64).reshape(-1), np.asarray(scales, dtype=np.float64).reshape(-1))
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BitstreamError(f"corrupt stream: Laplace decoding failed ({type(exc).__name__})") from None
    return np.asarray(out, dtype=np.int64)


class LaplaceDecoder:
    """Stateful counterpart of `encode_laplace`: decode one block over several calls (autoregressive models,
    where the next symbols' means/scales depend on the symbols decoded so far)."""

    def __init__(self, data: bytes, lo: int, hi: int) -> None:
        if len(data) % 4:
            raise BitstreamError("corrupt stream: Laplace block is not whole 32-bit words")
        self._model = constriction.stream.model.QuantizedLaplace(lo, hi)
        self._decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def decode(self, means: np.ndarray, scales: np.ndarray) -> np.ndarray:
        try:
            out = self._decoder.decode(self._model, np.asarray(means, dtype=np.float64).reshape(-1),
                                       np.asarray(scales, dtype=np.float64).reshape(-1))
        except BaseException as exc:  # pyo3 PanicException is a BaseException
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise BitstreamError(f"corrupt stream: Laplace decoding failed ({type(exc).__name__})") from None
        return np.asarray(out, dtype=np.int64)


def empirical_entropy_bits(symbols: np.ndarray) -> float:
    """Total information content of `symbols` under their own exact histogram (the coder's lower bound)."""
    flat = np.asarray(symbols).reshape(-1)
    if flat.size == 0:
        return 0.0
    _, counts = np.unique(flat, return_counts=True)
    p = counts / flat.size
    return float(-(counts * np.log2(p)).sum())


# --- table-driven coding (learned image codecs, nvc_pipe/intra) -------------------------------------------------
# Each symbol i is a bin index in [0, lengths[t]) of the integer frequency table t = table_index[i] (rows of
# `freqs`, each summing to a power of two). Symbols are coded table after table (ascending t), keeping their
# order within a table; the bytes are the range coder's u32 words, little-endian. Tables are integers made once
# at export time, so encoder and decoder build identical models on any machine.


def _table_groups(table_index: np.ndarray, n_tables: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(table_index, dtype=np.int64).reshape(-1)
    if t.size and (t.min() < 0 or t.max() >= n_tables):
        raise ValueError("table index out of range")
    order = np.argsort(t, kind="stable")
    bounds = np.searchsorted(t[order], np.arange(n_tables + 1))
    return order, bounds


def _table_model(freqs: np.ndarray, lengths: np.ndarray, t: int):
    row = freqs[t, : int(lengths[t])].astype(np.float64)
    return constriction.stream.model.Categorical(row / row.sum(), perfect=_PERFECT)


def encode_tables(symbols: np.ndarray, table_index: np.ndarray, freqs: np.ndarray, lengths: np.ndarray) -> bytes:
    """Range-code bin indices `symbols[i]` under table `table_index[i]`; returns the coded words as bytes."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    order, bounds = _table_groups(table_index, len(lengths))
    if s.size and ((s < 0).any() or (s >= np.asarray(lengths, dtype=np.int64)[np.asarray(table_index)]).any()):
        raise ValueError("symbol outside its table")
    enc = constriction.stream.queue.RangeEncoder()
    for t in range(len(lengths)):
        group = s[order[bounds[t]: bounds[t + 1]]]
        if group.size:
            enc.encode(group.astype(np.int32), _table_model(freqs, lengths, t))
    return enc.get_compressed().astype("<u4").tobytes()


def decode_tables(data: bytes, table_index: np.ndarray, freqs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Inverse of `encode_tables` (int64 bin indices, in the order of `table_index`); BitstreamError on garbage."""
    if len(data) % 4:
        raise BitstreamError("corrupt stream: table-coded block is not whole 32-bit words")
    order, bounds = _table_groups(table_index, len(lengths))
    out = np.zeros(order.size, dtype=np.int64)
    dec = constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype="<u4").astype(np.uint32))
    try:
        for t in range(len(lengths)):
            n = int(bounds[t + 1] - bounds[t])
            if n:
                out[order[bounds[t]: bounds[t + 1]]] = dec.decode(_table_model(freqs, lengths, t), n)
    except BaseException as exc:  # pyo3 PanicException is a BaseException
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise BitstreamError(f"corrupt stream: table decoding failed ({type(exc).__name__})") from None
    return out


def table_entropy_bits(symbols: np.ndarray, table_index: np.ndarray, freqs: np.ndarray, lengths: np.ndarray) -> float:
    """Information content (bits) of `symbols` under their tables: what `encode_tables` should approach."""
    s = np.asarray(symbols, dtype=np.int64).reshape(-1)
    t = np.asarray(table_index, dtype=np.int64).reshape(-1)
    f = freqs[t, s].astype(np.float64)
    totals = freqs.sum(axis=1).astype(np.float64)[t]
    return float(-np.log2(f / totals).sum())
