"""Tensor records: how an overfitted network's parameters are laid out inside an access unit.

    tensors      = signature:u32  count:varint  record × count
    record       = ndim:u8  dim:varint × ndim  kind:u8  body
    body(kind=0) = fp16 × numel                                   (biases, tiny tensors)
    body(kind=1) = bits:u8  axis:i8  scale:fp16 × n_scales  masked:u8
                   [mask: categorical block of numel 0/1 symbols]  values: categorical block
                   (one symbol per unmasked element, in C order; masked elements decode to 0)
    body(kind=2) = as kind 1, but the values are a geometric block (a discrete Laplace given by one u16 decay,
                   no histogram: small tensors, whose 2^bits-bin histogram would cost more than their values)

Records follow the model's parameter order; names are not stored. `signature` is the CRC32 of the model's
parameter list ("name:d0xd1x…" joined by ";"), so a decoder building a different network refuses the payload
instead of loading weights into the wrong places. `n_scales` is the product of the shape with `axis` set to 1
(1 when axis = −1). The decoder passes the shapes it expects (from the architecture in the sequence header), so
no dimension read from the stream sizes an allocation before it has been checked against them. numpy only.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from .. import entropy
from ..errors import BitstreamError
from .fields import ByteReader, ByteWriter

KIND_FP16, KIND_QUANT, KIND_QUANT_GEOMETRIC = 0, 1, 2


@dataclass
class QuantizedTensor:
    """Integer symbols `q` (int64, the tensor's shape) with fp16 `scale` (broadcastable to it)."""

    q: np.ndarray
    scale: np.ndarray
    axis: int
    bits: int


@dataclass
class TensorRecord:
    """One named parameter as stored: either raw fp16 values or a quantized tensor with an optional mask."""

    name: str
    shape: tuple[int, ...]
    fp16: np.ndarray | None = None
    quant: QuantizedTensor | None = None
    mask: np.ndarray | None = None  # bool, True = kept

    def values(self) -> np.ndarray:
        """The float32 values the decoder uses."""
        if self.quant is None:
            return self.fp16.astype(np.float32).reshape(self.shape)
        return self.quant.q.astype(np.float32) * self.quant.scale.astype(np.float32)


def _scale_count(shape: tuple[int, ...], axis: int) -> int:
    return 1 if axis < 0 else math.prod(shape) // shape[axis]


def model_signature(shapes: list[tuple[str, tuple[int, ...]]]) -> int:
    """CRC32 of the ordered parameter list: identifies the architecture a payload was written for."""
    text = ";".join(f"{name}:{'x'.join(map(str, shape))}" for name, shape in shapes)
    return zlib.crc32(text.encode("utf-8"))


def write_tensors(records: list[TensorRecord], w: ByteWriter) -> list[dict]:
    """Append records (in the model's parameter order); return per-tensor stats (coded and entropy bits)."""
    w.u32(model_signature([(r.name, r.shape) for r in records]), "model signature")
    w.varint(len(records), "tensor count")
    stats = []
    for rec in records:
        start = len(w)
        w.u8(len(rec.shape), "ndim")
        for d in rec.shape:
            w.varint(d, "dim")
        entropy_bits = 0.0
        if rec.quant is None:
            w.u8(KIND_FP16, "kind")
            w.f16_array(rec.fp16.reshape(-1))
        else:
            entropy_bits = _write_quantized(rec, w)
        stats.append({"name": rec.name, "numel": math.prod(rec.shape), "coded_bits": 8 * (len(w) - start),
                      "entropy_bits": entropy_bits, "quantized": rec.quant is not None})
    return stats


def _write_quantized(rec: TensorRecord, w: ByteWriter) -> float:
    """Kind 1 or kind 2, whichever is smaller; returns the empirical entropy bits of mask and values."""
    qt = rec.quant
    head = ByteWriter()
    head.u8(qt.bits, "bits")
    head.i8(qt.axis, "axis")
    head.f16_array(qt.scale.reshape(-1))
    symbols = qt.q.reshape(-1)
    bits = 0.0
    if rec.mask is not None:
        keep = rec.mask.reshape(-1)
        head.u8(1, "masked")
        entropy.encode_iid(keep.astype(np.int64), head)
        bits += entropy.empirical_entropy_bits(keep)
        symbols = symbols[keep]
    else:
        head.u8(0, "masked")
    bits += entropy.empirical_entropy_bits(symbols)
    histogram, geometric = ByteWriter(), ByteWriter()
    entropy.encode_iid(symbols, histogram)
    entropy.encode_geometric(symbols, geometric)
    kind, body = ((KIND_QUANT, histogram) if len(histogram) <= len(geometric) else (KIND_QUANT_GEOMETRIC, geometric))
    w.u8(kind, "kind")
    w.raw(head.getvalue())
    w.raw(body.getvalue())
    return bits


def read_tensors(r: ByteReader, expected: list[tuple[str, tuple[int, ...]]]) -> dict[str, TensorRecord]:
    """Read the records of a model whose ordered (name, shape) list is `expected`."""
    if r.u32("model signature") != model_signature(expected):
        raise BitstreamError("corrupt stream: payload was written for a different network architecture")
    count = r.varint("tensor count", limit=len(expected))
    if count != len(expected):
        raise BitstreamError(f"corrupt stream: {count} tensors where the model has {len(expected)}")
    out: dict[str, TensorRecord] = {}
    for name, want in expected:
        ndim = r.u8("ndim")
        shape = tuple(r.varint("dim", limit=1 << 31) for _ in range(ndim))
        if shape != tuple(want):
            raise BitstreamError(f"corrupt stream: tensor {name!r} has shape {shape}, model expects {want}")
        numel = math.prod(shape)
        kind = r.u8("kind")
        if kind == KIND_FP16:
            out[name] = TensorRecord(name, shape, fp16=r.f16_array(numel, f"{name} values"))
            continue
        if kind not in (KIND_QUANT, KIND_QUANT_GEOMETRIC):
            raise BitstreamError(f"corrupt stream: tensor {name!r} has unknown kind {kind}")
        bits = r.u8("bits")
        axis = r.i8("axis")
        if not 2 <= bits <= 16 or not -1 <= axis < ndim:
            raise BitstreamError(f"corrupt stream: tensor {name!r} has bits={bits}, axis={axis}")
        scale_shape = tuple(1 if (axis < 0 or i == axis) else d for i, d in enumerate(shape))
        scale = r.f16_array(_scale_count(shape, axis), f"{name} scales").reshape(scale_shape)
        masked = r.u8("masked")
        if masked > 1:
            raise BitstreamError(f"corrupt stream: tensor {name!r} has mask flag {masked}")
        mask = None
        n_values = numel
        if masked:
            keep = entropy.decode_iid(r, numel)
            if keep.size and (keep.min() < 0 or keep.max() > 1):
                raise BitstreamError(f"corrupt stream: mask of {name!r} is not binary")
            mask = keep.astype(bool).reshape(shape)
            n_values = int(mask.sum())
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if kind == KIND_QUANT:
            values = entropy.decode_iid(r, n_values)
        else:
            values = entropy.decode_geometric(r, n_values, lo, hi)
        if values.size and (values.min() < lo or values.max() > hi):
            raise BitstreamError(f"corrupt stream: tensor {name!r} has values outside {bits} bits")
        q = np.zeros(numel, dtype=np.int64)
        if mask is None:
            q[:] = values
        else:
            q[mask.reshape(-1)] = values
        out[name] = TensorRecord(name, shape, quant=QuantizedTensor(q.reshape(shape), scale, axis, bits), mask=mask)
    return out
