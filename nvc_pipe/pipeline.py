"""The pipeline runner: what flows between stages (`Work`), what a stage is (`Stage`), and running them in order.

A stage is a name and a function ``Work -> Work``. Data moves one way: the patch stage puts the segment's frames on
the device, overfit/prune/qat train `work.model`, quantize turns it into tensor records, entropy_code turns those
into `work.payload`, the bytes of one access unit. Each stage records its wall time in `work.report`.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import torch

from .bitstream.tensors import TensorRecord
from .checkpoint import Checkpoint, restore_stage
from .errors import NvcError

if TYPE_CHECKING:
    from .media.clip import Segment, VideoInfo

log = logging.getLogger(__name__)


@dataclass
class Work:
    """State of one segment's encode as it passes through the stages."""

    segment: "Segment"
    info: "VideoInfo"
    config: Any  # the codec plugin's config (what `configure` returned); core never reads inside it
    device: torch.device
    progress: bool = True
    model: torch.nn.Module | None = None
    data: Any = None  # set by the patch stage (nvc_pipe.stages.patch.PatchData)
    masks: dict[str, torch.Tensor] = field(default_factory=dict)
    records: list[TensorRecord] = field(default_factory=list)
    payload: bytes = b""
    report: dict = field(default_factory=dict)
    budget_bytes: int | None = None  # payload bytes this segment may spend (rate control; None = no target)
    tick: Callable[[int], None] | None = None  # advance the whole-encode progress bar by n optimisation steps
    checkpoint: "Checkpoint | None" = None  # set by run_stages: training loops save step checkpoints there


class Stage(NamedTuple):
    """`checkpoint=True` marks an expensive stage whose result (model + masks) is saved for `--resume`."""

    name: str
    run: Callable[[Work], Work]
    checkpoint: bool = False


def run_stages(stages: list[Stage], work: Work, checkpoint: "Checkpoint | None" = None,
               shrink: Callable[[Any], Any] | None = None) -> Work:
    """Run `stages` in order on one segment; time each; skip those a checkpoint already holds.

    Cheap stages (patch, init, quantize, entropy) always run; checkpointed ones up to the last saved are skipped
    and the saved model state is loaded in their place. A resumed segment starts with the report saved with that
    state, so a cheap stage between skipped ones (HiNeRV's `aim`, after overfit) can take the decision it recorded
    there on the trained model instead of deciding again on the fresh one it would see.

    CUDA out-of-memory in a stage puts the work back as the stage received it (weights, masks, report) and runs the
    stage again (with a warning) on `shrink(work.config)`, the plugin's lighter config (e.g. half the batch),
    until it returns None.
    """
    work.checkpoint = checkpoint
    saved = checkpoint.stage_state(work.segment.index) if checkpoint else None
    names = [s.name for s in stages]
    skip_until = names.index(saved["stage"]) if saved and saved["stage"] in names else -1
    if skip_until >= 0:
        work.report.update(copy.deepcopy(saved["report"]))
    for i, stage in enumerate(stages):
        if stage.checkpoint and i <= skip_until:
            if i == skip_until:
                restore_stage(work, saved)
                log.info("segment %d: resumed after %s", work.segment.index, stage.name)
            continue
        t0 = time.perf_counter()
        log.info("segment %d: %s", work.segment.index, stage.name)
        work = _run_with_oom_fallback(stage, work, shrink)
        if work.device.type == "cuda":
            torch.cuda.synchronize(work.device)
        work.report.setdefault("time_s", {})[stage.name] = round(time.perf_counter() - t0, 3)
        if stage.checkpoint and checkpoint is not None:
            checkpoint.save_stage(work.segment.index, stage.name, work.model, work.masks, work.report)
    return work


class _Start(NamedTuple):
    """What a stage received: the model object and a CPU copy of its state, masks, records, payload, report."""

    model: torch.nn.Module | None
    state: dict[str, torch.Tensor] | None
    masks: dict[str, torch.Tensor]
    records: list[TensorRecord]
    payload: bytes
    report: dict


def _snapshot(work: Work) -> _Start:
    state = None
    if isinstance(work.model, torch.nn.Module):
        state = {k: v.detach().to("cpu", copy=True) for k, v in work.model.state_dict().items()}
    masks = {k: v.detach().to("cpu", copy=True) for k, v in work.masks.items()}
    return _Start(work.model, state, masks, list(work.records), work.payload, copy.deepcopy(work.report))


def _restore(work: Work, start: _Start) -> None:
    """Put `work` back as `_snapshot` saw it (the parameters are written in place: same tensors as before)."""
    work.model = start.model
    if start.state is not None:
        work.model.load_state_dict(start.state)
    work.masks = {k: v.to(work.device) for k, v in start.masks.items()}
    work.records, work.payload = list(start.records), start.payload
    work.report.clear()
    work.report.update(copy.deepcopy(start.report))


def _run_with_oom_fallback(stage: Stage, work: Work, shrink: Callable[[Any], Any] | None) -> Work:
    start, notes = _snapshot(work), []
    while True:
        try:
            return stage.run(work)
        except torch.cuda.OutOfMemoryError:
            lighter = shrink(work.config) if shrink is not None else None
            if lighter is None:
                raise NvcError(f"out of GPU memory in {stage.name} at the smallest batch "
                               "(try a smaller preset or rate, --segment-frames, or --device cpu)") from None
            # Not a retry on half-trained weights: the stage starts over from what it was given.
            _restore(work, start)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            work.config = lighter
            notes.append(f"{stage.name}: out of GPU memory, stage restarted with a lighter configuration")
            work.report.setdefault("warnings", []).extend(notes)
            log.warning("out of GPU memory in %s: restarting it with a lighter configuration", stage.name)
