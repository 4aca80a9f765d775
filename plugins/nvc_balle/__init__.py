"""Ballé 2017 image codec plugin for nvc-pipe (Ballé, Laparra, Simoncelli, "End-to-end Optimized Image
Compression", ICLR 2017): GDN transforms, a per-channel non-parametric factorized prior, real range coding.

Entry point: ``nvc_pipe.image_codecs: balle = "nvc_balle:codec"``. Modules: `model` (network, loss), `train`
(recipe of the shipped weights), `codec` (the plugin object). Weights: `weights/q1..q4.npz` (fp16, no pickle).
"""

from .codec import BalleCodec, codec
from .model import BalleConfig, BalleModel

__all__ = ["BalleCodec", "BalleConfig", "BalleModel", "codec"]
