"""Raw-video parameters from the conventional file names of test sequences.

``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` (UVG), ``videoSRC01_1920x1080_30.yuv`` (MCL-JCV),
``foreman_352x288_30fps_yuv420p10le.yuv``, ``crowd_run_1280x720_50_422_10bit.yuv``: the size is ``WxH``, the rate
``Nfps`` (or a bare 2-3 digit number right after the size), the layout an FFmpeg pixel-format name or a chroma
token (``420``/``422``/``444``) with a bit depth (``8bit``/``10bit``/``12bit``/``16bit``; 8 when only the chroma
is named, 4:2:0 when only the depth is). Whatever a name does not say stays ``None``: the encoder still asks for
it, and the evaluation harness (``nvc_pipe.eval.datasets``) applies its own defaults.
"""

from __future__ import annotations

import os
import re
from fractions import Fraction

SIZE_RE = re.compile(r"(?<![0-9])(\d{2,5})x(\d{2,5})(?![0-9])")
FPS_RE = re.compile(r"(?<![0-9])(\d{1,3}(?:\.\d+)?)fps", re.IGNORECASE)
BITS_RE = re.compile(r"(?<![0-9])(\d{1,2})bit", re.IGNORECASE)
_RATE_AFTER_SIZE = re.compile(r"\d+x\d+_(?!420|422|444)(\d{2,3})(?:_|$)")
_CHROMA_RE = re.compile(r"(?<![0-9a-z])(420|422|444)(?![0-9])", re.IGNORECASE)
_PIX_FMT_RE = re.compile(r"(?<![a-z0-9])(yuv4[24][024]p(?:9|10|12|14|16)?(?:le|be)?|nv12|nv21|p010le|gray(?:10le|12le)?"
                         r"|rgb24|bgr24|gbrp(?:10le|12le)?|rgb48le)(?![a-z0-9])", re.IGNORECASE)
_DEPTH_SUFFIX = {8: "", 10: "10le", 12: "12le", 16: "16le"}


def raw_params_from_name(path: str) -> tuple[tuple[int, int] | None, Fraction | None, str | None]:
    """``(size, fps, pix_fmt)`` read from a raw file's name, each ``None`` when the name does not say."""
    stem = os.path.splitext(os.path.basename(str(path)))[0]
    m = SIZE_RE.search(stem)
    size = (int(m.group(1)), int(m.group(2))) if m else None
    m = FPS_RE.search(stem) or _RATE_AFTER_SIZE.search(stem)
    fps = Fraction(m.group(1)) if m and Fraction(m.group(1)) > 0 else None
    pix_fmt = None
    m = _PIX_FMT_RE.search(stem)
    if m:
        pix_fmt = m.group(1).lower()
        if pix_fmt.startswith("yuv") and pix_fmt[-2:] not in ("le", "be") and pix_fmt[-1] != "p":
            pix_fmt += "le"  # yuv420p10 -> yuv420p10le
    else:
        chroma, bits = _CHROMA_RE.search(stem), BITS_RE.search(stem)
        depth = int(bits.group(1)) if bits else 8
        if (chroma or bits) and depth in _DEPTH_SUFFIX:
            pix_fmt = f"yuv{chroma.group(1) if chroma else '420'}p{_DEPTH_SUFFIX[depth]}"
    return size, fps, pix_fmt
