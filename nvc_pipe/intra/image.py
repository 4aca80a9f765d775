"""The `.nvc` image file (one still image coded by an image codec plugin) and the file-level image API.

    image_file = MAGIC_IMAGE ("\\x8bNVI")  major:u8  minor:u8  box("IMG1")
    IMG1       = codec:string  quality:u8  width:varint  height:varint  payload (the rest of the box)

`payload` is the codec plugin's (self-contained; see the plugin's section of docs/bitstream.md). The box is the
video stream's (`nvc_pipe.bitstream.spec.pack_box`: type, u32 length, body, CRC32), so every byte is CRC-checked
before it is parsed; the container costs 20 + len(codec) + 2..6 bytes. The magic differs from the video
stream's ("\\x8bNVC") so neither decoder mistakes one for the other. docs/bitstream.md §9 is the normative text.

File-level API (used by `nvc image ...`): `read_rgb(path)`, `write_png(path, rgb)`, `encode_image_file`,
`decode_image_file`, `inspect_image_file`. Outputs are written atomically (nothing is left behind on failure).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ..bitstream.fields import ByteReader, ByteWriter
from ..bitstream.spec import pack_box, unpack_box
from ..errors import BitstreamError, ConfigError, InputError, OutputError, one_line

MAGIC_IMAGE = b"\x8bNVI"
IMAGE_VERSION = (1, 0)
BOX_IMAGE = b"IMG1"
MAX_SIDE = 1 << 16
MAX_PIXELS = 1 << 27  # 128 Mpixel: bounds what a decoder allocates for a header it has not verified otherwise


@dataclass(frozen=True)
class ImageHeader:
    codec: str
    quality: int
    width: int
    height: int

    def to_bytes(self) -> bytes:
        w = ByteWriter()
        w.string(self.codec, "codec")
        w.u8(self.quality, "quality")
        w.varint(self.width, "width")
        w.varint(self.height, "height")
        return w.getvalue()

    @classmethod
    def read(cls, r: ByteReader) -> "ImageHeader":
        codec, quality = r.string("codec"), r.u8("quality")
        width, height = r.varint("width", limit=MAX_SIDE), r.varint("height", limit=MAX_SIDE)
        check_size(width, height)
        return cls(codec, quality, width, height)


def check_size(width: int, height: int) -> None:
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE and width * height <= MAX_PIXELS):
        raise BitstreamError(f"corrupt image: size {width}x{height} out of range")


def pack_image(header: ImageHeader, payload: bytes) -> bytes:
    return MAGIC_IMAGE + bytes(IMAGE_VERSION) + pack_box(BOX_IMAGE, header.to_bytes() + payload)


def parse_image(data: bytes) -> tuple[ImageHeader, bytes]:
    """(header, codec payload) of an image file's bytes; BitstreamError for foreign, corrupt or truncated data."""
    if len(data) < 6 or data[:4] != MAGIC_IMAGE:
        raise BitstreamError("not an NVC image (bad magic)")
    major, minor = data[4], data[5]
    if major != IMAGE_VERSION[0]:
        raise BitstreamError(f"unsupported NVC image version {major}.{minor} (this decoder reads {IMAGE_VERSION[0]}.x)")
    body, rest = unpack_box(data[6:], BOX_IMAGE)
    if rest:
        raise BitstreamError(f"corrupt image: {len(rest)} trailing bytes after the image box")
    r = ByteReader(body, "image header")
    header = ImageHeader.read(r)
    return header, r.take(r.remaining, "payload")


def read_rgb(path: str) -> np.ndarray:
    """The first picture of any file FFmpeg reads (PNG, JPEG, BMP, TIFF, ...) as (H, W, 3) uint8 RGB."""
    import av

    if not os.path.isfile(path):
        raise InputError(f"cannot read {path}: no such file")
    try:
        with av.open(path) as c:
            if not c.streams.video:
                raise InputError(f"cannot read {path}: not an image")
            frame = next(c.decode(video=0), None)
            if frame is None:
                raise InputError(f"cannot read {path}: no picture in it")
            return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    except av.FFmpegError as exc:
        raise InputError(f"cannot read {path}: {one_line(exc)}") from None


def write_png(path: str, rgb: np.ndarray) -> None:
    """Write (H, W, 3) uint8 RGB as PNG, atomically."""
    import av

    from ..media.atomic import atomic_output

    h, w = rgb.shape[:2]
    with atomic_output(path) as tmp:
        try:
            with av.open(tmp, "w", format="image2") as c:
                s = c.add_stream("png")
                s.width, s.height, s.pix_fmt = w, h, "rgb24"
                for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                    c.mux(p)
                for p in s.encode(None):
                    c.mux(p)
        except av.FFmpegError as exc:
            raise OutputError(f"cannot write {path}: {one_line(exc)}") from None


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {one_line(exc)}") from None


def _write_bytes(path: str, data: bytes) -> None:
    from ..media.atomic import atomic_output

    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def encode_rgb(rgb: np.ndarray, codec: str, quality: int | None = None, **options) -> bytes:
    """The bytes of an image file coding `rgb` (H, W, 3) uint8 with image codec `codec`; `options` (None values
    ignored) go to the plugin's `encode` as keywords (C3: rd_lambda, steps) — ConfigError if it takes none of them."""
    import inspect

    from ..plugins import load_image_codec

    plugin = load_image_codec(codec)
    options = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(plugin.encode).parameters
    unknown = [k for k in options if k not in accepted]
    if unknown:
        flags = ", ".join("--" + k.replace("rd_", "") for k in unknown)
        raise ConfigError(f"image codec {codec!r} does not take {flags}")
    quality = plugin.default_quality if quality is None else quality
    if quality not in plugin.qualities:
        raise ConfigError(f"quality {quality} not available for {codec} (choose from "
                          f"{', '.join(map(str, plugin.qualities))})")
    h, w = rgb.shape[:2]
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError("an image must be (H, W, 3) uint8 RGB")
    check_size_input(w, h)
    return pack_image(ImageHeader(plugin.name, quality, w, h), plugin.encode(rgb, quality, **options))


def check_size_input(width: int, height: int) -> None:
    try:
        check_size(width, height)
    except BitstreamError:
        raise InputError(f"image size {width}x{height} is not supported") from None


def decode_bytes(data: bytes, device: str = "auto") -> tuple[ImageHeader, np.ndarray]:
    """(header, (H, W, 3) uint8 RGB) of an image file's bytes."""
    from ..plugins import available_image_codecs, load_image_codec
    from .train import resolve_device

    header, payload = parse_image(data)
    if header.codec not in available_image_codecs():
        raise BitstreamError(f"image coded with {header.codec!r}, which is not installed")
    plugin = load_image_codec(header.codec)
    rgb = plugin.decode(payload, resolve_device(device))
    if rgb.shape != (header.height, header.width, 3):
        raise BitstreamError(f"corrupt image: payload decodes to {rgb.shape[1]}x{rgb.shape[0]}, header says "
                             f"{header.width}x{header.height}")
    return header, rgb


def encode_image_file(src: str, dst: str, codec: str, quality: int | None = None, **options) -> dict:
    start = time.time()
    rgb = read_rgb(src)
    data = encode_rgb(rgb, codec, quality, **options)
    _write_bytes(dst, data)
    header, _ = parse_image(data)
    h, w = rgb.shape[:2]
    return {"output": dst, "codec": codec, "quality": header.quality, "width": w, "height": h,
            "file_bytes": len(data), "bpp": 8 * len(data) / (w * h), "time_s": time.time() - start}


def decode_image_file(src: str, dst: str, device: str = "auto", reference: str | None = None) -> dict:
    from ..metrics import frame_psnr

    start = time.time()
    data = _read_bytes(src)
    header, rgb = decode_bytes(data, device)
    ref = read_rgb(reference) if reference else None
    if ref is not None and ref.shape != rgb.shape:
        raise InputError(f"reference {reference} is {ref.shape[1]}x{ref.shape[0]}, the image "
                         f"{rgb.shape[1]}x{rgb.shape[0]}")
    write_png(dst, rgb)
    report = {"output": dst, "codec": header.codec, "quality": header.quality, "width": header.width,
              "height": header.height, "file_bytes": len(data), "bpp": 8 * len(data) / (header.width * header.height),
              "time_s": time.time() - start}
    if ref is not None:
        report["psnr_rgb"] = frame_psnr(ref, rgb, 255)
    return report


def inspect_image_file(src: str) -> dict:
    from ..plugins import load_image_codec

    data = _read_bytes(src)
    header, payload = parse_image(data)
    facts = load_image_codec(header.codec).describe(payload)
    return {"file": src, "codec": header.codec, "quality": header.quality, "width": header.width,
            "height": header.height, "file_bytes": len(data), "payload_bytes": len(payload),
            "bpp": 8 * len(data) / (header.width * header.height), **facts}
