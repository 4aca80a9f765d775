"""HiNeRV video codec plugin for nvc-pipe (Kwan et al., NeurIPS 2023, arXiv 2306.09818).

Entry point: ``nvc_pipe.codecs: hinerv = "nvc_hinerv:codec"``.
"""

from .codec import PRESETS, HiNeRVCodec, codec

__all__ = ["PRESETS", "HiNeRVCodec", "codec"]
