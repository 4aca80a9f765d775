"""Free disk before training: what an encode will write (the output, the checkpoint folder beside it) against what
the output's file system has free, so a full disk is refused up front (exit 4), not found after hours of work.

The estimate comes from the codec plugin's plan:

    stream      the aimed rate (`stream_bpp` × pixels / 8) or, for a fixed network, 1 byte per coded parameter
                (6-bit values, entropy coded: real streams carry < 0.8) — plus the headers core measured
    output      the stream + the streams copied from the source (audio, subtitles: at most the input file's size)
    checkpoints the finished segments' access units (the stream again) + the segment in training: per trainable
                value (the plan's `parameters` or, failing that, `latents`) the plan's `checkpoint_bytes_per_value`
                (C3: its step state, plugins/nvc_c3/steps.py) or `CHECKPOINT_BYTES_PER_VALUE` (stage state: fp32
                weights + masks; step state: fp32 weights + Adam's two fp32 moments, twice — a step checkpoint is
                written beside the one it replaces, then renamed over it)

Both live in the output's directory at the end of an encode (the folder is removed after the output is renamed
into place), so the check asks for their sum. `free_bytes` is `shutil.disk_usage(dir).free`, the space an
unprivileged process may use.
"""

from __future__ import annotations

import math
import os
import shutil

from .errors import OutputError
from .rate import Clip

CHECKPOINT_BYTES_PER_VALUE = 4 + 1 + 2 * 3 * 4  # stage npz (fp32 + bool mask) + old and new step npz (weights + Adam)
STREAM_BYTES_PER_PARAMETER = 1.0  # fixed networks: an upper bound on the coded size of one parameter
MARGIN_BYTES = 64 << 10  # container overhead, key/JSON files, file system slack


def estimate(plan: dict, clip: Clip, copied_bytes: int = 0, checkpoints: bool = True) -> dict[str, int]:
    """Bytes an encode writes beside its output: {"stream", "output", "checkpoints", "total"}."""
    segments = max(1, math.ceil(clip.frames / max(clip.segment_frames, 1)))
    # `parameters` is per segment (HiNeRV); C3 gives `latents` for the whole clip
    per_segment = plan.get("parameters") or (plan.get("latents") or 0) / segments
    if plan.get("stream_bpp") is not None:
        stream = plan["stream_bpp"] * clip.width * clip.height * clip.frames / 8
    else:
        stream = STREAM_BYTES_PER_PARAMETER * per_segment * segments
    stream = int(stream) + clip.overhead_bytes
    per_value = plan.get("checkpoint_bytes_per_value") or CHECKPOINT_BYTES_PER_VALUE
    ckpt = stream + int(per_value * per_segment) if checkpoints else 0
    output = stream + copied_bytes
    return {"stream": stream, "output": output, "checkpoints": ckpt, "total": output + ckpt + MARGIN_BYTES}


def free_bytes(directory: str) -> int:
    return shutil.disk_usage(directory).free


def check_free_space(output_path: str, need: dict[str, int]) -> None:
    """OutputError (exit 4) when the output's file system has less free than `need["total"]`."""
    if output_path == "-":
        return
    directory = os.path.dirname(os.path.abspath(output_path))
    try:
        free = free_bytes(directory)
    except OSError:  # cannot tell (an exotic file system): the writes themselves still fail with exit 4
        return
    if free < need["total"]:
        raise OutputError(f"not enough free disk in {directory}: this encode needs about {_size(need['total'])} "
                          f"(output {_size(need['output'])}, checkpoints {_size(need['checkpoints'])}), "
                          f"{_size(free)} free")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover
