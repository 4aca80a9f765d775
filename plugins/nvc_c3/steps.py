"""C3's step checkpoints: where the training of one segment (train.py) stands when it saves (every
`--checkpoint-every` and on SIGINT/SIGTERM), and how a resumed run finds its way back to that step. The file
format, the generators and the signal handling are core's (`nvc_pipe/checkpoint_step.py`); this module only says
what C3's loops put in it.

A segment trains its patches one after another, and a patch goes through PHASES: `mask` (the learned-window
probe), `warmup` (candidate `index` of round `round`), `noise` (stage 1), `final` (stage 2). A checkpoint holds

    meta     patch, phase, step (steps done in that phase's loop), the finished patches' summaries (box, windows,
             last history entry), the current patch's windows and loss history, the warm-up's round, candidate
             and the scores of that round so far, stage 2's best loss, steps since it and LR
    modules  done<k>: the finished patches; model: the one in training (warm-up: cand<k>, the candidates of the
             round); best: stage 2's best parameters so far
    + the loop's Adam state, the patch's noise generator and the global generators (core adds those)

After the last patch, phase `trained` holds every patch model, so an interrupt in quantize or entropy coding does
not train again. A resumed run rebuilds what came before the saved step (finished patches, candidates) from the
checkpoint and the loop in progress goes on at its step; later loops run as in an uninterrupted encode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from nvc_pipe.checkpoint_step import Saved, StepCheckpoint

if TYPE_CHECKING:
    from .model import PatchModel

PHASES = ("mask", "warmup", "noise", "final", "trained")


def checkpoint_bytes_per_value(warmup_candidates: int) -> int:
    """Disk a segment's step checkpoint may take per latent (diskcheck, before training): every patch model once
    (fp32), plus for the patch in training Adam's two moments and stage 2's best copy, or in the warm-up the
    other candidates and Adam; twice, as a checkpoint is written beside the one it replaces."""
    return 2 * max(4 + 3 * 4, 4 + 4 * (max(warmup_candidates, 1) - 1) + 2 * 4)


class Steps:
    """The step checkpoint of one segment's C3 training: the outer loops set where they are (`patch`, `windows`,
    `history`, `warmup`, `candidates`), the inner ones call `step` after every optimisation step."""

    def __init__(self, saver: StepCheckpoint) -> None:
        self.saver = saver
        self.saved: Saved | None = saver.load_state()  # dropped once its loop has gone back to it
        self.patch = 0
        self.finished: list[PatchModel] = []  # the trained models of the patches before `patch`
        self.summaries: list[dict] = []
        self.windows: list[tuple[int, int]] | None = None
        self.history: list[dict] = []
        self.warmup: dict | None = None  # {"round", "index", "scores": [[hard loss, candidate], ...]}
        self.candidates: list[PatchModel] = []

    # --- where the saved run stood
    def _at(self) -> tuple[int, int] | None:
        return None if self.saved is None else (self.saved.meta["patch"], PHASES.index(self.saved.meta["phase"]))

    def passed(self, patch: int, phase: str | None = None) -> bool:
        """The saved run was past `phase` of `patch` (past the whole patch when `phase` is None)."""
        at = self._at()
        return at is not None and (at[0] > patch if phase is None else at > (patch, PHASES.index(phase)))

    def inside(self, phase: str) -> Saved | None:
        """The saved state when the run stopped in `phase` of the current patch."""
        at = self._at()
        return self.saved if at is not None and at == (self.patch, PHASES.index(phase)) else None

    def finished_patch(self, k: int,
                       build: Callable[[list[tuple[int, int]]], "PatchModel"]) -> tuple["PatchModel", dict]:
        """Patch `k`, finished before the save: `build(windows)` rebuilt, loaded; and its summary."""
        summary = self.saved.meta["summaries"][k]
        model = build([tuple(w) for w in summary["windows"]])
        self.saved.load_module(f"done{k}", model)
        return model, summary

    def saved_windows(self) -> list[tuple[int, int]]:
        return [tuple(w) for w in self.saved.meta["windows"]]

    def resume_history(self) -> list[dict]:
        """The current patch's history as saved (empty for a patch that starts fresh)."""
        at = self._at()
        self.history = list(self.saved.meta["history"]) if at is not None and at[0] == self.patch else []
        return self.history

    def enter(self, phase: str, model: torch.nn.Module, opt: torch.optim.Optimizer,
              gen: torch.Generator | None) -> Saved | None:
        """If the run stopped inside this loop (this patch and phase, and warm-up candidate), put the loop's state
        back (model, Adam, generators) and return the checkpoint (`meta["step"]`: where to go on); else None."""
        at = self.inside(phase)
        if at is None:
            return None
        if phase == "warmup":
            saved = at.meta["warmup"]
            if (saved["round"], saved["index"]) != (self.warmup["round"], self.warmup["index"]):
                return None
            at.load_module(f"cand{saved['index']}", model)
        else:
            at.load_module("model", model)
        at.load_optimizer("adam", opt)
        if gen is not None:
            at.load_generator("gen", gen)
        at.restore_global_rngs()
        self.saved = None
        return at

    # --- saving
    def step(self, phase: str, done: int, model: torch.nn.Module | None, opt: torch.optim.Optimizer | None,
             gen: torch.Generator | None, extra: dict | None = None, best: dict | None = None) -> None:
        """After a step of `phase`'s loop (`done` steps done): save when due (and stop if a signal asked)."""
        if self.saver.due():
            self.save(phase, done, model, opt, gen, extra, best)

    def save(self, phase: str, done: int, model: torch.nn.Module | None = None,
             opt: torch.optim.Optimizer | None = None, gen: torch.Generator | None = None,
             extra: dict | None = None, best: dict | None = None) -> None:
        meta = {"patch": self.patch, "phase": phase, "summaries": self.summaries, "windows": self.windows,
                "history": self.history, "warmup": self.warmup, **(extra or {})}
        modules: dict = {f"done{k}": m for k, m in enumerate(self.finished)}
        if phase == "warmup":
            modules.update({f"cand{k}": m for k, m in enumerate(self.candidates)})
        elif model is not None:
            modules["model"] = model
        if best is not None:
            modules["best"] = best
        self.saver.save_state(done, meta, modules, {"adam": opt} if opt is not None else {},
                              {"gen": gen} if gen is not None else {})
