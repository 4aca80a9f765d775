"""Codec plugin discovery through entry points, and the contracts video and image codec plugins fulfil.

Video plugins register under the entry-point group ``nvc_pipe.codecs`` (``hinerv = "nvc_hinerv:codec"`` in our
pyproject.toml; a third-party package does the same); image (intra) codecs under ``nvc_pipe.image_codecs``
(``balle = "nvc_balle:codec"``). Nothing is imported until a codec is asked for by name.

Without the nvc-pipe distribution's metadata (the tree used from PYTHONPATH, as on the GPU machine: no
``pip install``, so no entry points), the in-tree plugins of `IN_TREE` stand in for our own entry points, each if
its package is importable; entry points of other installed distributions still count.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, PackageNotFoundError, distribution, entry_points
from importlib.util import find_spec
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

from .errors import ConfigError

GROUP = "nvc_pipe.codecs"
IMAGE_GROUP = "nvc_pipe.image_codecs"
DISTRIBUTION = "nvc-pipe"
# pyproject.toml's entry points, for a tree without installed metadata (tests/test_plugins.py keeps them equal).
IN_TREE = {
    GROUP: {"hinerv": "nvc_hinerv:codec", "c3": "nvc_c3:codec"},
    IMAGE_GROUP: {"balle": "nvc_balle:codec", "evc": "nvc_evc:codec", "c3": "nvc_c3.image:codec"},
}


@runtime_checkable
class VideoCodec(Protocol):
    """What `nvc encode/decode` needs from a video codec plugin."""

    name: str  # stable id written in the stream
    payload_version: int  # version of the plugin's access-unit payload layout
    presets: Mapping[str, Any]  # preset name -> the plugin's own preset object (core only lists the names)
    default_preset: str

    def configure(self, preset: str | None, target: Any, overrides: dict, clip: Any) -> Any:
        """The encoder config for `clip` (`nvc_pipe.rate.Clip`): a preset (None = default) sized to `target`
        (`nvc_pipe.rate.Target` or None) with `overrides` (steps, time_limit, epochs, seed, ...). Raises
        ConfigError, before any training, for an unknown preset/option or a target it cannot reach."""

    def plan(self, config: Any, clip: Any) -> dict:
        """What an encode will do: `parameters` (network size), `steps` (all stages, all segments),
        `estimated_s` (on this device), `stream_bpp` (the rate aimed at, None without a target), `summary`."""

    def settings(self, config: Any) -> dict:
        """JSON-able: everything the encode depends on (resume key, reports)."""

    def preset_summary(self, name: str) -> str:
        """One line about a preset for `nvc presets`."""

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


def metadata_installed() -> bool:
    """True when the nvc-pipe distribution (and so its entry points) is installed."""
    try:
        distribution(DISTRIBUTION)
    except PackageNotFoundError:
        return False
    return True


def _registered(group: str) -> dict[str, EntryPoint]:
    """Name -> entry point of a group: the installed ones, plus the in-tree plugins when nvc-pipe is not installed."""
    eps = {}
    for ep in entry_points(group=group):
        eps.setdefault(ep.name, ep)
    if not metadata_installed():
        for name, value in IN_TREE[group].items():
            if name not in eps and find_spec(value.split(":")[0]) is not None:
                eps[name] = EntryPoint(name, value, group)
    return eps


def _load(group: str, kind: str, name: str, contract: type) -> Any:
    """The object registered as `name` in an entry-point group, checked against its protocol."""
    eps = _registered(group)
    if name not in eps:
        raise ConfigError(f"unknown {kind} {name!r} (installed: {', '.join(sorted(eps)) or 'none'})")
    plugin = eps[name].load()
    if not isinstance(plugin, contract):
        raise ConfigError(f"{kind} plugin {name!r} does not implement the {contract.__name__} contract")
    return plugin


def available_codecs() -> list[str]:
    return sorted(_registered(GROUP))


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
    return sorted(_registered(IMAGE_GROUP))


def load_image_codec(name: str) -> ImageCodec:
    """The image codec registered as `name`; ConfigError listing the installed ones otherwise."""
    return _load(IMAGE_GROUP, "image codec", name, ImageCodec)
