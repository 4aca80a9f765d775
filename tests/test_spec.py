"""Bitstream container: header round trip, CRC catches every flipped bit, truncation, version, foreign data."""

from fractions import Fraction

import pytest

from nvc_pipe.bitstream.spec import (AccessUnit, SequenceHeader, pack_stream_header, parse_stream_header,
                                     split_access_units)
from nvc_pipe.errors import BitstreamError


def _seq(**kw):
    base = dict(width=97, height=55, pix_fmt="yuv420p10le", color_range="tv", colorspace="bt709",
                fps=Fraction(30000, 1001), time_base=Fraction(1, 30000), frame_count=4, segment_count=2,
                pts=(0, 1001, 2002, 3003), codec="hinerv", payload_version=1, codec_config={"channels": 8})
    base.update(kw)
    return SequenceHeader(**base)


def test_header_round_trip_constant_and_variable_pts():
    for pts in [(0, 1001, 2002, 3003), (5, 1000, 2500, 2600)]:
        seq = _seq(pts=pts)
        parsed, rest = parse_stream_header(pack_stream_header(seq) + b"tail")
        assert parsed == seq and rest == b"tail"


def test_every_flipped_bit_in_header_is_caught():
    data = pack_stream_header(_seq())
    for i in range(len(data)):
        if i == 5:  # the minor version: informational, readers accept any (docs/bitstream.md)
            continue
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                parse_stream_header(bytes(bad))


def test_access_unit_round_trip_and_corruption():
    au = AccessUnit(1, 2, 2, b"\x00\x00\x01\x0fpayload")
    raw = au.to_bytes()
    assert AccessUnit.from_bytes(raw) == au
    assert list(split_access_units(raw + raw)) == [raw, raw]
    for cut in (1, 5, len(raw) - 1):
        with pytest.raises(BitstreamError):
            AccessUnit.from_bytes(raw[:cut])
    bad = bytearray(raw)
    bad[14] ^= 0x40
    with pytest.raises(BitstreamError, match="CRC"):
        AccessUnit.from_bytes(bytes(bad))
    with pytest.raises(BitstreamError, match="truncated"):
        list(split_access_units(raw + raw[:-3]))


def test_foreign_and_future_streams():
    with pytest.raises(BitstreamError, match="magic"):
        parse_stream_header(b"\x1aE\xdf\xa3 matroska")
    data = bytearray(pack_stream_header(_seq()))
    data[4] = 2
    with pytest.raises(BitstreamError, match="version"):
        parse_stream_header(bytes(data))


def test_fuzz_findings_stay_fixed():
    """Regressions found by `make fuzz`: each was a crash, a hang or an unbounded allocation before."""
    from nvc_pipe.bitstream.spec import MAX_FRAMES

    # a header claiming the maximum frame count at a constant rate: parsed lazily, no 2^24-element tuple
    seq = _seq(frame_count=MAX_FRAMES, segment_count=1, pts=range(0, MAX_FRAMES * 2, 2))
    parsed, _ = parse_stream_header(pack_stream_header(seq))
    assert isinstance(parsed.pts, range) and parsed.pts[-1] == 2 * (MAX_FRAMES - 1)
    # a codec config nested deeper than the JSON parser's recursion limit: a clean BitstreamError
    from nvc_pipe.bitstream.fields import ByteWriter

    head = _seq(codec_config={}).to_bytes()
    assert head.endswith(b"\x02{}")
    w = ByteWriter()
    w.blob(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(BitstreamError, match="not JSON"):
        SequenceHeader.from_bytes(head[:-3] + bytes(w.getvalue()))


def test_mkv_tag_rationals_are_parsed_strictly():
    """`Fraction("1e99999999")` hangs; tags go through a bounded parser (another fuzz finding)."""
    from nvc_pipe.media.mux_legacy import parse_duration as _parse_duration
    from nvc_pipe.media.mux_tags import parse_rational as _rational

    assert _rational("1/25") == Fraction(1, 25) and _rational(" 90000 ") == 90000
    for bad in ("1e99999999", "1/0x", "9" * 40, "", "1.5e3"):
        with pytest.raises(ValueError):
            _rational(bad)
    assert _parse_duration("00:00:01.920000000") == Fraction(192, 100)
    assert _parse_duration("00:00:1e99999999") is None
