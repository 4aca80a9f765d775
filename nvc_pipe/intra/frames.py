"""Intra frames inside video access units: which frames of a segment a learned image codec codes, the section of
the access-unit payload that carries them, and merging them back with the video codec's frames on decode.

Stream side (docs/bitstream.md §10): the sequence header's optional ``intra`` object names the image codec, its
quality and the intra period; every access unit's payload then starts with an intra section

    intra_section = count:varint { offset_delta:varint payload:blob }*count

(offsets are frame indices inside the segment, strictly increasing), followed by the video plugin's own payload
for the remaining frames, in order. The video codec never sees the intra frames. A stream whose header codec is
``"intra"`` has no video plugin at all: every frame is an intra frame (``nvc encode --codec balle``).

Image codecs code 8-bit RGB; for 10-bit sources the intra frames are coded at 8 bits and scaled back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from ..bitstream.fields import ByteReader, ByteWriter
from ..errors import BitstreamError, ConfigError
from ..plugins import ImageCodec, available_image_codecs, load_image_codec

ALL_INTRA = "intra"  # header codec id of a stream with no video plugin


@dataclass(frozen=True)
class IntraSpec:
    """Which image codec codes which frames: offsets 0, period, 2·period, … of each segment (period 0: only 0)."""

    codec: str
    quality: int
    period: int = 0

    def to_dict(self) -> dict:
        return {"codec": self.codec, "quality": self.quality, "period": self.period}

    @classmethod
    def from_dict(cls, d: dict) -> "IntraSpec":
        ok = (set(d) == {"codec", "quality", "period"} and isinstance(d["codec"], str)
              and all(isinstance(d[k], int) and not isinstance(d[k], bool) for k in ("quality", "period"))
              and 0 <= d["period"] < 1 << 24)
        if not ok:
            raise BitstreamError("corrupt sequence header: bad intra settings")
        return cls(d["codec"], d["quality"], d["period"])

    def offsets(self, frames: int) -> list[int]:
        return list(range(0, frames, self.period)) if self.period else [0]


def image_codec_for(spec: IntraSpec, *, from_stream: bool) -> ImageCodec:
    """The plugin of `spec.codec`, checking the quality; stream problems are BitstreamErrors, user ones ConfigErrors."""
    error = BitstreamError if from_stream else ConfigError
    if spec.codec not in available_image_codecs():
        raise error(f"intra codec {spec.codec!r} is not installed (installed: "
                    f"{', '.join(available_image_codecs()) or 'none'})")
    codec = load_image_codec(spec.codec)
    if spec.quality not in codec.qualities:
        raise error(f"intra quality {spec.quality} is not one of {list(codec.qualities)} for {spec.codec}")
    return codec


def to_8bit(frame: np.ndarray, max_value: int) -> np.ndarray:
    if max_value == 255:
        return np.ascontiguousarray(frame, dtype=np.uint8)
    return np.round(frame.astype(np.float64) * (255 / max_value)).astype(np.uint8)


def from_8bit(image: np.ndarray, max_value: int) -> np.ndarray:
    if max_value == 255:
        return image
    return np.round(image.astype(np.float64) * (max_value / 255)).astype(np.uint16)


def encode_section(frames: np.ndarray, spec: IntraSpec, codec: ImageCodec, max_value: int,
                   device: torch.device) -> tuple[bytes, dict[int, np.ndarray]]:
    """Code the intra frames of one segment; returns the section and what the decoder will reconstruct."""
    w = ByteWriter()
    offsets = spec.offsets(len(frames))
    w.varint(len(offsets), "intra count")
    decoded, previous = {}, -1
    for k in offsets:
        payload = codec.encode(to_8bit(frames[k], max_value), spec.quality)
        w.varint(k - previous - 1, "intra offset")
        w.blob(payload, "intra payload")
        decoded[k] = from_8bit(codec.decode(payload, device), max_value)
        previous = k
    return w.getvalue(), decoded


def split_section(payload: bytes, frame_count: int) -> tuple[list[tuple[int, bytes]], bytes]:
    """(offset, image payload) pairs of an access unit's intra section, and the video payload after it."""
    r = ByteReader(payload, "intra section")
    count = r.varint("intra count", limit=frame_count)
    if count == 0:
        raise BitstreamError("corrupt intra section: no intra frame")
    items, k = [], -1
    for _ in range(count):
        k += 1 + r.varint("intra offset", limit=frame_count)
        if k >= frame_count:
            raise BitstreamError(f"corrupt intra section: frame {k} of a {frame_count}-frame segment")
        items.append((k, r.blob("intra payload")))
    return items, r.take(r.remaining)


def merge(frame_count: int, items: list[tuple[int, bytes]], codec: ImageCodec, video: Iterator[np.ndarray],
          width: int, height: int, max_value: int, device: torch.device) -> Iterator[np.ndarray]:
    """All frames of a segment in order: decoded intra frames where the section has them, video frames elsewhere."""
    intra = dict(items)
    for k in range(frame_count):
        if k in intra:
            frame = from_8bit(codec.decode(intra[k], device), max_value)
            if frame.shape != (height, width, 3):
                raise BitstreamError(f"corrupt intra frame {k}: {frame.shape[1]}x{frame.shape[0]}, "
                                     f"stream is {width}x{height}")
            yield frame
        else:
            frame = next(video, None)
            if frame is None:
                raise BitstreamError("corrupt access unit: the video payload has fewer frames than declared")
            yield frame
