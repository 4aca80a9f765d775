"""Primitive byte fields of the NVC bitstream: little-endian integers, LEB128 varints, strings, fp16 arrays.

`ByteWriter` appends fields; `ByteReader` reads them back and turns every overrun, out-of-range value or length
that the remaining bytes cannot justify into a `BitstreamError` naming the field. Nothing here allocates more
memory than the input holds: every length is checked against the bytes left *before* it is used.
See docs/bitstream.md for the encoding of each field type.
"""

from __future__ import annotations

import struct

import numpy as np

from ..errors import BitstreamError

_MAX_VARINT_BYTES = 10


class ByteWriter:
    """Accumulates fields into a bytearray."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def u8(self, v: int, name: str = "u8") -> None:
        self._uint(v, 1, "<B", name)

    def u16(self, v: int, name: str = "u16") -> None:
        self._uint(v, 2, "<H", name)

    def u32(self, v: int, name: str = "u32") -> None:
        self._uint(v, 4, "<I", name)

    def i8(self, v: int, name: str = "i8") -> None:
        if not -128 <= v <= 127:
            raise ValueError(f"{name}={v} does not fit in i8")
        self._buf += struct.pack("<b", v)

    def i64(self, v: int, name: str = "i64") -> None:
        if not -(2**63) <= v < 2**63:
            raise ValueError(f"{name}={v} does not fit in i64")
        self._buf += struct.pack("<q", v)

    def varint(self, v: int, name: str = "varint") -> None:
        """Unsigned LEB128."""
        if v < 0 or v >= 2 ** (7 * _MAX_VARINT_BYTES):
            raise ValueError(f"{name}={v} is not a valid varint")
        while True:
            byte = v & 0x7F
            v >>= 7
            if v:
                self._buf.append(byte | 0x80)
            else:
                self._buf.append(byte)
                return

    def svarint(self, v: int, name: str = "svarint") -> None:
        """Signed value as zigzag + LEB128."""
        self.varint((v << 1) if v >= 0 else ((-v << 1) - 1), name)

    def string(self, s: str, name: str = "string") -> None:
        data = s.encode("utf-8")
        if len(data) > 255:
            raise ValueError(f"{name} is longer than 255 bytes")
        self.u8(len(data), name)
        self._buf += data

    def blob(self, data: bytes, name: str = "blob") -> None:
        """Length-prefixed (varint) bytes."""
        self.varint(len(data), name)
        self._buf += data

    def raw(self, data: bytes) -> None:
        self._buf += data

    def f16_array(self, a: np.ndarray) -> None:
        """Raw little-endian IEEE half floats (count known to the reader)."""
        self._buf += np.ascontiguousarray(a, dtype="<f2").tobytes()

    def getvalue(self) -> bytes:
        return bytes(self._buf)

    def __len__(self) -> int:
        return len(self._buf)

    def _uint(self, v: int, n: int, fmt: str, name: str) -> None:
        if not 0 <= v < 256**n:
            raise ValueError(f"{name}={v} does not fit in {8 * n} bits")
        self._buf += struct.pack(fmt, v)


class ByteReader:
    """Reads fields from bytes; any inconsistency raises `BitstreamError`."""

    def __init__(self, data: bytes, what: str = "stream") -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._what = what

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    @property
    def pos(self) -> int:
        return self._pos

    def take(self, n: int, name: str = "bytes") -> bytes:
        if n < 0 or n > self.remaining:
            raise BitstreamError(
                f"truncated {self._what}: {name} needs {n} bytes, {self.remaining} left"
            )
        out = bytes(self._data[self._pos : self._pos + n])
        self._pos += n
        return out

    def u8(self, name: str = "u8") -> int:
        return self.take(1, name)[0]

    def u16(self, name: str = "u16") -> int:
        return struct.unpack("<H", self.take(2, name))[0]

    def u32(self, name: str = "u32") -> int:
        return struct.unpack("<I", self.take(4, name))[0]

    def i8(self, name: str = "i8") -> int:
        return struct.unpack("<b", self.take(1, name))[0]

    def i64(self, name: str = "i64") -> int:
        return struct.unpack("<q", self.take(8, name))[0]

    def varint(self, name: str = "varint", limit: int | None = None) -> int:
        """Unsigned LEB128; `limit` (inclusive) bounds the value."""
        v = shift = 0
        for _ in range(_MAX_VARINT_BYTES):
            byte = self.u8(name)
            v |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        else:
            raise BitstreamError(f"corrupt {self._what}: {name} varint is too long")
        if limit is not None and v > limit:
            raise BitstreamError(f"corrupt {self._what}: {name}={v} exceeds {limit}")
        return v

    def svarint(self, name: str = "svarint", limit: int | None = None) -> int:
        z = self.varint(name)
        v = (z >> 1) if not z & 1 else -((z + 1) >> 1)
        if limit is not None and abs(v) > limit:
            raise BitstreamError(f"corrupt {self._what}: {name}={v} exceeds ±{limit}")
        return v

    def string(self, name: str = "string") -> str:
        n = self.u8(name)
        try:
            return self.take(n, name).decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"corrupt {self._what}: {name} is not UTF-8") from None

    def blob(self, name: str = "blob") -> bytes:
        n = self.varint(name, limit=self.remaining)
        return self.take(n, name)

    def f16_array(self, count: int, name: str = "f16 array") -> np.ndarray:
        return np.frombuffer(self.take(2 * count, name), dtype="<f2").copy()

    def expect_end(self) -> None:
        if self.remaining:
            raise BitstreamError(f"corrupt {self._what}: {self.remaining} unexpected trailing bytes")
