"""C3 video codec plugin for nvc-pipe (Kim et al., "C3: High-performance and low-complexity neural compression
from a single image or video", CVPR 2024, arXiv 2312.02753), with a real bitstream and a bit-exact integer ARM.

Entry point: ``nvc_pipe.codecs: c3 = "nvc_c3:codec"``. Modules: `quantizer` (soft-rounding, Kumaraswamy noise,
Laplace rate), `arm` (contexts, float and integer ARM, decode order), `model` (config, patches, latents,
synthesis), `train` (two-stage training), `netquant` (weight steps, coder parameters), `payload` (bytes,
latent coding), `presets`, `codec` (the plugin object).
"""

from .codec import C3Codec, codec
from .model import C3Config
from .presets import PRESETS, Preset

__all__ = ["C3Codec", "C3Config", "PRESETS", "Preset", "codec"]
