"""Codec plugin discovery through entry points, and the contract a video codec plugin fulfils.

Plugins register under the entry-point group ``nvc_pipe.codecs`` (``hinerv = "nvc_hinerv:codec"`` in our
pyproject.toml; a third-party package does the same). Nothing is imported until a codec is asked for by name.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

import torch

from .errors import ConfigError

GROUP = "nvc_pipe.codecs"


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


def available_codecs() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def load_codec(name: str) -> VideoCodec:
    """The plugin registered as `name`; ConfigError listing the installed ones otherwise."""
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        installed = ", ".join(available_codecs()) or "none"
        raise ConfigError(f"unknown codec {name!r} (installed: {installed})")
    codec = matches[0].load()
    if not isinstance(codec, VideoCodec):
        raise ConfigError(f"codec plugin {name!r} does not implement the VideoCodec contract")
    return codec

