"""The mutation families and `generate(seed, index)`: case i of seed S is a pure function of (S, i) and the seeds."""


from __future__ import annotations

import json
import os
import random
import re
import struct
import zlib
from dataclasses import dataclass

from ..bitstream.spec import BOX_ACCESS_UNIT, BOX_SEQUENCE, MAGIC, VERSION, pack_box
from .common import FAMILIES, INTERESTING_BYTES, _str8, _varint, _zigzag
from .streams import (Parts, Seed, _field_value, _info_for, _json_span, _mkv_bytes, au_fields, seqh_fields,
                      synth_parts)

# ---------------------------------------------------------------------------------------------------------------
# mutations
# ---------------------------------------------------------------------------------------------------------------
def _mutate_bytes(rng: random.Random, data: bytes, ops: tuple[str, ...]) -> tuple[bytes, str]:
    b = bytearray(data)
    op = rng.choice(ops)
    if not b and op not in ("insert", "append"):
        op = "append"
    if op == "bitflip":
        k = rng.choice([1, 1, 1, 2, 3, 8])
        pos = [rng.randrange(len(b)) for _ in range(k)]
        for p in pos:
            b[p] ^= 1 << rng.randrange(8)
        return bytes(b), f"flip {k} bit(s) at {pos[:4]}"
    if op == "byteset":
        k = rng.choice([1, 1, 2, 4])
        pos = [rng.randrange(len(b)) for _ in range(k)]
        for p in pos:
            b[p] = rng.choice(INTERESTING_BYTES + [rng.randrange(256)])
        return bytes(b), f"set {k} byte(s) at {pos[:4]}"
    if op == "truncate":
        n = rng.choice([rng.randrange(len(b) + 1), len(b) - 1, len(b) - rng.randint(1, 8), rng.randint(0, 16)])
        n = max(0, min(n, len(b)))
        return bytes(b[:n]), f"truncate to {n} of {len(b)}"
    if op == "insert":
        p = rng.randrange(len(b) + 1)
        junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 2, 4, 16, 100])))
        return bytes(b[:p] + junk + b[p:]), f"insert {len(junk)} byte(s) at {p}"
    if op == "append":
        junk = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 12, 100])))
        return bytes(b) + junk, f"append {len(junk)} byte(s)"
    if op == "delete":
        p = rng.randrange(len(b))
        n = rng.choice([1, 2, 4, 16, 64])
        return bytes(b[:p] + b[p + n:]), f"delete {n} byte(s) at {p}"
    # dup: copy a chunk over another place
    p, q = rng.randrange(len(b)), rng.randrange(len(b))
    n = rng.choice([4, 8, 16, 64])
    chunk = b[p:p + n]
    b[q:q + len(chunk)] = chunk
    return bytes(b), f"copy {len(chunk)} byte(s) {p}->{q}"


_BYTE_OPS = ("bitflip", "bitflip", "byteset", "byteset", "truncate", "insert", "delete", "append", "dup")


def _pick_box(rng: random.Random, parts: Parts) -> int:
    """-1 for SEQH, else the index of an access unit (AUs hold most of the parsers behind the CRC)."""
    if not parts.aus or rng.random() < 0.3:
        return -1
    return rng.randrange(len(parts.aus))


def _get(parts: Parts, i: int) -> bytes:
    return parts.seqh if i < 0 else parts.aus[i]


def _set(parts: Parts, i: int, payload: bytes) -> None:
    if i < 0:
        parts.seqh = payload
    else:
        parts.aus[i] = payload


def _boxname(i: int) -> str:
    return "SEQH" if i < 0 else f"AU{i}"


def mut_crc_bytes(rng: random.Random, parts: Parts) -> str:
    i = _pick_box(rng, parts)
    new, what = _mutate_bytes(rng, _get(parts, i), _BYTE_OPS)
    _set(parts, i, new)
    return f"{_boxname(i)} payload: {what}, CRC fixed"


def mut_crc_field(rng: random.Random, parts: Parts) -> str:
    notes = []
    for _ in range(rng.choice([1, 1, 1, 2])):
        i = _pick_box(rng, parts)
        payload = _get(parts, i)
        fields = seqh_fields(payload) if i < 0 else au_fields(payload)
        if not fields:
            continue
        f = rng.choice(fields)
        new = _field_value(rng, f)
        _set(parts, i, payload[:f.off] + new + payload[f.off + f.size:])
        notes.append(f"{_boxname(i)} {f.kind} {f.name!r}@{f.off} {f.value} -> {new.hex()}")
    return "; ".join(notes) + ", CRC fixed"


_JSON_EXTREMES = [0, -1, 1, 2, 3, 64, 1000, 100000, 2**31, 2**63, 10**30, 10**400, 0.5, -0.5, 1e-300, 1e308,
                  float("nan"), float("inf"), float("-inf"), True, False, None, "3", [], {}, [1], [[1]]]


def _short(v) -> str:
    t = repr(v)
    return t if len(t) <= 60 else t[:40] + f"...({len(t)} chars)"


def _json_text(rng: random.Random, cfg: dict) -> tuple[bytes, str]:
    op = rng.choice(["value", "value", "value", "list", "drop", "add", "type", "whole", "deep", "raw"])
    d = dict(cfg)
    key = rng.choice(sorted(d)) if d else "channels"
    if op == "value":
        v = rng.choice(_JSON_EXTREMES)
        if isinstance(d.get(key), list) and rng.random() < 0.7:
            lst = list(d[key])
            i = rng.randrange(len(lst)) if lst else 0
            if lst:
                lst[i] = v
            d[key] = lst
            note = f"{key}[{i}] = {_short(v)}"
        else:
            d[key] = v
            note = f"{key} = {_short(v)}"
    elif op == "list":
        n = rng.choice([0, 1, 2, 3, 4, 8, 64, 10000])
        d[key] = [rng.choice([1, 2, 3, 1.0, 0, 100, 10**6]) for _ in range(n)]
        note = f"{key} = {_short(d[key])}"
        if rng.random() < 0.5:  # keep the three per-stage lists the same length
            for k in ("scales", "depths", "exps"):
                d[k] = [rng.choice([1, 2, 3, 1.0, 0, 100, 10**6]) for _ in range(n)]
            note = "scales, depths, exps = " + ", ".join(_short(d[k]) for k in ("scales", "depths", "exps"))
    elif op == "drop":
        d.pop(key, None)
        note = f"{key} removed"
    elif op == "add":
        k, v = rng.choice(["extra", "", "channels ", "__class__", "x" * 200]), rng.choice(_JSON_EXTREMES)
        d[k] = v
        note = f"unknown key {_short(k)} = {_short(v)}"
    elif op == "type":
        d[key] = rng.choice(["16", [d.get(key)], {"v": d.get(key)}, None, str(d.get(key)), 1.5])
        note = f"{key} = {_short(d[key])}"
    elif op == "whole":
        v = rng.choice([[], "x", 1, None, [cfg], {"hinerv": cfg}])
        return json.dumps(v).encode(), f"whole config = {_short(v)}"
    elif op == "deep":
        depth = rng.choice([100, 1000, 5000, 100000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        inner = opener * depth + "1" + closer * depth
        wrap = rng.random() < 0.5
        text = ('{"channels":' + inner + "}" if wrap else inner).encode()
        return text, f"{'channels = ' if wrap else ''}{opener!r} nested {depth} deep"
    else:  # raw text damage
        text = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
        i = rng.randrange(8)
        out = [text + b"x", b"\xef\xbb\xbf" + text, text.replace(b"16", b"\xff\xfe", 1), text[:-1],
               text.replace(b'"channels":16', b'"channels":16,"channels":9999999', 1),
               b" " * 1000 + text, text.replace(b":", b":-", 1), b""][i]
        names = ["trailing x", "UTF-8 BOM", "invalid UTF-8", "last byte cut", "duplicate key", "1000 spaces",
                 "first value negated", "empty"]
        return out, f"raw JSON text: {names[i]}"
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode(), note


def mut_json(rng: random.Random, parts: Parts) -> str:
    span = _json_span(parts.seqh)
    if span is None:
        return "json: no codec_config found"
    try:
        cfg = json.loads(parts.seqh[span[1]:])
    except ValueError:
        cfg = {}
    text, note = _json_text(rng, cfg if isinstance(cfg, dict) else {})
    parts.seqh = parts.seqh[:span[0]] + _varint(len(text)) + text
    return f"codec_config: {note}, CRC fixed"


_PIX_FMTS_ODD = ["nv12", "yuv420p16le", "rgba", "", "bogus", "yuv420p\x00", "\udcff", "gray16le", "p010le", "pal8"]


def _header_dict(seqh: bytes) -> dict | None:
    from ..bitstream.spec import SequenceHeader

    try:
        s = SequenceHeader.from_bytes(seqh)
    except Exception:  # noqa: BLE001
        return None
    span = _json_span(seqh)
    return {"width": s.width, "height": s.height, "pix_fmt": s.pix_fmt, "color_range": s.color_range,
            "colorspace": s.colorspace, "fps": (s.fps.numerator, s.fps.denominator),
            "tb": (s.time_base.numerator, s.time_base.denominator), "frames": s.frame_count,
            "segments": s.segment_count, "pts": (0, s.pts[0], s.pts[1] - s.pts[0] if len(s.pts) > 1 else 1),
            "codec": s.codec, "pv": s.payload_version, "config": seqh[span[1]:], "tail": b""}


def _header_bytes(h: dict) -> bytes:
    pts = h["pts"]
    if pts[0] == 0:
        pbytes = struct.pack("<B", 0) + struct.pack("<q", pts[1]) + struct.pack("<q", pts[2])
    else:
        pbytes = struct.pack("<B", pts[0] & 0xFF) + struct.pack("<q", pts[1]) + b"".join(
            _varint(_zigzag(d)) for d in pts[2])
    return (struct.pack("<II", h["width"] & 0xFFFFFFFF, h["height"] & 0xFFFFFFFF) + _str8(h["pix_fmt"])
            + _str8(h["color_range"]) + _str8(h["colorspace"])
            + struct.pack("<IIII", *(v & 0xFFFFFFFF for v in (*h["fps"], *h["tb"])))
            + struct.pack("<II", h["frames"] & 0xFFFFFFFF, h["segments"] & 0xFFFFFFFF) + pbytes
            + _str8(h["codec"]) + struct.pack("<H", h["pv"] & 0xFFFF) + _varint(len(h["config"])) + h["config"]
            + h["tail"])


def mut_header(rng: random.Random, parts: Parts) -> str:
    from ..media.clip import COLORSPACES, SUPPORTED_PIX_FMTS

    h = _header_dict(parts.seqh)
    if h is None:
        return mut_crc_field(rng, parts)
    notes = []
    i64 = [0, -1, 1, (1 << 63) - 1, -(1 << 63), 1 << 40, -(1 << 40)]
    for _ in range(rng.choice([1, 1, 2, 3])):
        k = rng.choice(["size", "size", "pix_fmt", "pix_fmt", "color_range", "colorspace", "rate", "frames",
                        "frames", "segments", "pts", "pts", "codec", "pv", "tail"])
        if k == "size":
            dim = rng.choice(["width", "height"])
            h[dim] = rng.choice([0, 1, 2, 3, h[dim] - 1, h[dim] + 1, h[dim] - 3, h[dim] + 8, 64, 4096, 65536, 65537,
                                 (1 << 32) - 1])
            notes.append(f"{dim}={h[dim]}")
        elif k == "pix_fmt":
            h["pix_fmt"] = rng.choice(list(SUPPORTED_PIX_FMTS) + _PIX_FMTS_ODD)
            notes.append(f"pix_fmt={h['pix_fmt']!r}")
        elif k == "color_range":
            h["color_range"] = rng.choice(["tv", "pc", "", "mpeg", "jpeg", "unknown", "x" * 255])
            notes.append(f"color_range={h['color_range'][:20]!r}")
        elif k == "colorspace":
            h["colorspace"] = rng.choice(list(COLORSPACES) + ["", "bt2020c", "unknown", "rgb", "ycgco", "bt470bg"])
            notes.append(f"colorspace={h['colorspace']!r}")
        elif k == "rate":
            which = rng.choice(["fps", "tb"])
            h[which] = rng.choice([(0, 1), (1, 0), (25, 1), (1, 25), ((1 << 32) - 1, 1), (1, (1 << 32) - 1),
                                   (30000, 1001), ((1 << 32) - 1, (1 << 32) - 1), (1, 1)])
            notes.append(f"{which}={h[which]}")
        elif k == "frames":
            h["frames"] = rng.choice([0, 1, 2, h["frames"] - 1, h["frames"] + 1, 1 << 20, 1 << 24, 1 << 28,
                                      (1 << 28) + 1, (1 << 32) - 1])
            notes.append(f"frame_count={h['frames']}")
        elif k == "segments":
            h["segments"] = rng.choice([0, 1, 2, 3, h["frames"], h["frames"] + 1, (1 << 32) - 1])
            notes.append(f"segment_count={h['segments']}")
        elif k == "pts":
            mode = rng.choice([0, 0, 1, 1, 2, 255])
            if mode == 0:
                h["pts"] = (0, rng.choice(i64), rng.choice(i64 + [2, 1001]))
            else:
                n = min(rng.choice([h["frames"] - 1, h["frames"], 0, 1, h["frames"] + 5]), 1000)
                h["pts"] = (mode, rng.choice(i64), [rng.choice([1, 0, -1, 1 << 40, -(1 << 40), (1 << 41), 5])
                                                     for _ in range(max(n, 0))])
            notes.append(f"pts={str(h['pts'])[:80]}")
        elif k == "codec":
            h["codec"] = rng.choice(["hinerv", "c3", "", "HiNeRV", "x" * 255, "../../etc/passwd", "nvc_hinerv:codec",
                                     "hinerv\x00", "\udcff"])
            notes.append(f"codec={h['codec'][:20]!r}")
        elif k == "pv":
            h["pv"] = rng.choice([0, 1, 2, 65535])
            notes.append(f"payload_version={h['pv']}")
        else:
            h["tail"] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 100])))
            notes.append(f"{len(h['tail'])} trailing bytes")
    parts.seqh = _header_bytes(h)
    return "header " + ", ".join(notes) + ", CRC fixed"


def mut_sections(rng: random.Random, parts: Parts, other: Parts) -> str:
    op = rng.choice(["drop", "dup", "swap", "reverse", "seqh_twice", "seqh_last", "header_only", "no_header",
                     "foreign_au", "foreign_seqh", "version", "magic", "au_as_seqh"])
    aus = parts.aus
    if op == "drop" and aus:
        i = rng.randrange(len(aus))
        del aus[i]
        return f"drop AU{i}"
    if op == "dup" and aus:
        i = rng.randrange(len(aus))
        aus.insert(rng.randrange(len(aus) + 1), aus[i])
        return f"duplicate AU{i}"
    if op == "swap" and len(aus) > 1:
        aus[0], aus[-1] = aus[-1], aus[0]
        return "swap first and last AU"
    if op == "reverse":
        aus.reverse()
        return "reverse AUs"
    if op == "seqh_twice":
        parts.boxes = [(BOX_SEQUENCE, parts.seqh)] + parts.box_list()
        return "SEQH twice"
    if op == "seqh_last":
        parts.boxes = [(BOX_ACCESS_UNIT, a) for a in aus] + [(BOX_SEQUENCE, parts.seqh)]
        return "SEQH after the AUs"
    if op == "header_only":
        parts.aus = []
        return "header only"
    if op == "no_header":
        parts.boxes = [(BOX_ACCESS_UNIT, a) for a in aus]
        return "AUs without SEQH"
    if op == "foreign_au" and other.aus:
        j = rng.randrange(len(other.aus))
        if aus and rng.random() < 0.5:
            aus[rng.randrange(len(aus))] = other.aus[j]
        else:
            aus.append(other.aus[j])
        return f"foreign AU{j}"
    if op == "foreign_seqh":
        parts.seqh = other.seqh
        return "SEQH of another seed"
    if op == "version":
        parts.prefix = MAGIC + bytes([rng.choice([0, 1, 2, 255]), rng.choice([0, 1, 255])])
        return f"version {parts.prefix[4]}.{parts.prefix[5]}"
    if op == "magic":
        parts.prefix = rng.choice([b"\x8bNVD", b"NVC\x8b", b"\x00\x00\x00\x00", b"\x1aE\xdf\xa3"]) + parts.prefix[4:]
        return f"magic {parts.prefix[:4]!r}"
    parts.boxes = [(BOX_SEQUENCE, aus[0] if aus else b"")] + [(BOX_ACCESS_UNIT, a) for a in aus]
    return "AU payload in the SEQH box"


def mut_random(rng: random.Random, seeds: list[Seed]) -> tuple[bytes, str]:
    op = rng.choice(["magic", "magic_version", "boxes", "au_random"])
    rnd = lambda n: bytes(rng.randrange(256) for _ in range(n))  # noqa: E731
    if op == "magic":
        n = rng.choice([0, 1, 2, 8, 64])
        return MAGIC + rnd(n), f"magic + {n} random bytes"
    if op == "magic_version":
        n = rng.choice([0, 4, 11, 12, 64, 512])
        return MAGIC + bytes(VERSION) + rnd(n), f"magic, version + {n} random bytes"
    if op == "boxes":
        k = rng.randint(0, 3)
        seqh = rnd(rng.choice([0, 8, 40, 200]))
        aus = [rnd(rng.choice([0, 12, 16, 100])) for _ in range(k)]
        return Parts(MAGIC + bytes(VERSION), seqh, aus).nvc(), f"CRC-valid SEQH + {k} AU boxes of random bytes"
    seed = rng.choice(seeds)
    n = rng.choice([0, 4, 5, 20, 300])
    parts = Parts(seed.parts.prefix, seed.parts.seqh,
                  [a[:12] + rnd(n) for a in seed.parts.aus])
    return parts.nvc(), f"valid SEQH + AUs with {n} random payload bytes ({seed.name})"


def mut_boxlen(rng: random.Random, seed: Seed) -> tuple[bytes, str]:
    data = bytearray(seed.parts.nvc())
    offsets, pos = [], 6
    for _k, p in seed.parts.box_list():
        offsets.append(pos)
        pos += 12 + len(p)
    off = rng.choice(offsets)
    old = struct.unpack_from("<I", data, off + 4)[0]
    new = rng.choice([0, 1, 3, 4, old - 1, old + 1, old - 4, old + 4, old * 2, 1 << 31, (1 << 32) - 1,
                      (1 << 32) - 12, len(data)]) & 0xFFFFFFFF
    struct.pack_into("<I", data, off + 4, new)
    note = f"box at {off}: length {old} -> {new}"
    end = off + 8 + new
    if rng.random() < 0.5 and end + 4 <= len(data):
        struct.pack_into("<I", data, end, zlib.crc32(bytes(data[off:end])))
        note += ", CRC planted at the new end"
    return bytes(data), note


def _tag_value(rng: random.Random, key: str) -> str:
    pool = {
        "NVC_MUX_TIME_BASE": ["1/25", "0", "-1/25", "1/0", "abc", "", " 1/25 ", "1_0/25", "1e-999999", "1e-99999999",
                              "1/" + "9" * 5000, "1e30", "nan", "inf", "0x10"],
        "NVC_MUX_FPS": ["25/1", "0", "-25", "1/0", "1e99999999", "1e-30", "9" * 5000, "nan", "1e400"],
        "NVC_MUX_PTS0": ["0", "-1", "9" * 4300, "9" * 5000, "1e3", "", "nan", str(1 << 63), str(-(1 << 70)), "+5"],
        "NVC_MUX_KEYS": ['["NVC_CODEC","NVC_VERSION","title"]', "[]", "{}", "null", "[1,2]", '["DURATION"]',
                         "[" * 100000 + "]" * 100000, '["x","y"]', "not json", '[["a"]]', '["NVC_MUX_FPS"]'],
        "DURATION": ["00:00:00.120000000", "00:00:99.0", "1e99999999", "00:00:1e99999999", "99999999:00:00",
                     "::", "00:00:-5", ""],
    }
    return rng.choice(pool[key])


def mut_mkv_tags(rng: random.Random, seed: Seed, tmpdir: str) -> tuple[bytes, str]:
    import av

    parts = seed.parts
    tags = {"NVC_CODEC": "hinerv", "NVC_VERSION": "0.1.0", "title": "nvc-pipe hinerv stream",
            "NVC_MUX_VERSION": "1", "NVC_MUX_TIME_BASE": "1/25", "NVC_MUX_FPS": "25/1", "NVC_MUX_PTS0": "0",
            "NVC_MUX_KEYS": '["NVC_CODEC","NVC_VERSION","title"]'}
    notes = []
    for _ in range(rng.choice([1, 1, 2])):
        key = rng.choice(["NVC_MUX_TIME_BASE", "NVC_MUX_FPS", "NVC_MUX_PTS0", "NVC_MUX_KEYS", "DURATION", "drop"])
        if key == "drop":
            k = rng.choice(["NVC_CODEC", "NVC_MUX_TIME_BASE", "NVC_MUX_KEYS"])
            tags.pop(k, None)
            notes.append(f"no {k}")
        else:
            tags[key] = _tag_value(rng, key)
            v = tags[key]
            notes.append(f"{key}={v if len(v) < 40 else v[:20] + '...(%d chars)' % len(v)!r}")
    path = os.path.join(tmpdir, "gen-tags.mkv")
    header = parts.prefix + pack_box(BOX_SEQUENCE, parts.seqh)
    tb = _info_for(parts).time_base
    with av.open(path, "w", format="matroska") as oc:
        st = oc.add_stream("dvb_subtitle")
        st.codec_context.extradata = header
        for k, v in tags.items():
            st.metadata[k] = v
        oc.start_encoding()
        for i, a in enumerate(parts.aus):
            pkt = av.Packet(pack_box(BOX_ACCESS_UNIT, a))
            pkt.stream = st
            pkt.time_base = tb
            pkt.pts = pkt.dts = 2 * i
            pkt.duration = 2
            oc.mux(pkt)
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data, "MKV tags: " + ", ".join(notes)


def mut_mkv_tagbytes(rng: random.Random, seed: Seed) -> tuple[bytes, str]:
    data = bytearray(seed.data)
    spans = []
    for m in re.finditer(rb"\x44\x87|\x45\xa3", bytes(data)):  # TagString, TagName
        p = m.end()
        if p >= len(data):
            continue
        first = data[p]
        n = 1
        while n <= 8 and not first & (0x80 >> (n - 1)):
            n += 1
        if n > 8 or p + n > len(data):
            continue
        size = int.from_bytes(bytes([first & (0xFF >> n)]) + bytes(data[p + 1:p + n]), "big")
        if 0 < size < 4096 and p + n + size <= len(data):
            spans.append((p + n, size))
    if not spans:
        return _mutate_bytes(rng, bytes(data), ("byteset",))[0], "no tag strings found: byteset"
    start, size = rng.choice(spans)
    k = rng.randint(1, min(size, 6))
    at = start + rng.randrange(size - k + 1)
    fill = rng.choice([b"\xff", b"\xc3", b"\x00", b"9", b"e", b"/", b"-", b"["])
    for j in range(k):
        data[at + j] = fill[0] if rng.random() < 0.7 else rng.randrange(256)
    return bytes(data), f"MKV tag string at {start}+{at - start}: {k} byte(s) overwritten ({fill!r}...)"


@dataclass
class Case:
    index: int
    family: str
    seed: str
    recipe: str
    data: bytes
    suffix: str
    inspect: bool  # also run inspect_file
    sink: bool  # decode_file to a .y4m instead of iter_decoded


def _families(rng: random.Random) -> str:
    names = list(FAMILIES)
    return rng.choices(names, weights=[FAMILIES[n] for n in names])[0]


def generate(seed_value: int, index: int, seeds: list[Seed], tmpdir: str) -> Case:
    """Case `index` of run `seed_value`: a pure function of both and of the seed streams."""
    import warnings

    warnings.filterwarnings("ignore", message="Initializing zero-element tensors")
    rng = random.Random(f"nvc-fuzz:{seed_value}:{index}")
    family = _families(rng)
    seed = rng.choice(seeds)
    other = rng.choice(seeds)
    as_mkv = rng.random() < 0.2
    sink = rng.random() < 0.1
    inspect = rng.random() < 0.35
    data, recipe, name = b"", "", seed.name
    if family in ("bitflip", "byteset", "truncate", "splice"):
        ops = {"bitflip": ("bitflip",), "byteset": ("byteset",), "truncate": ("truncate",),
               "splice": ("insert", "delete", "append", "dup")}[family]
        data, recipe = _mutate_bytes(rng, seed.data, ops)
        as_mkv = seed.container == "mkv"
        return Case(index, family, name, recipe, data, ".mkv" if as_mkv else ".nvc", False, sink)
    if family == "boxlen":
        data, recipe = mut_boxlen(rng, seed)
        return Case(index, family, name, recipe, data, ".nvc", inspect, sink)
    if family == "random":
        data, recipe = mut_random(rng, seeds)
        return Case(index, family, "-", recipe, data, ".nvc", False, sink)
    if family == "mkv_tags":
        data, recipe = mut_mkv_tags(rng, seed, tmpdir)
        return Case(index, family, name, recipe, data, ".mkv", False, sink)
    if family == "mkv_tagbytes":
        mkvs = [s for s in seeds if s.container == "mkv"] or seeds
        seed = rng.choice(mkvs)
        data, recipe = mut_mkv_tagbytes(rng, seed)
        return Case(index, family, seed.name, recipe, data, ".mkv", False, sink)
    # structured families work on Parts and may go out as MKV
    if family == "synth":
        parts = synth_parts(rng)
        name = "synth"
        recipe = "synthesized valid stream"
        r = rng.random()
        if r < 0.25:
            recipe += "; " + mut_crc_bytes(rng, parts)
        elif r < 0.5:
            recipe += "; " + mut_crc_field(rng, parts)
    else:
        parts = seed.parts.copy()
        mutate = {"crc_bytes": mut_crc_bytes, "crc_field": mut_crc_field, "json": mut_json,
                  "header": mut_header}.get(family)
        recipe = mutate(rng, parts) if mutate else mut_sections(rng, parts, other.parts)
    if as_mkv:
        boxes = parts.box_list()
        if boxes and boxes[0][0] == BOX_SEQUENCE:
            header, rest = parts.prefix + pack_box(*boxes[0]), boxes[1:]
        else:
            header, rest = parts.prefix, boxes
        data = _mkv_bytes(header, [pack_box(k, p) for k, p in rest], _info_for(parts), tmpdir)
        recipe += " (as MKV)"
    else:
        data = parts.nvc()
    return Case(index, family, name, recipe, data, ".mkv" if as_mkv else ".nvc", inspect, sink)
