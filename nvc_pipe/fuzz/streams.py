"""Seed streams (real tiny encodes, bare and in MKV), the field walker that locates every parsed field of a
SEQH/AU payload, and synthesized valid HiNeRV streams from random small configs."""


from __future__ import annotations

import json
import math
import os
import random
import struct
import tempfile
from dataclasses import dataclass

from ..bitstream.spec import BOX_ACCESS_UNIT, BOX_SEQUENCE, MAGIC, VERSION, pack_box
from .common import INTERESTING_U, _overlong_varint, _split_boxes, _str8, _varint, _zigzag

# ---------------------------------------------------------------------------------------------------------------
# seed streams
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Parts:
    """A stream as pieces: prefix (magic + version), SEQH payload, AU payloads; `pack` makes the bytes."""

    prefix: bytes
    seqh: bytes
    aus: list[bytes]
    boxes: list[tuple[bytes, bytes]] | None = None  # explicit box order (overrides seqh/aus) when set

    def box_list(self) -> list[tuple[bytes, bytes]]:
        if self.boxes is not None:
            return list(self.boxes)
        return [(BOX_SEQUENCE, self.seqh)] + [(BOX_ACCESS_UNIT, a) for a in self.aus]

    def nvc(self) -> bytes:
        return self.prefix + b"".join(pack_box(k, p) for k, p in self.box_list())

    def copy(self) -> "Parts":
        return Parts(self.prefix, self.seqh, list(self.aus), None if self.boxes is None else list(self.boxes))


@dataclass
class Seed:
    name: str
    container: str  # "nvc" or "mkv"
    data: bytes  # the file
    parts: Parts


def _write_y4m(path: str, w: int, h: int, n: int, ten_bit: bool) -> None:
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w]
    cw, ch = (w + 1) // 2, (h + 1) // 2
    chroma = "420p10" if ten_bit else "420jpeg"
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C{chroma}\n".encode())
        for t in range(n):
            y = 40 + (xx * 5 + yy * 3 + t * 9) % 160
            u = np.full((ch, cw), 100 + 10 * t)
            v = np.full((ch, cw), 150 - 5 * t)
            f.write(b"FRAME\n")
            for plane in (y, u, v):
                if ten_bit:
                    f.write((plane * 4).astype("<u2").tobytes())
                else:
                    f.write(plane.astype(np.uint8).tobytes())


def _parts_of_nvc(data: bytes) -> Parts:
    boxes = _split_boxes(data[6:])
    if data[:4] != MAGIC or not boxes or boxes[0][0] != BOX_SEQUENCE:
        raise ValueError("not a well-formed NVC stream")
    return Parts(data[:6], boxes[0][1], [p for k, p in boxes[1:]])


def _parts_of_mkv(path: str) -> Parts:
    from ..media.mux import read_mkv

    header, _tags, packets = read_mkv(path)
    parts = _parts_of_nvc(header)
    boxes = [_split_boxes(p.payload) for p in packets]
    parts.aus = [b[0][1] for b in boxes if b]
    return parts


def _info_for(parts: Parts):
    """A VideoInfo for muxing: the seed's frame rate and time base when readable, else 25 fps (the header is
    not parsed with the decoder's parser here: a mutated header must not hurt the generator)."""
    from fractions import Fraction

    from ..media.clip import VideoInfo
    f = {x.name: x.value for x in seqh_fields(parts.seqh)}
    fps, tb = Fraction(25), Fraction(1, 25)
    if f.get("fps num") and f.get("fps den") and f.get("tb num") and f.get("tb den"):
        fps, tb = Fraction(f["fps num"], f["fps den"]), Fraction(f["tb num"], f["tb den"])
        if not (Fraction(1, 1000) <= fps <= 1000 and Fraction(1, 100000) <= tb <= 1):
            fps, tb = Fraction(25), Fraction(1, 25)
    return VideoInfo(32, 32, "yuv420p", fps, tb, "tv", "bt709")


def _mkv_bytes(header: bytes, packets: list[bytes], info, tmpdir: str) -> bytes:
    from ..media.mux import Packet, write_mkv

    path = os.path.join(tmpdir, "gen.mkv")
    pk = [Packet(p, 2 * i, 2) for i, p in enumerate(packets) if p] or [Packet(b"\x00", 0, 1)]
    write_mkv(path, header, pk, info, {"NVC_CODEC": "hinerv", "NVC_VERSION": "fuzz", "title": "fuzz"})
    with open(path, "rb") as f:
        data = f.read()
    os.unlink(path)
    return data


def make_seeds(directory: str) -> list[str]:
    """Encode the seed clips into `directory` (tiny preset, CPU, seed 0); return the file paths."""
    from ..api import encode_file

    os.makedirs(directory, exist_ok=True)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        # name: (width, height, frames, 10-bit, segment frames, codec, preset, intra codec); every plugin is covered
        clips = {"a32": (32, 32, 3, False, None, "hinerv", "tiny", None),
                 "b24": (24, 16, 3, True, 2, "hinerv", "tiny", None),
                 "r32": (32, 32, 3, False, None, "hinerv", "rd-tiny", None),  # HiNeRV v2: rd weight records
                 "c32": (32, 32, 4, False, None, "c3", "c3-tiny", None),
                 "d16": (16, 16, 2, False, None, "c3", "c3-tiny-cool", None),  # C3 v4: shared ARM, coarse context
                 "i16": (16, 16, 2, False, None, "balle", None, None),
                 "e32": (32, 32, 3, False, None, "hinerv", "tiny", "evc")}
        for name, (w, h, n, ten, seg, codec, preset, intra) in clips.items():
            src = os.path.join(tmp, f"{name}.y4m")
            _write_y4m(src, w, h, n, ten)
            dst = os.path.join(directory, f"seed-{name}.nvc")
            encode_file(src, dst, codec=codec, preset=preset, progress=False, device="cpu", segment_frames=seg,
                        overrides={"seed": 0} if preset else None, intra=intra,
                        intra_quality=1 if intra or codec == "balle" else None)
            out.append(dst)
            with open(dst, "rb") as f:
                parts = _parts_of_nvc(f.read())
            mkv = os.path.join(directory, f"seed-{name}.mkv")
            with open(mkv, "wb") as f:
                f.write(_mkv_bytes(parts.prefix + pack_box(BOX_SEQUENCE, parts.seqh),
                                   [pack_box(BOX_ACCESS_UNIT, a) for a in parts.aus], _info_for(parts), tmp))
            out.append(mkv)
    return out


def seed_paths(corpus: str | None) -> tuple[list[str], str | None]:
    """Seed files of the corpus (made there when it has none); without a corpus, in a new temp dir."""
    tmp = None
    if corpus is None:
        tmp = tempfile.mkdtemp(prefix="nvc-fuzz-seeds-")
        corpus = tmp
    os.makedirs(corpus, exist_ok=True)
    found = sorted(os.path.join(corpus, n) for n in os.listdir(corpus) if n.endswith((".nvc", ".mkv")))
    if not found:
        found = make_seeds(corpus)
    return found, tmp


def load_seeds(paths: list[str]) -> list[Seed]:
    seeds = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        container = "nvc" if data[:4] == MAGIC else "mkv"
        parts = _parts_of_nvc(data) if container == "nvc" else _parts_of_mkv(p)
        seeds.append(Seed(os.path.basename(p), container, data, parts))
    return seeds


# ---------------------------------------------------------------------------------------------------------------
# field walker: where every parsed field of a SEQH / AU payload lies (for crc_field and json)
# ---------------------------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


@dataclass
class Field:
    off: int
    size: int
    kind: str  # u8 u16 u32 i8 i64 varint svarint
    name: str
    value: int


class _Walker:
    def __init__(self, data: bytes) -> None:
        self.d, self.p, self.fields = data, 0, []

    def fixed(self, kind: str, name: str) -> int:
        size = {"u8": 1, "i8": 1, "u16": 2, "u32": 4, "i64": 8}[kind]
        if self.p + size > len(self.d):
            raise _Stop
        v = int.from_bytes(self.d[self.p:self.p + size], "little", signed=kind in ("i8", "i64"))
        self.fields.append(Field(self.p, size, kind, name, v))
        self.p += size
        return v

    def varint(self, name: str, signed: bool = False) -> int:
        v = shift = 0
        start = self.p
        for _ in range(10):
            if self.p >= len(self.d):
                raise _Stop
            b = self.d[self.p]
            self.p += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            raise _Stop
        if signed:
            v = (v >> 1) if not v & 1 else -((v + 1) >> 1)
        self.fields.append(Field(start, self.p - start, "svarint" if signed else "varint", name, v))
        return v

    def skip(self, n: int) -> None:
        if n < 0 or self.p + n > len(self.d):
            raise _Stop
        self.p += n

    def string(self, name: str) -> None:
        self.skip(self.fixed("u8", f"{name} length"))

    def block(self, name: str, geometric: bool = False) -> None:
        """A categorical block (histogram), or with `geometric` a geometric block (one u16 decay)."""
        n = self.varint(f"{name} symbol count")
        if not n:
            return
        self.varint(f"{name} min", signed=True)
        bins = self.varint(f"{name} bins")
        if bins <= 1:
            return
        if geometric:
            self.fixed("u16", f"{name} decay")
        else:
            if bins > len(self.d):
                raise _Stop
            for _ in range(bins):
                self.varint(f"{name} frequency")
        self.skip(4 * self.varint(f"{name} word count"))


def seqh_fields(payload: bytes) -> list[Field]:
    w = _Walker(payload)
    try:
        w.fixed("u32", "width")
        w.fixed("u32", "height")
        for s in ("pix_fmt", "color_range", "colorspace"):
            w.string(s)
        for s in ("fps num", "fps den", "tb num", "tb den"):
            w.fixed("u32", s)
        frames = w.fixed("u32", "frame_count")
        w.fixed("u32", "segment_count")
        mode = w.fixed("u8", "pts mode")
        w.fixed("i64", "first pts")
        if mode == 0:
            w.fixed("i64", "pts step")
        else:
            for _ in range(min(frames - 1, len(payload))):
                w.varint("pts delta", signed=True)
        w.string("codec")
        w.fixed("u16", "payload_version")
        w.varint("codec_config length")
    except _Stop:
        pass
    return w.fields


def au_fields(payload: bytes) -> list[Field]:
    w = _Walker(payload)
    try:
        w.fixed("u32", "segment_index")
        w.fixed("u32", "first_frame")
        w.fixed("u32", "frame_count")
        w.fixed("u32", "model signature")
        count = w.varint("tensor count")
        for t in range(min(count, 10_000)):
            ndim = w.fixed("u8", f"t{t} ndim")
            dims = [w.varint(f"t{t} dim") for _ in range(ndim)]
            numel = math.prod(dims)
            kind = w.fixed("u8", f"t{t} kind")
            if kind == 0:
                w.skip(2 * numel)
                continue
            w.fixed("u8", f"t{t} bits")
            axis = w.fixed("i8", f"t{t} axis")
            n_scales = 1 if axis < 0 or axis >= ndim or not dims[axis] else numel // dims[axis]
            w.skip(2 * n_scales)
            masked = w.fixed("u8", f"t{t} masked")
            if masked:
                w.block(f"t{t} mask")
            w.block(f"t{t} values", geometric=kind == 2)
    except _Stop:
        pass
    return w.fields


def _json_span(seqh: bytes) -> tuple[int, int] | None:
    """(offset of the codec_config length varint, offset of the JSON) in a SEQH payload."""
    f = [x for x in seqh_fields(seqh) if x.name == "codec_config length"]
    return (f[0].off, f[0].off + f[0].size) if f else None


def _field_value(rng: random.Random, f: Field) -> bytes:
    """New bytes for field `f`: an interesting value of its type."""
    cands = INTERESTING_U + [max(f.value - 1, 0), f.value + 1, 2 * f.value, f.value // 2, 256 * f.value,
                             rng.getrandbits(rng.choice((8, 16, 32, 64)))]
    v = rng.choice(cands)
    if f.kind in ("varint", "svarint"):
        if f.kind == "svarint" and rng.random() < 0.5:
            v = _zigzag(rng.choice([-1, -2, -v, -(1 << 31), -(1 << 40), f.value - 1, f.value + 1]))
        if rng.random() < 0.1:
            return _overlong_varint(v & 0x7F, rng.choice([2, 5, 10, 11, 12]))
        return _varint(v)
    size = f.size
    if f.kind in ("i8", "i64"):
        v = rng.choice([v, -v, -1, -(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1])
    return (v % (1 << (8 * size))).to_bytes(size, "little")


# ---------------------------------------------------------------------------------------------------------------
# synthesized streams: random small HiNeRV configs with a payload that matches the network exactly
# ---------------------------------------------------------------------------------------------------------------
def _random_config(rng: random.Random) -> dict:
    n = rng.randint(1, 3)
    channels = rng.choice([1, 2, 4, 8, 12, 16, 24])
    while channels >> (n - 1) < 1:
        channels *= 2
    return {"channels": channels, "scales": [rng.choice([1, 2, 2, 3]) for _ in range(n)],
            "depths": [rng.randint(1, 2) for _ in range(n)],
            "exps": [rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 4.0]) for _ in range(n)],
            "kernel_size": rng.choice([1, 3, 5]), "stem_kernel_size": rng.choice([1, 3, 5]),
            "base_grid_frames": rng.randint(1, 4), "base_grid_channels": rng.randint(1, 3),
            "base_grid_levels": rng.randint(1, 3), "local_grid_channels": rng.randint(1, 4),
            "local_grid_levels": rng.randint(1, 3)}


def synth_payload(rng: random.Random, cfg_dict: dict, frames: int, height: int, width: int) -> bytes:
    """Tensor records (docs/bitstream.md §5.2) for the HiNeRV network the header describes, random values."""
    import numpy as np
    import torch
    from nvc_hinerv.codec import coded_frame_size, segment_model
    from nvc_hinerv.configs import HiNeRVConfig

    from .. import entropy
    from ..bitstream.fields import ByteWriter
    from ..bitstream.tensors import model_signature

    cfg = HiNeRVConfig.from_dict(cfg_dict)
    hc, wc = coded_frame_size(height, width, cfg)
    with torch.device("meta"):
        shapes = [(n, tuple(p.shape)) for n, p in segment_model(cfg, frames, hc, wc).named_parameters()]
    nrng = np.random.default_rng(rng.getrandbits(32))
    w = ByteWriter()
    w.u32(model_signature(shapes))
    w.varint(len(shapes))
    for _name, shape in shapes:
        numel = math.prod(shape)
        w.u8(len(shape))
        for d in shape:
            w.varint(d)
        if len(shape) == 1 and rng.random() < 0.7:
            w.u8(0)
            w.f16_array(nrng.normal(0, 0.1, numel).astype(np.float16))
            continue
        bits = rng.choice([2, 4, 6, 6, 8, 16])
        axis = rng.choice([-1] + [i for i, d in enumerate(shape) if d])
        n_scales = 1 if axis < 0 else numel // shape[axis]
        geometric = rng.random() < 0.5
        w.u8(2 if geometric else 1)
        w.u8(bits)
        w.i8(axis)
        w.f16_array(nrng.uniform(1e-3, 0.2, n_scales).astype(np.float16))
        masked = rng.random() < 0.3
        w.u8(int(masked))
        keep = nrng.random(numel) < rng.choice([0.0, 0.5, 0.9, 1.0]) if masked else np.ones(numel, bool)
        if masked:
            entropy.encode_iid(keep.astype(np.int64), w)
        hi = 2 ** (bits - 1) - 1
        spread = rng.choice([0, 1, 3, min(hi, 60)])
        vals = np.clip(np.rint(nrng.normal(0, max(spread, 1e-9), int(keep.sum()))), -hi - 1, hi).astype(np.int64)
        (entropy.encode_geometric if geometric else entropy.encode_iid)(vals, w)
    return w.getvalue()


def _param_count(cfg_dict: dict, frames: int, height: int, width: int) -> int:
    import torch
    from nvc_hinerv.codec import coded_frame_size, segment_model
    from nvc_hinerv.configs import HiNeRVConfig

    cfg = HiNeRVConfig.from_dict(cfg_dict)
    hc, wc = coded_frame_size(height, width, cfg)
    with torch.device("meta"):
        return sum(p.numel() for p in segment_model(cfg, frames, hc, wc).parameters())


def synth_parts(rng: random.Random) -> Parts:
    """A valid stream: random config, size, pixel format, segmenting and pts (networks of at most ~8k weights)."""
    from ..media.clip import COLORSPACES, SUPPORTED_PIX_FMTS
    for _ in range(20):
        cfg = _random_config(rng)
        width, height = rng.randint(1, 24), rng.randint(1, 24)
        try:
            if _param_count(cfg, 4, height, width) <= 8000:
                break
        except ValueError:  # a config this plugin version refuses (e.g. a layer of zero width): draw again
            continue
    else:
        cfg = {"channels": 8, "scales": [2], "depths": [1], "exps": [1.0], "kernel_size": 3, "stem_kernel_size": 3,
               "base_grid_frames": 1, "base_grid_channels": 1, "base_grid_levels": 1, "local_grid_channels": 1,
               "local_grid_levels": 1}
    seg_frames = [rng.randint(1, 4) for _ in range(rng.randint(1, 3))]
    frames = sum(seg_frames)
    if rng.random() < 0.5:
        pts = struct.pack("<Bqq", 0, rng.choice([0, 0, 7, -3, 1 << 40]), rng.choice([1, 2, 1001, 0, -1]))
    else:
        pts = struct.pack("<Bq", 1, rng.randint(-5, 5)) + b"".join(
            _varint(_zigzag(rng.randint(-3, 9))) for _ in range(frames - 1))
    cfg_json = json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()
    seqh = (struct.pack("<II", width, height) + _str8(rng.choice(SUPPORTED_PIX_FMTS)) + _str8(rng.choice(["tv", "pc"]))
            + _str8(rng.choice(COLORSPACES)) + struct.pack("<IIII", 25, 1, 1, 25)
            + struct.pack("<II", frames, len(seg_frames)) + pts + _str8("hinerv") + struct.pack("<H", 1)
            + _varint(len(cfg_json)) + cfg_json)
    aus, first = [], 0
    for i, t in enumerate(seg_frames):
        aus.append(struct.pack("<III", i, first, t) + synth_payload(rng, cfg, t, height, width))
        first += t
    return Parts(MAGIC + bytes(VERSION), seqh, aus)
