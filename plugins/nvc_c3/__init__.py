"""C3 video codec plugin for nvc-pipe (Kim et al., "C3: High-performance and low-complexity neural compression
from a single image or video", CVPR 2024, arXiv 2312.02753), with a real bitstream and a bit-exact integer ARM.

Entry points: ``nvc_pipe.codecs: c3 = "nvc_c3:codec"`` and ``nvc_pipe.image_codecs: c3 = "nvc_c3.image:codec"``.
Modules: `quantizer` (soft-rounding, Kumaraswamy noise, Laplace rate), `arm` (contexts, float and integer ARM,
decode order), `model` (config, patches, latents, upsampling, synthesis), `train` (warm-up, noisy stage, final
stage), `soap` (the optional SOAP optimiser), `netquant` (weight steps, coder parameters), `payload` (bytes, latent
coding), `presets`, `codec` (the video plugin object), `image` (the same codec for single pictures). docs/c3.md:
against Cool-Chic 5.
"""

from .codec import C3Codec, codec
from .model import C3Config
from .presets import PRESETS, Preset

__all__ = ["C3Codec", "C3Config", "PRESETS", "Preset", "codec"]
