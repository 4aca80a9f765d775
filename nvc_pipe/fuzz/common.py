"""Constants of the decode-path fuzzer and byte helpers that write what our writer never would."""


from __future__ import annotations

import os
import struct


OUTCOMES = ("ok", "error", "crash", "hang", "oom")
FAILURES = ("crash", "hang", "oom")
# family -> weight (cases are drawn with these weights)
FAMILIES: dict[str, int] = {
    "bitflip": 8, "byteset": 6, "truncate": 5, "splice": 3,
    "boxlen": 4, "sections": 5, "random": 3,
    "crc_bytes": 15, "crc_field": 20, "json": 8, "header": 8, "synth": 8,
    "mkv_tags": 3, "mkv_tagbytes": 2,
}
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_MEM_MB = 64
INPUT_FACTOR = 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

INTERESTING_U = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 127, 128, 255, 256, 1023, 1024, 4095, 4096,
                 65535, 65536, 65537, 1 << 20, 1 << 24, 1 << 28, (1 << 28) + 1, (1 << 31) - 1, 1 << 31,
                 (1 << 32) - 1, 1 << 32, 1 << 40, (1 << 40) + 1, 1 << 48, 1 << 53, (1 << 63) - 1, 1 << 63,
                 (1 << 64) - 1, (1 << 70) - 1]
INTERESTING_BYTES = [0x00, 0x01, 0x02, 0x0F, 0x10, 0x3F, 0x40, 0x7E, 0x7F, 0x80, 0x81, 0xC0, 0xFE, 0xFF]


# ---------------------------------------------------------------------------------------------------------------
# small byte helpers (independent of the writer's range checks: the fuzzer writes what a writer never would)
# ---------------------------------------------------------------------------------------------------------------
def _varint(v: int) -> bytes:
    v &= (1 << 70) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _overlong_varint(v: int, n: int) -> bytes:
    """`v` as an LEB128 padded with continuation bytes to `n` bytes (n = 11 is "too long")."""
    out = bytearray()
    for i in range(n):
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if i < n - 1 else 0))
    return bytes(out)


def _zigzag(v: int) -> int:
    return (v << 1) if v >= 0 else ((-v << 1) - 1)


def _str8(s: bytes | str) -> bytes:
    b = s.encode("utf-8", "surrogatepass") if isinstance(s, str) else s
    b = b[:255]
    return bytes([len(b)]) + b


def _split_boxes(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """(type, payload) of consecutive well-formed boxes, or None if `data` is not exactly that."""
    out, pos = [], 0
    while pos < len(data):
        if len(data) - pos < 12:
            return None
        (n,) = struct.unpack_from("<I", data, pos + 4)
        end = pos + 8 + n
        if end + 4 > len(data):
            return None
        out.append((bytes(data[pos:pos + 4]), bytes(data[pos + 8:end])))
        pos = end + 4
    return out
