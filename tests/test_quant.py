"""6-bit quantization: axis rule, range, and a lossless quantize → entropy → decode round trip."""

import numpy as np
import pytest
import torch

from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.bitstream.tensors import TensorRecord, read_tensors, write_tensors
from nvc_pipe.errors import BitstreamError
from nvc_pipe.quant import choose_axis, fake_quantize, quant_noise, quantize


def test_axis_rule():
    assert choose_axis((544, 136)) == 0  # Linear out>in: max along out → one scale per input column
    assert choose_axis((136, 1, 3, 3)) == 0  # dwconv: 9 scales
    assert choose_axis((23040, 2)) == 0  # grid [THW, C]: C scales
    assert choose_axis((3, 17)) == -1  # nothing longer than 20: one scale
    assert choose_axis((64, 64)) == 0  # ties: first axis


def test_quantize_range_and_error():
    torch.manual_seed(0)
    x = torch.randn(300, 40)
    qt = quantize(x, 6)
    assert qt.q.min() >= -32 and qt.q.max() <= 31 and qt.scale.dtype == np.float16
    assert qt.scale.shape == (1, 40)
    deq = torch.from_numpy(qt.q.astype(np.float32) * qt.scale.astype(np.float32))
    # half a step, plus the fp16 rounding of the scale at the clamped extreme
    assert ((deq - x).abs() <= torch.from_numpy(qt.scale.astype(np.float32)) * 0.51).all()
    assert torch.equal(fake_quantize(x, 6), deq)


def test_quant_noise_replaces_the_requested_fraction():
    torch.manual_seed(0)
    w = torch.randn(200, 200, requires_grad=True)
    out = quant_noise(w, 6, 0.9)
    replaced = (out == fake_quantize(w, 6)) & (out != w)
    assert 0.85 < replaced.float().mean() < 0.95
    out.sum().backward()  # gradient only through the elements kept in float
    assert 0.05 < (w.grad != 0).float().mean() < 0.15


def test_records_round_trip_lossless():
    torch.manual_seed(0)
    w1, w2, bias = torch.randn(64, 24), torch.randn(8, 1, 3, 3), torch.randn(24)
    mask = (torch.rand(64, 24) > 0.2).numpy()
    records = [TensorRecord("a.weight", (64, 24), quant=quantize(w1 * torch.from_numpy(mask), 6), mask=mask),
               TensorRecord("b.weight", (8, 1, 3, 3), quant=quantize(w2, 6)),
               TensorRecord("a.bias", (24,), fp16=bias.half().numpy())]
    w = ByteWriter()
    stats = write_tensors(records, w)
    assert all(s["coded_bits"] > 0 for s in stats)
    out = read_tensors(ByteReader(w.getvalue()), [(r.name, r.shape) for r in records])
    for rec in records:
        got = out[rec.name]
        if rec.quant is not None:
            assert np.array_equal(got.quant.q, rec.quant.q) and np.array_equal(got.quant.scale, rec.quant.scale)
        assert np.array_equal(got.values(), rec.values())
    assert np.array_equal(out["a.weight"].mask, mask)
    with pytest.raises(BitstreamError, match="architecture"):
        read_tensors(ByteReader(w.getvalue()), [("a.weight", (64, 25)), ("b.weight", (8, 1, 3, 3)), ("a.bias", (24,))])


def test_small_tensors_skip_the_histogram_and_old_records_still_read():
    """A tensor of a few hundred 6-bit values is coded as kind 2 (geometric block); kind-1 records still decode."""
    from nvc_pipe import entropy
    from nvc_pipe.bitstream.tensors import KIND_QUANT, KIND_QUANT_GEOMETRIC, model_signature

    torch.manual_seed(1)
    rec = TensorRecord("s.weight", (16, 24), quant=quantize(torch.randn(16, 24) * 0.1, 6))
    w = ByteWriter()
    write_tensors([rec], w)
    data = w.getvalue()
    assert data[4 + 1 + 1 + 2] == KIND_QUANT_GEOMETRIC  # signature, count, ndim, two dims, kind
    old = ByteWriter()  # the same record as a pre-geometric encoder wrote it (kind 1, histogram)
    old.u32(model_signature([(rec.name, rec.shape)]))
    old.varint(1)
    old.u8(2)
    old.varint(16)
    old.varint(24)
    old.u8(KIND_QUANT)
    old.u8(6)
    old.i8(rec.quant.axis)
    old.f16_array(rec.quant.scale.reshape(-1))
    old.u8(0)
    entropy.encode_iid(rec.quant.q, old)
    assert len(data) < len(old.getvalue())
    for stream in (data, old.getvalue()):
        got = read_tensors(ByteReader(stream), [(rec.name, rec.shape)])[rec.name]
        assert np.array_equal(got.values(), rec.values())
