"""Checkpoints inside a training stage: the one file format of what a training loop saves every
`--checkpoint-every` and on SIGINT/SIGTERM and puts back on `--resume`, so an interrupted stage goes on at the step
where it stopped and the stream comes out with the same bytes as an uninterrupted run (on the same device).

`StepCheckpoint.save_state` takes any loop's JSON position and its named modules (state_dicts), optimizers
(per-parameter state: Adam's moments and step) and generators, and always adds torch's global CPU (and CUDA)
generators, numpy's and Python's; `load_state` gives them back as a `Saved`. Two loops use it: the shared loop
(`stages/overfit.fit`, through `save`/`resume` of its `Position`: the step counter, the epoch, the position inside
the epoch with that epoch's patch order, the loss summed so far in the epoch, the stage's history) and C3's own
(`plugins/nvc_c3/steps.py`). Arrays go to `.npz` (read back with `allow_pickle=False`), the rest to JSON, through
`Checkpoint.save_step`. A checkpoint is used only by the stage that wrote it and only when the loop has the same
shape (for `fit`: epochs, steps per epoch, batch, patches); otherwise the stage starts over.

Signals: while a stage trains with checkpoints on, SIGINT and SIGTERM only set a flag; the loop saves at the end
of the step in progress, then raises KeyboardInterrupt (a second signal interrupts at once, without saving).
"""

from __future__ import annotations

import json
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
FORMAT = 2  # of the files below; a checkpoint of another format (an older nvc-pipe) is not used: the stage starts over


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


class Saved:
    """A step checkpoint read back: the loop's JSON `meta` and its arrays, with helpers that put states back."""

    def __init__(self, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        self.meta, self.arrays = meta, arrays

    def tensors(self, name: str, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The tensors saved under `name` (a module's state_dict, or `tensors=` of `save_state`), by key."""
        prefix = f"m:{name}:"
        return {k[len(prefix):]: torch.from_numpy(v).to(device) for k, v in self.arrays.items()
                if k.startswith(prefix)}

    def has(self, name: str) -> bool:
        return any(k.startswith(f"m:{name}:") for k in self.arrays)

    def load_module(self, name: str, module: torch.nn.Module) -> None:
        module.load_state_dict(self.tensors(name))

    def load_optimizer(self, name: str, opt: torch.optim.Optimizer) -> None:
        """Per-parameter state (Adam's moments and step); the param groups stay the optimizer's own."""
        state: dict[int, dict] = {}
        prefix = f"o:{name}:"
        for key, value in self.arrays.items():
            if key.startswith(prefix):
                pid, field = key[len(prefix):].split(":", 1)
                state.setdefault(int(pid), {})[field] = torch.from_numpy(value)
        saved = opt.state_dict()
        saved["state"] = state
        opt.load_state_dict(saved)

    def load_generator(self, name: str, gen: torch.Generator) -> None:
        gen.set_state(torch.from_numpy(self.arrays[f"g:{name}"]))

    def restore_global_rngs(self) -> None:
        """torch's CPU (and CUDA) generators, numpy's and Python's, as they were at the save. Call it when the loop
        is about to go on: building modules on the way there draws from torch's generator."""
        torch.set_rng_state(torch.from_numpy(self.arrays["r:torch"]))
        cuda = [torch.from_numpy(self.arrays[k]) for k in sorted(self.arrays) if k.startswith("r:cuda:")]
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda)
        name, pos, has_gauss, cached = self.meta["numpy"]
        np.random.set_state((name, self.arrays["r:numpy"], pos, has_gauss, cached))
        py_version, py_state, py_gauss = self.meta["python"]
        random.setstate((py_version, tuple(py_state), py_gauss))


def _state(module: "torch.nn.Module | dict[str, torch.Tensor]") -> dict[str, torch.Tensor]:
    return module.state_dict() if isinstance(module, torch.nn.Module) else module


class StepCheckpoint:
    """Saves and restores the state of one training loop: `save_state`/`load_state` for any loop (C3's), and
    `save`/`resume` of the shared loop's `Position` on top of them."""

    def __init__(self, store: "Checkpoint", segment: int, stage: str, shape: dict) -> None:
        self.store, self.segment, self.stage = store, segment, stage
        self.shape = json.loads(json.dumps(shape))  # as it reads back (tuples are lists in JSON)
        self.every = float(store.step_every)
        self.last = time.monotonic()
        self.interrupted = False

    def due(self) -> bool:
        return self.interrupted or time.monotonic() - self.last >= self.every

    def save_state(self, step: int, meta: dict, modules: dict | None = None, optimizers: dict | None = None,
                   generators: dict | None = None) -> None:
        """Write `meta` (JSON-able) and named modules (or state_dicts), optimizers and generators, with every
        global generator (torch CPU/CUDA, numpy, Python); then, if a signal asked for it, stop with
        KeyboardInterrupt. `step` counts the loop's steps done (the JSON and the arrays must agree on it)."""
        arrays: dict[str, np.ndarray] = {}
        for name, module in (modules or {}).items():
            arrays.update({f"m:{name}:{k}": v.detach().cpu().numpy() for k, v in _state(module).items()})
        for name, opt in (optimizers or {}).items():
            for pid, state in opt.state_dict()["state"].items():
                arrays.update({f"o:{name}:{pid}:{k}": v.detach().cpu().numpy() for k, v in state.items()
                               if isinstance(v, torch.Tensor)})
        arrays.update({f"g:{name}": gen.get_state().numpy() for name, gen in (generators or {}).items()})
        np_state = np.random.get_state()
        arrays.update({"r:torch": torch.get_rng_state().numpy(), "r:numpy": np_state[1],
                       "step": np.array(step, np.int64)})
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            arrays.update({f"r:cuda:{k}": s.numpy() for k, s in enumerate(torch.cuda.get_rng_state_all())})
        py_version, py_state, py_gauss = random.getstate()
        full = {"format": FORMAT, "stage": self.stage, "shape": self.shape, "step": step, **meta,
                "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
                "python": [py_version, list(py_state), py_gauss]}
        self.store.save_step(self.segment, full, arrays)
        self.last = time.monotonic()
        log.info("segment %d: %s checkpoint at step %d", self.segment, self.stage, step)
        if self.interrupted:
            raise KeyboardInterrupt

    def load_state(self) -> Saved | None:
        """The checkpoint this stage wrote for a loop of this shape, or None (none, or another stage's). Nothing
        is put back yet: see `Saved`."""
        found = self.store.step_state(self.segment)
        if found is None:
            return None
        meta, arrays = found
        if (meta.get("format") != FORMAT or meta.get("stage") != self.stage or meta.get("shape") != self.shape
                or "step" not in arrays or int(arrays["step"]) != meta.get("step")):
            log.warning("segment %d: the step checkpoint is not for this %s stage; it starts over",
                        self.segment, self.stage)
            return None
        log.info("segment %d: %s resumed at step %d", self.segment, self.stage, meta["step"])
        return Saved(meta, arrays)

    def save(self, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator, at: Position) -> None:
        """The shared loop's checkpoint (then, if a signal asked for it, KeyboardInterrupt)."""
        tensors = {}
        if at.order is not None:
            tensors = {"order": at.order, "loss_sum": at.loss_sum.detach().float()}
        self.save_state(at.step, {"epoch": at.epoch, "index": at.index, "history": at.history},
                        {"model": model, "data": tensors}, {"adam": opt}, {"order": gen})

    def resume(self, model: torch.nn.Module, opt: torch.optim.Optimizer, gen: torch.Generator,
               device: torch.device) -> Position | None:
        """Load a checkpoint this stage wrote (model, optimizer, RNGs) and say where to go on; None: start over."""
        saved = self.load_state()
        if saved is None:
            return None
        saved.load_module("model", model)
        saved.load_optimizer("adam", opt)
        saved.load_generator("order", gen)
        saved.restore_global_rngs()
        data = saved.tensors("data", device)
        meta = saved.meta
        return Position(meta["step"], meta["epoch"], meta["index"], data.get("order"), data.get("loss_sum"),
                        meta["history"])

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
