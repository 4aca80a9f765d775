"""EVC image codec plugin (Wang et al., "EVC: Towards Real-Time Neural Image Compression with Mask Decay", ICLR 2023).

Entry point ``nvc_pipe.image_codecs: evc = "nvc_evc:codec"``. Modules: `layers` (blocks, masks, slimming),
`model` (config, transforms, entropy model, training forward), `fixedpoint` (the integer entropy-parameter path),
`tables` (integer Gaussian CDF tables), `coding` (two-step checkerboard range coding + CRC), `maskdecay`, `train`,
`codec` (the plugin object).
"""

from .codec import EVCCodec, codec, codec_mm, codec_ss
from .model import EVC, EVCConfig

__all__ = ["EVC", "EVCCodec", "EVCConfig", "codec", "codec_mm", "codec_ss"]
