"""constriction coding: exact round trips, rate close to the empirical entropy, corrupt blocks rejected."""

import numpy as np
import pytest

from nvc_pipe import entropy
from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError


@pytest.mark.parametrize("case", ["laplacian", "constant", "two", "empty", "wide"])
def test_iid_round_trip(case):
    rng = np.random.default_rng(0)
    symbols = {
        "laplacian": np.clip(np.round(rng.laplace(0, 4, 20000)), -32, 31),
        "constant": np.full(100, -7),
        "two": rng.integers(0, 2, 999),
        "empty": np.zeros(0),
        "wide": rng.integers(-3000, 3000, 500),
    }[case].astype(np.int64)
    w = ByteWriter()
    entropy.encode_iid(symbols, w)
    w.raw(b"after")
    r = ByteReader(w.getvalue())
    assert np.array_equal(entropy.decode_iid(r, symbols.size), symbols)
    assert r.take(5) == b"after"


def test_rate_close_to_entropy():
    rng = np.random.default_rng(1)
    symbols = np.clip(np.round(rng.laplace(0, 3, 200000)), -32, 31).astype(np.int64)
    w = ByteWriter()
    entropy.encode_iid(symbols, w)
    ideal = entropy.empirical_entropy_bits(symbols)
    assert ideal < 8 * len(w) < ideal * 1.01 + 2000


def test_wrong_count_and_garbage_are_errors():
    w = ByteWriter()
    entropy.encode_iid(np.arange(50) % 7, w)
    data = w.getvalue()
    with pytest.raises(BitstreamError):
        entropy.decode_iid(ByteReader(data), 51)
    with pytest.raises(BitstreamError):
        entropy.decode_iid(ByteReader(data[:-3]), 50)
    huge = ByteWriter()
    huge.varint(50)
    huge.svarint(0)
    huge.varint(1 << 30)  # bins: more than the block could hold
    with pytest.raises(BitstreamError):
        entropy.decode_iid(ByteReader(huge.getvalue()), 50)


def test_laplace_round_trip():
    rng = np.random.default_rng(2)
    means = rng.normal(0, 2, 5000)
    scales = rng.uniform(0.3, 5, 5000)
    symbols = np.clip(np.round(rng.laplace(means, scales)), -64, 64).astype(np.int64)
    data = entropy.encode_laplace(symbols, means, scales, -64, 64)
    assert np.array_equal(entropy.decode_laplace(data, means, scales, -64, 64), symbols)


def test_geometric_round_trip_and_cheaper_than_a_histogram_for_few_symbols():
    rng = np.random.default_rng(3)
    for n, spread in ((300, 4), (20, 1), (5000, 8)):
        symbols = np.clip(np.round(rng.laplace(0, spread, n)), -32, 31).astype(np.int64)
        w = ByteWriter()
        entropy.encode_geometric(symbols, w)
        w.raw(b"after")
        r = ByteReader(w.getvalue())
        assert np.array_equal(entropy.decode_geometric(r, n, -32, 31), symbols)
        assert r.take(5) == b"after"
    small = np.clip(np.round(rng.laplace(0, 5, 300)), -32, 31).astype(np.int64)
    hist, geo = ByteWriter(), ByteWriter()
    entropy.encode_iid(small, hist)
    entropy.encode_geometric(small, geo)
    assert len(geo) < 0.9 * len(hist)  # no 40-odd-bin histogram to send
    # the model is integers only: the same table on every machine
    assert entropy.geometric_freqs(-2, 5, 32768).tolist() == [16384, 32768, 65536, 32768, 16384]


def test_geometric_block_errors():
    w = ByteWriter()
    entropy.encode_geometric(np.arange(-10, 10), w)
    data = w.getvalue()
    with pytest.raises(BitstreamError):
        entropy.decode_geometric(ByteReader(data), 21)
    with pytest.raises(BitstreamError):
        entropy.decode_geometric(ByteReader(data[:-3]), 20)
    with pytest.raises(BitstreamError, match="outside"):  # symbols beyond what the tensor's bits allow
        entropy.decode_geometric(ByteReader(data), 20, -8, 7)
