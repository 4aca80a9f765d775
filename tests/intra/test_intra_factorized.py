"""Factorized prior: a valid CDF, integer tables summing to the precision, lossless table coding near entropy."""

import numpy as np
import pytest
import torch

from nvc_pipe import entropy
from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError
from nvc_pipe.intra.factorized import EntropyTables, FactorizedDensity, decode_latents, encode_latents, quantize_pmf


@pytest.fixture(scope="module")
def density():
    torch.manual_seed(0)
    d = FactorizedDensity(6)
    with torch.no_grad():  # make the channels differ (wider / narrower, shifted)
        for i, m in enumerate(d.matrices):
            m.add_(torch.linspace(-1.0, 1.0, 6).view(6, 1, 1) * (0.5 if i == 0 else 0.1))
        d.biases[-1].add_(torch.linspace(-2, 2, 6).view(6, 1, 1))
    return d


def test_cdf_is_monotone_and_bounded(density):
    x = torch.linspace(-400, 400, 4001).repeat(6, 1)
    with torch.no_grad():
        c = density.cdf(x)
    assert (c >= 0).all() and (c <= 1).all()
    assert (c[:, 1:] >= c[:, :-1]).all()
    assert (c[:, 0] < 1e-3).all() and (c[:, -1] > 1 - 1e-3).all()


def test_likelihood_is_interval_probability(density):
    y = torch.randn(2, 6, 3, 3) * 3
    with torch.no_grad():
        lik = density.likelihood(y)
        flat = y.permute(1, 0, 2, 3).reshape(6, -1)
        ref = (density.cdf(flat + 0.5) - density.cdf(flat - 0.5)).clamp_min(1e-9)
    assert torch.allclose(lik.permute(1, 0, 2, 3).reshape(6, -1), ref, atol=1e-6)
    assert ((lik > 0) & (lik <= 1)).all()


def test_tables_sum_to_precision(density):
    t = density.export_tables(precision=16)
    t.validate()
    for c in range(t.channels):
        row = t.freqs[c, : t.lengths[c]]
        assert row.sum() == 1 << 16 and (row >= 1).all()
    assert t.freqs.dtype == np.int32 and t.offsets.dtype == np.float16
    again = EntropyTables.from_arrays(t.to_arrays())
    assert np.array_equal(again.freqs, t.freqs) and np.array_equal(again.lo, t.lo)


def test_quantize_pmf_exact_total():
    f = quantize_pmf(np.array([0.7, 0.2, 0.1, 1e-12, 0.0]), 1 << 12)
    assert f.sum() == 1 << 12 and (f >= 1).all()


def _sample(density, tables, shape, seed=0):
    """Integer latents drawn from the tables' own distributions, plus a few escapes."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    q = np.zeros(shape, dtype=np.int64)
    for ch in range(c):
        n = tables.lengths[ch] - 1
        p = tables.freqs[ch, :n] / tables.freqs[ch, :n].sum()
        q[ch] = rng.choice(n, size=(h, w), p=p) + tables.lo[ch]
    q[0, 0, 0] = tables.lo[0] - 7  # below the table: escaped
    q[1, 1, 1] = tables.lo[1] + tables.lengths[1] + 40  # above: escaped
    return q


def test_latent_round_trip_is_lossless_and_near_entropy(density):
    t = density.export_tables()
    q = _sample(density, t, (6, 40, 50))
    w = ByteWriter()
    encode_latents(q, t, w)
    data = w.getvalue()
    out = decode_latents(ByteReader(data), t, q.shape)
    assert np.array_equal(out, q)
    bits = t.entropy_bits(q)
    assert 8 * len(data) <= bits * 1.03 + 64  # range coding costs a few % at most (escapes ~2 bytes each)
    assert 8 * len(data) >= bits * 0.97


def test_encode_tables_generic_round_trip():
    rng = np.random.default_rng(1)
    freqs = np.array([[60000, 5000, 536, 0], [1, 1, 65533, 1]], dtype=np.int32)
    lengths = np.array([3, 4], dtype=np.int32)
    idx = rng.integers(0, 2, 500)
    sym = np.where(idx == 0, rng.choice(3, 500, p=freqs[0, :3] / 65536), rng.choice(4, 500, p=freqs[1] / 65536))
    data = entropy.encode_tables(sym, idx, freqs, lengths)
    assert np.array_equal(entropy.decode_tables(data, idx, freqs, lengths), sym)
    with pytest.raises(BitstreamError):
        entropy.decode_tables(data[:-1], idx, freqs, lengths)


def test_impossible_escape_count_is_an_error(density):
    t = density.export_tables()
    q = _sample(density, t, (6, 4, 4))
    w = ByteWriter()
    encode_latents(q, t, w)
    data = bytearray(w.getvalue())
    data[0] = 0x7F  # more escapes than latents (96)
    with pytest.raises(BitstreamError):
        decode_latents(ByteReader(bytes(data)), t, q.shape)
    with pytest.raises(BitstreamError):  # a different channel count than the tables
        decode_latents(ByteReader(bytes(w.getvalue())), t, (5, 4, 4))
