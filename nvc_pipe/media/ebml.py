"""EBML, the binary layout under Matroska (RFC 8794): element IDs, size fields and typed values, as bytes.

Only encoding lives here; what the elements mean is :mod:`nvc_pipe.media.matroska`'s business. An element is
``ID | size (vint) | payload``. IDs are given with their length marker included (``0x1A45DFA3``), as in the
Matroska specification. Unsigned integers are written in the fewest bytes, floats as 8-byte IEEE doubles, strings
as UTF-8 without a terminator.
"""

from __future__ import annotations

import struct

UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"  # an 8-byte size field with all value bits set: "unknown"
_MAX_SIZE = (1 << 56) - 2  # the largest value an 8-byte size field can hold (all ones is reserved for "unknown")


def element_id(ident: int) -> bytes:
    """The bytes of an element ID (its length marker is part of the number)."""
    if not 0x80 <= ident <= 0x1FFFFFFF:
        raise ValueError(f"bad EBML id {ident:#x}")
    return ident.to_bytes((ident.bit_length() + 7) // 8, "big")


def size_field(size: int, width: int | None = None) -> bytes:
    """An EBML variable-length size: the shortest one, or exactly ``width`` bytes (1..8)."""
    if not 0 <= size <= _MAX_SIZE:
        raise ValueError(f"EBML size {size} out of range")
    if width is None:
        width = 1
        while size >= (1 << (7 * width)) - 1:  # all value bits set would mean "unknown"
            width += 1
    elif not 1 <= width <= 8 or size >= (1 << (7 * width)) - 1:
        raise ValueError(f"EBML size {size} does not fit in {width} bytes")
    return ((1 << (7 * width)) | size).to_bytes(width, "big")


def element(ident: int, payload: bytes) -> bytes:
    """A complete element: ID, shortest size, payload."""
    return element_id(ident) + size_field(len(payload)) + payload


def master(ident: int, *children: bytes) -> bytes:
    """A master element holding the given (already encoded) child elements."""
    return element(ident, b"".join(children))


def uint(ident: int, value: int, width: int | None = None) -> bytes:
    """An unsigned-integer element (fewest bytes, or exactly ``width`` bytes so it can be patched later)."""
    value = int(value)
    if value < 0:
        raise ValueError(f"EBML uint {value} is negative")
    if width is None:
        width = max(1, (value.bit_length() + 7) // 8)
    return element(ident, value.to_bytes(width, "big"))


def sint(ident: int, value: int) -> bytes:
    """A signed-integer element (two's complement, fewest bytes)."""
    value = int(value)
    width = 1
    while not -(1 << (8 * width - 1)) <= value < (1 << (8 * width - 1)):
        width += 1
    return element(ident, value.to_bytes(width, "big", signed=True))


def double(ident: int, value: float) -> bytes:
    """A float element as an 8-byte IEEE double."""
    return element(ident, struct.pack(">d", float(value)))


def string(ident: int, value: str) -> bytes:
    """A UTF-8 string element (also used for ASCII ``string`` elements: callers keep those ASCII)."""
    return element(ident, value.encode("utf-8"))


def binary(ident: int, value: bytes) -> bytes:
    """A binary element."""
    return element(ident, bytes(value))


def void(total: int) -> bytes:
    """A Void element (ID 0xEC) exactly ``total`` bytes long (>= 2): padding that readers skip."""
    if total < 2:
        raise ValueError("a Void element takes at least 2 bytes")
    if total - 2 < 0x7F:  # a 1-byte size holds 0..126
        return b"\xec" + size_field(total - 2, 1) + bytes(total - 2)
    return b"\xec" + size_field(total - 9, 8) + bytes(total - 9)
