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
