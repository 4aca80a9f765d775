"""Rate–distortion weight records: integers under learned step sizes, coded with a per-tensor Laplace model.

    rd_tensors = signature:u32  count:varint  record × count  words:varint  u32 × words
    record     = kind:u8 (0 = fp16, 2 = rd)  body
    body(0)    = fp16 × numel                                   (biases)
    body(2)    = step:fp16  ratio:u16  lo:svarint  hi:svarint   (values = q · step, q ∈ [lo, hi])

All integers q of all rd records are range-coded in one block (the `words`), record after record, each element
of a record under that record's table, in C order. A record with lo = hi codes no symbols.

The table of a record is the zero-mean Laplace of scale b binned on the integers, truncated to [lo, hi], built in
integer arithmetic only so every machine builds the same one: with s = ratio / 2^16 (= exp(−1/(2b))) and
r_0 = 2^32, r_k = ⌊r_{k−1} · ratio / 2^16⌋ (= 2^32 s^k),

    freq(0) = 2^32 − r_1,   freq(q) = ⌊(r_{2|q|−1} − r_{2|q|+1}) / 2⌋  (q ≠ 0),   every freq raised to ≥ 1

which is 2^32 × (F(q + ½) − F(q − ½)) for the Laplace CDF F. `signature` is the CRC32 of the model's parameter
list as in `tensors.py`, so the decoder builds the shapes itself. numpy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import entropy
from ..errors import BitstreamError
from .fields import ByteReader, ByteWriter
from .tensors import model_signature

KIND_FP16, KIND_RD = 0, 2
MAX_RANGE = 1 << 14  # hi − lo + 1 of one record (a table row); far above any trained network's integers
ONE = 1 << 32


@dataclass
class RDRecord:
    """One named parameter: fp16 values (`fp16`), or integers `q` in [lo, hi] with their step and Laplace ratio."""

    name: str
    shape: tuple[int, ...]
    fp16: np.ndarray | None = None
    q: np.ndarray | None = None  # int64, the tensor's shape
    step: np.float16 | None = None
    ratio: int = 0  # u16: exp(−1/(2b)) · 2^16
    lo: int = 0
    hi: int = 0

    def values(self) -> np.ndarray:
        """The float32 values the decoder uses."""
        if self.q is None:
            return self.fp16.astype(np.float32).reshape(self.shape)
        return self.q.astype(np.float32) * np.float32(self.step)


def rd_record(name: str, q: np.ndarray, step: float, ratio: int) -> RDRecord:
    q = np.asarray(q, dtype=np.int64)
    lo, hi = (int(q.min()), int(q.max())) if q.size else (0, 0)
    return RDRecord(name, tuple(q.shape), q=q, step=np.float16(step), ratio=int(ratio), lo=lo, hi=hi)


def ratio_of_scale(b: float) -> int:
    """The u16 ratio of a Laplace scale b (in integer units), clamped to 1..65535."""
    return int(min(65535, max(1, round(math.exp(-0.5 / max(b, 1e-9)) * 65536))))


def laplace_table(ratio: int, lo: int, hi: int) -> np.ndarray:
    """int64 frequencies of q = lo..hi (see the module docstring): integers only."""
    kmax = 2 * max(abs(lo), abs(hi)) + 2
    r = np.empty(kmax + 1, dtype=np.int64)
    r[0] = ONE
    for k in range(1, kmax + 1):  # exact: r < 2^32, ratio < 2^16
        r[k] = (int(r[k - 1]) * ratio) >> 16
    a = np.abs(np.arange(lo, hi + 1))
    odd = np.maximum(2 * a - 1, 0)
    out = np.where(a == 0, ONE - r[1], (r[odd] - r[2 * a + 1]) >> 1)
    return np.maximum(out, 1).astype(np.int64)


def _tables(records: list[RDRecord]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(freqs rows, row lengths, record index of each row) for the records that code symbols (lo < hi)."""
    which = [i for i, rec in enumerate(records) if rec.q is not None and rec.hi > rec.lo]
    rows = [laplace_table(records[i].ratio, records[i].lo, records[i].hi) for i in which]
    width = max((len(x) for x in rows), default=1)
    freqs = np.zeros((max(len(rows), 1), width), dtype=np.int64)  # rows padded with zeros (never coded)
    freqs[:, 0] = 1
    for j, row in enumerate(rows):
        freqs[j, : len(row)] = row
    return freqs, np.array([len(x) for x in rows] or [1], dtype=np.int64), which


def _table_index(records: list[RDRecord], which: list[int]) -> np.ndarray:
    idx = [np.full(records[i].q.size, j, dtype=np.int64) for j, i in enumerate(which)]
    return np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)


def _symbols(records: list[RDRecord], which: list[int]) -> np.ndarray:
    syms = [records[i].q.reshape(-1) - records[i].lo for i in which]
    return np.concatenate(syms) if syms else np.zeros(0, dtype=np.int64)


def information_bits(records: list[RDRecord]) -> float:
    """Information content of the records' integers under their tables (what the range coder approaches)."""
    freqs, lengths, which = _tables(records)
    syms = _symbols(records, which)
    return entropy.table_entropy_bits(syms, _table_index(records, which), freqs, lengths) if syms.size else 0.0


def write_rd_tensors(records: list[RDRecord], w: ByteWriter) -> dict:
    """Append the records (in the model's parameter order); return sizes (header, coded and information bits)."""
    start = len(w)
    w.u32(model_signature([(r.name, r.shape) for r in records]), "model signature")
    w.varint(len(records), "tensor count")
    for rec in records:
        if rec.q is None:
            w.u8(KIND_FP16, "kind")
            w.f16_array(rec.fp16.reshape(-1))
            continue
        step = np.float16(rec.step)
        if rec.hi - rec.lo + 1 > MAX_RANGE or not (np.isfinite(step) and step > 0) or not 1 <= rec.ratio <= 65535:
            raise ValueError(f"{rec.name}: integers {rec.lo}..{rec.hi}, step {step} or ratio {rec.ratio} out of range")
        w.u8(KIND_RD, "kind")
        w.f16_array(np.array([step], dtype=np.float16))
        w.u16(rec.ratio, "ratio")
        w.svarint(rec.lo, "lo")
        w.svarint(rec.hi, "hi")
    header = len(w) - start
    freqs, lengths, which = _tables(records)
    syms, idx = _symbols(records, which), _table_index(records, which)
    data = entropy.encode_tables(syms, idx, freqs, lengths) if syms.size else b""
    w.varint(len(data) // 4, "word count")
    w.raw(data)
    info = entropy.table_entropy_bits(syms, idx, freqs, lengths) if syms.size else 0.0
    return {"header_bytes": header, "coded_bytes": len(w) - start, "information_bits": round(info, 1),
            "symbols": int(syms.size)}


def read_rd_tensors(r: ByteReader, expected: list[tuple[str, tuple[int, ...]]],
                    quantized: set[str]) -> dict[str, RDRecord]:
    """Read the records of a model whose ordered (name, shape) list is `expected`; the parameters named in
    `quantized` must be rd records, the others fp16."""
    if r.u32("model signature") != model_signature(expected):
        raise BitstreamError("corrupt stream: payload was written for a different network architecture")
    count = r.varint("tensor count", limit=len(expected))
    if count != len(expected):
        raise BitstreamError(f"corrupt stream: {count} tensors where the model has {len(expected)}")
    records = []
    for name, shape in expected:
        numel = math.prod(shape)
        kind = r.u8("kind")
        want = KIND_RD if name in quantized else KIND_FP16
        if kind != want:
            raise BitstreamError(f"corrupt stream: tensor {name!r} has kind {kind}, expected {want}")
        if kind == KIND_FP16:
            records.append(RDRecord(name, shape, fp16=r.f16_array(numel, f"{name} values")))
            continue
        step = r.f16_array(1, f"{name} step")[0]
        ratio = r.u16("ratio")
        lo, hi = r.svarint("lo", limit=MAX_RANGE), r.svarint("hi", limit=MAX_RANGE)
        if not (np.isfinite(step) and step > 0) or ratio == 0 or not lo <= hi or hi - lo + 1 > MAX_RANGE:
            raise BitstreamError(f"corrupt stream: tensor {name!r} has step={step}, ratio={ratio}, "
                                 f"range {lo}..{hi}")
        records.append(RDRecord(name, shape, q=np.full(shape, lo, dtype=np.int64), step=step, ratio=ratio,
                                lo=lo, hi=hi))
    n_words = r.varint("word count", limit=r.remaining // 4)
    data = r.take(4 * n_words, "coded words")
    freqs, lengths, which = _tables(records)
    if which:
        syms = entropy.decode_tables(data, _table_index(records, which), freqs, lengths)
        pos = 0
        for i in which:
            rec = records[i]
            rec.q = (syms[pos: pos + rec.q.size] + rec.lo).reshape(rec.shape)
            pos += rec.q.size
    return {rec.name: rec for rec in records}
