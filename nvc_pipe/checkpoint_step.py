"""Checkpoints inside a training stage: what the shared training loop (`stages/overfit.fit`) saves every
`--checkpoint-every` and on SIGINT/SIGTERM, and puts back on `--resume`, so an interrupted stage goes on at the step
where it stopped and the stream comes out with the same bytes as an uninterrupted run (on the same device).

What is saved: the model's state_dict, the optimizer's per-parameter state (Adam moments and step), every random
generator the loop may draw from (its patch-order generator, torch's global CPU and CUDA generators, numpy's and
Python's), the step counter, the epoch, the position inside the epoch with that epoch's patch order, the loss
summed so far in the epoch, and the stage's history. Arrays go to `.npz` (read back with `allow_pickle=False`),
the rest to JSON, through `Checkpoint.save_step`. A checkpoint is used only by the stage that wrote it and only
when the loop has the same shape (epochs, steps per epoch, batch, patches); otherwise the stage starts over.

Signals: while a stage trains with checkpoints on, SIGINT and SIGTERM only set a flag; the loop saves at the end
of the step in progress, then raises KeyboardInterrupt (a second signal interrupts at once, without saving).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

if TYPE_CHECKING:
    from .checkpoint import Checkpoint

log = logging.getLogger(__name__)


@dataclass
class Position:
    """Where the loop is: `step` steps done; the next one is step `index` of epoch `epoch` (0-based)."""

    step: int
    epoch: int
    index: int
    order: torch.Tensor | None  # the patch order of `epoch` (None once every epoch is done)
    loss_sum: torch.Tensor | None
    history: list[dict]


def open_step_checkpoint(store: "Checkpoint | None", segment: int, stage: str, shape: dict) -> "StepCheckpoint | None":
    """The step checkpoint of one stage of one segment, or None when there is no store or step checkpoints are off."""
    if store is None or not store.step_every or store.step_every <= 0:
        return None
    return StepCheckpoint(store, segment, stage, shape)


class StepCheckpoint:
    """Saves and restores one training loop's `Position` and the states around it."""

    def __init__(self, store: "Checkpoint", segment: int, stage: str, shape: dict) -> None:
        self.store, self.segment, self.stage, self.shape = store, segment, stage, shape
        self.every = float(store.step_every)
        self.last = time.monotonic()
        self.interrupted = False

    def due(self) -> bool:
        return self.interrupted or time.monotonic() - self.last >= self.every

    def save(self, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, at: Position) -> None:
        """Write the checkpoint; then, if a signal asked for it, stop with KeyboardInterrupt."""
        arrays = {f"p:{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}
        for pid, state in opt.state_dict()["state"].items():
            arrays.update({f"o:{pid}:{k}": v.detach().cpu().numpy() for k, v in state.items()
                           if isinstance(v, torch.Tensor)})
        np_state = np.random.get_state()
        arrays.update({"r:gen": gen.get_state().numpy(), "r:torch": torch.get_rng_state().numpy(),
                       "r:numpy": np_state[1], "step": np.array(at.step, np.int64)})
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            arrays.update({f"r:cuda:{k}": s.numpy() for k, s in enumerate(torch.cuda.get_rng_state_all())})
        if at.order is not None:
            arrays["d:order"] = at.order.cpu().numpy()
            arrays["d:loss_sum"] = at.loss_sum.detach().float().cpu().numpy()
        py_version, py_state, py_gauss = random.getstate()
        meta = {"stage": self.stage, "shape": self.shape, "step": at.step, "epoch": at.epoch, "index": at.index,
                "history": at.history, "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_version, list(py_state), py_gauss]}
        self.store.save_step(self.segment, meta, arrays)
        self.last = time.monotonic()
        log.info("segment %d: %s checkpoint at step %d", self.segment, self.stage, at.step)
        if self.interrupted:
            raise KeyboardInterrupt

    def resume(self, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
               device: torch.device) -> Position | None:
        """Load a checkpoint this stage wrote (model, optimizer, RNGs) and say where to go on; None: start over."""
        found = self.store.step_state(self.segment)
        if found is None:
            return None
        meta, arrays = found
        if (meta.get("stage") != self.stage or meta.get("shape") != self.shape
                or "step" not in arrays or int(arrays["step"]) != meta.get("step")):
            log.warning("segment %d: the step checkpoint is not for this %s stage; it starts over",
                        self.segment, self.stage)
            return None
        model.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("p:")})
        state: dict[int, dict] = {}
        for key, value in arrays.items():
            if key.startswith("o:"):
                _, pid, name = key.split(":", 2)
                state.setdefault(int(pid), {})[name] = torch.from_numpy(value)
        saved = opt.state_dict()
        saved["state"] = state
        opt.load_state_dict(saved)
        gen.set_state(torch.from_numpy(arrays["r:gen"]))
        torch.set_rng_state(torch.from_numpy(arrays["r:torch"]))
        cuda = [torch.from_numpy(arrays[k]) for k in sorted(arrays) if k.startswith("r:cuda:")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        name, pos, has_gauss, cached = meta["numpy"]
        np.random.set_state((name, arrays["r:numpy"], pos, has_gauss, cached))
        py_version, py_state, py_gauss = meta["python"]
        random.setstate((py_version, tuple(py_state), py_gauss))
        order = torch.from_numpy(arrays["d:order"]).to(device) if "d:order" in arrays else None
        loss_sum = torch.from_numpy(arrays["d:loss_sum"]).to(device) if "d:loss_sum" in arrays else None
        log.info("segment %d: %s resumed at step %d", self.segment, self.stage, meta["step"])
        return Position(meta["step"], meta["epoch"], meta["index"], order, loss_sum, meta["history"])

    @contextmanager
    def deferred_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM set `interrupted` instead of raising (in the main thread, for signals not ignored)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self.interrupted:  # asked twice: stop now
                raise KeyboardInterrupt
            self.interrupted = True

        # a signal the process ignores (SIGINT of a background job, nohup) stays ignored
        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)
                    if signal.getsignal(s) is not signal.SIG_IGN}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h if h is not None else signal.default_int_handler)
