"""The pipeline runner: what flows between stages (`Work`), what a stage is (`Stage`), and running them in order.

A stage is a name and a function ``Work -> Work``. Data moves one way: the patch stage puts the segment's frames on
the device, overfit/prune/qat train `work.model`, quantize turns it into tensor records, entropy_code turns those
into `work.payload`, the bytes of one access unit. Each stage records its wall time in `work.report`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch

from .bitstream.tensors import TensorRecord

if TYPE_CHECKING:
    from .media.clip import Segment, VideoInfo

log = logging.getLogger(__name__)


@dataclass
class Work:
    """State of one segment's encode as it passes through the stages."""

    segment: "Segment"
    info: "VideoInfo"
    config: Any  # the codec's preset config (architecture + training)
    device: torch.device
    progress: bool = True
    model: torch.nn.Module | None = None
    data: Any = None  # set by the patch stage (nvc_pipe.stages.patch.PatchData)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    records: list[TensorRecord] = field(default_factory=list)
    payload: bytes = b""
    report: dict = field(default_factory=dict)


class Stage(NamedTuple):
    name: str
    run: Callable[[Work], Work]


def run_stages(stages: list[Stage], work: Work) -> Work:
    """Run `stages` in order on one segment; time each."""
    times = work.report.setdefault("time_s", {})
    for stage in stages:
        t0 = time.perf_counter()
        log.info("segment %d: %s", work.segment.index, stage.name)
        work = stage.run(work)
        if work.device.type == "cuda":
            torch.cuda.synchronize(work.device)
        times[stage.name] = round(time.perf_counter() - t0, 3)
    return work
