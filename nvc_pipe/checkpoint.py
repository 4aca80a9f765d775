"""Encode checkpoints for `nvc encode --resume`: finished segments and finished training stages, on disk.

Directory `<output>.nvc-partial/` next to the output, removed when the encode succeeds:

    key.json                 what the checkpoint is valid for (input identity, codec, full config, segmenting)
    seg00003.au              a finished segment: its access-unit bytes
    seg00003.json            its report and per-frame quality
    seg00003.state.npz       the model after the last finished training stage of an unfinished segment
    seg00003.state.json      which stage that was, and the report so far
    seg00003.step.npz        inside the training stage in progress: model, optimizer, RNG states, data order
    seg00003.step.json       which stage and step that is (written every --checkpoint-every and on SIGINT/SIGTERM;
                             nvc_pipe/checkpoint_step.py)
    seg00003.first.json      the coded sizes of the encodes that rate corrections replaced (`VideoCodec.correct`):
                             a resumed run corrects from them instead of encoding the segment again

Arrays go through `np.savez` and come back with `allow_pickle=False`; JSON for the rest: no pickle. Every file
is written to a temporary name and renamed, so a kill leaves either the old or the new version. Training stages
reseed their random generators from the config, so resuming at a stage boundary gives the same bytes as an
uninterrupted run (on the same device); a step checkpoint holds every state the training loop draws on, so resuming
inside a stage does too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .errors import ConfigError, OutputError
from .media.atomic import atomic_output, write_atomic


DEFAULT_STEP_EVERY_S = 300.0  # --checkpoint-every: seconds of training between step checkpoints
RESUMABLE = (".au", ".npz", ".first.json")  # files that hold work --resume continues from (the CLI's hint too)
_SEGMENT_STATES = (".state.npz", ".state.json", ".step.npz", ".step.json")


class Checkpoint:
    """Checkpoint store for one output file; `step_every` seconds between step checkpoints (0: none, not even on
    SIGINT/SIGTERM)."""

    def __init__(self, output_path: str, key: dict, resume: bool, step_every: float = DEFAULT_STEP_EVERY_S) -> None:
        self.dir = Path(output_path + ".nvc-partial")
        self.step_every = step_every
        self.key = json.dumps(key, sort_keys=True, default=str)
        try:
            if self.dir.exists() and resume:
                found = (self.dir / "key.json").read_text() if (self.dir / "key.json").exists() else ""
                if found != self.key:
                    raise ConfigError(f"{self.dir} was made with other input or settings; run without --resume")
            elif self.dir.exists():
                shutil.rmtree(self.dir)
            elif resume:
                raise ConfigError(f"nothing to resume: {self.dir} does not exist")
        except OSError as exc:
            raise OutputError(f"cannot keep checkpoints in {self.dir}: {exc.strerror}") from None

    def _ensure_dir(self) -> None:
        """Created on the first save, so a run that fails before any work leaves nothing behind."""
        if not self.dir.exists():
            self.dir.mkdir()
            write_atomic(self.dir / "key.json", self.key.encode())

    @contextmanager
    def _saving(self):
        """Turn a failed save (a full disk) into exit 4: temporary files removed, and the whole directory when it
        holds nothing resumable yet; otherwise it stays for ``--resume`` and the message says so."""
        try:
            yield
        except OSError as exc:
            kept = [p for p in self.dir.glob("seg*") if p.name.endswith(RESUMABLE)]
            if not kept:
                shutil.rmtree(self.dir, ignore_errors=True)
            hint = f"; finished work kept in {self.dir} for --resume" if kept else ""
            raise OutputError(f"cannot save a checkpoint in {self.dir}: {exc.strerror or exc}{hint}") from None

    # finished segments
    def segment(self, index: int) -> tuple[bytes, dict] | None:
        au, meta = self.dir / f"seg{index:05d}.au", self.dir / f"seg{index:05d}.json"
        if not (au.exists() and meta.exists()):
            return None
        return au.read_bytes(), json.loads(meta.read_text())

    def save_segment(self, index: int, au: bytes, meta: dict) -> None:
        with self._saving():
            self._ensure_dir()
            write_atomic(self.dir / f"seg{index:05d}.json", json.dumps(meta).encode())
            write_atomic(self.dir / f"seg{index:05d}.au", au)  # last: an .au marks a finished segment
            for suffix in (*_SEGMENT_STATES, ".first.json"):
                (self.dir / f"seg{index:05d}{suffix}").unlink(missing_ok=True)

    # encodes that the plugin's rate correction replaced by one at a corrected setting
    def replaced_passes(self, index: int) -> list[int]:
        """Coded payload sizes of segment `index`'s encodes that finished and were replaced, in order."""
        path = self.dir / f"seg{index:05d}.first.json"
        if not path.exists():
            return []
        coded = json.loads(path.read_text())["coded_bytes"]
        return [int(c) for c in (coded if isinstance(coded, list) else [coded])]

    def save_replaced_passes(self, index: int, coded_bytes: list[int]) -> None:
        """Record the replaced encodes' sizes; the stage and step states go (they belong to the setting replaced).
        Removed first: a kill in between costs the last encode again, never a wrong state."""
        with self._saving():
            self._ensure_dir()
            for suffix in _SEGMENT_STATES:
                (self.dir / f"seg{index:05d}{suffix}").unlink(missing_ok=True)
            write_atomic(self.dir / f"seg{index:05d}.first.json",
                         json.dumps({"coded_bytes": list(coded_bytes)}).encode())

    # finished stages of the segment in progress
    def stage_state(self, index: int) -> dict | None:
        meta = self.dir / f"seg{index:05d}.state.json"
        arrays = self.dir / f"seg{index:05d}.state.npz"
        if not (meta.exists() and arrays.exists()):
            return None
        state = json.loads(meta.read_text())
        with np.load(arrays, allow_pickle=False) as z:
            state["arrays"] = {k: z[k] for k in z.files}
        return state

    def save_stage(self, index: int, stage: str, model: torch.nn.Module, masks: dict, report: dict) -> None:
        arrays = {f"p:{n}": p.detach().float().cpu().numpy() for n, p in model.named_parameters()}
        arrays.update({f"m:{n}": m.cpu().numpy() for n, m in masks.items()})
        with self._saving():
            self._ensure_dir()
            with atomic_output(str(self.dir / f"seg{index:05d}.state.npz")) as tmp:
                np.savez(tmp, **arrays)
            write_atomic(self.dir / f"seg{index:05d}.state.json",
                          json.dumps({"stage": stage, "report": report}).encode())
            for suffix in (".step.npz", ".step.json"):  # the stage they were inside has finished
                (self.dir / f"seg{index:05d}{suffix}").unlink(missing_ok=True)

    # inside the training stage in progress (nvc_pipe/checkpoint_step.py builds and reads these)
    def step_state(self, index: int) -> tuple[dict, dict[str, np.ndarray]] | None:
        meta, arrays = self.dir / f"seg{index:05d}.step.json", self.dir / f"seg{index:05d}.step.npz"
        if not (meta.exists() and arrays.exists()):
            return None
        with np.load(arrays, allow_pickle=False) as z:
            return json.loads(meta.read_text()), {k: z[k] for k in z.files}

    def save_step(self, index: int, meta: dict, arrays: dict[str, np.ndarray]) -> None:
        """Arrays first, then the JSON that names them: a kill between the two leaves a pair that does not match
        (`step` differs), which the loader refuses, so the stage restarts from its beginning."""
        with self._saving():
            self._ensure_dir()
            with atomic_output(str(self.dir / f"seg{index:05d}.step.npz")) as tmp:
                np.savez(tmp, **arrays)
            write_atomic(self.dir / f"seg{index:05d}.step.json", json.dumps(meta).encode())

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def restore_stage(work, state: dict) -> None:
    """Load a saved stage state into `work` (model parameters, masks, report)."""
    params = dict(work.model.named_parameters())
    with torch.no_grad():
        for key, value in state["arrays"].items():
            kind, name = key.split(":", 1)
            if kind == "p":
                params[name].copy_(torch.from_numpy(value))
            else:
                work.masks[name] = torch.from_numpy(value).to(work.device)
    work.report.update(state["report"])


def input_identity(path: str) -> dict:
    """What identifies an input file for resuming (path, size, mtime; stdin cannot be resumed)."""
    if path == "-":
        raise ConfigError("--resume needs a file input, not stdin")
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha1_head": hashlib.sha1(Path(path).open("rb").read(1 << 20)).hexdigest()}
