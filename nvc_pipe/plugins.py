"""Codec plugin discovery through entry points, and the contracts video and image codec plugins fulfil.

Video plugins register under the entry-point group ``nvc_pipe.codecs`` (``hinerv = "nvc_hinerv:codec"`` in our
pyproject.toml; a third-party package does the same); image (intra) codecs under ``nvc_pipe.image_codecs``
(``balle = "nvc_balle:codec"``). Nothing is imported until a codec is asked for by name.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from .errors import ConfigError

GROUP = "nvc_pipe.codecs"
IMAGE_GROUP = "nvc_pipe.image_codecs"


@runtime_checkable
class VideoCodec(Protocol):
    """What `nvc encode/decode` needs from a video codec plugin."""

    name: str  # stable id written in the stream
    payload_version: int  # version of the plugin's access-unit payload layout
    presets: Mapping[str, Any]  # preset name -> config object with a `.train` TrainConfig
    default_preset: str

    def config_to_dict(self, preset: Any) -> dict:
        """The JSON-able part of a preset the decoder needs (goes into the sequence header)."""

    def config_from_dict(self, d: dict) -> Any:
        """Inverse of `config_to_dict`; raises BitstreamError on anything unexpected."""

    def stages(self, preset: Any) -> list:
        """The encode pipeline for one segment (a list of `nvc_pipe.pipeline.Stage`)."""

    def decode_segment(self, payload: bytes, config: Any, num_frames: int, height: int, width: int,
                       device: torch.device) -> Iterator[torch.Tensor]:
        """Yield the segment's frames, each (height, width, 3) float in [0, 1]."""

    def describe(self, payload: bytes, config: Any, num_frames: int, height: int, width: int) -> dict:
        """Per-section sizes and model facts for `nvc info` (no rendering)."""


def _load(group: str, kind: str, name: str, contract: type) -> Any:
    """The object registered as `name` in an entry-point group, checked against its protocol."""
    eps = entry_points(group=group)
    matches = [ep for ep in eps if ep.name == name]
    if not matches:
        names = sorted(ep.name for ep in eps)
        raise ConfigError(f"unknown {kind} {name!r} (installed: {', '.join(names) or 'none'})")
    plugin = matches[0].load()
    if not isinstance(plugin, contract):
        raise ConfigError(f"{kind} plugin {name!r} does not implement the {contract.__name__} contract")
    return plugin


def available_codecs() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_codec(name: str) -> VideoCodec:
    """The plugin registered as `name`; ConfigError listing the installed ones otherwise."""
    return _load(GROUP, "codec", name, VideoCodec)


@runtime_checkable
class ImageCodec(Protocol):
    """What `nvc image encode/decode` needs from a learned image codec plugin (`nvc_pipe.image_codecs`).

    The payload is self-contained (it carries its own size and whatever the decoder needs); the `.nvc` image
    container (`nvc_pipe/intra/image.py`) adds codec id, quality and size around it. Optional: a method
    ``train(out_dir, steps, lambdas, device, progress) -> dict`` used by `nvc train-intra NAME`
    (`steps`/`lambdas` None = the recipe's defaults).
    """

    name: str  # stable id written in the container ("balle", "evc")
    qualities: Sequence[int]  # valid --quality values, e.g. (1, 2, 3, 4)
    default_quality: int

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        """(H, W, 3) uint8 RGB → payload; ConfigError for a bad quality, InputError for an unusable image."""

    def decode(self, payload: bytes, device: torch.device) -> np.ndarray:
        """Payload → (H, W, 3) uint8 RGB; BitstreamError on anything corrupt."""

    def describe(self, payload: bytes) -> dict:
        """Facts for `nvc image info` (size, quality, latent shape, section bytes); BitstreamError if corrupt."""


def available_image_codecs() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=IMAGE_GROUP))


def load_image_codec(name: str) -> ImageCodec:
    """The image codec registered as `name`; ConfigError listing the installed ones otherwise."""
    return _load(IMAGE_GROUP, "image codec", name, ImageCodec)
