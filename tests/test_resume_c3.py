"""C3 resumes inside its training: a run stopped at any step of any phase (learned-window probe, warm-up
candidates, stage 1, stage 2 of either kind, after training) goes on from its step checkpoint and gives the
uninterrupted run's bytes; so does one that stopped inside a rate-corrected (second) encode or in a later segment."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import interrupt_at_first_step

from nvc_pipe import api
from nvc_pipe.checkpoint import Checkpoint
from nvc_pipe.checkpoint_step import StepCheckpoint
from nvc_pipe.media.clip import Segment, VideoInfo
from nvc_pipe.media.demux import RawOptions
from nvc_pipe.pipeline import Work, run_stages
from nvc_pipe.rate import Target

pytestmark = pytest.mark.usefixtures("one_thread")


def _clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = [np.stack([128 + 80 * np.sin((xx + 2 * k) / 5.0), 128 + 60 * np.cos((xx - yy + k) / 6.0),
                        100 + 50 * np.sin((yy + 3 * k) / 4.0)], -1) + rng.normal(0, 4, (h, w, 3)) for k in range(t)]
    return np.clip(np.round(np.array(frames)), 0, 255).astype(np.uint8)


def _presets():
    from nvc_c3 import PRESETS
    from nvc_c3.model import C3Config

    tiny = PRESETS["c3-tiny"]
    # every phase C3 has: learned-window probe, warm-up (3 candidates, best 2 again), stage 1, stage 2 (plateau)
    learned = dataclasses.replace(
        tiny, model=C3Config(num_grids=3, q_step=0.3, synthesis_widths=(6,), arm_widths=(3,), arm_per_grid=True,
                             context="learned", patch_frames=4, patch_height=16, patch_width=16),
        train=dataclasses.replace(tiny.train, epochs=5),
        c3=dataclasses.replace(tiny.c3, stage2_steps=6, stage2_patience=1, mask_steps=4, mask_radius=3,
                               warmup_candidates=3, warmup_keep=2, warmup_steps=2))
    return {"learned": (learned, _clip(4, 13, 21, seed=1)),  # two patches across
            "cool": (PRESETS["c3-tiny-cool"], _clip(2, 16, 24, seed=2))}  # Gaussian noise, warm-up, "hard" final


def _encode(name: str, store: Checkpoint | None = None) -> Work:
    from nvc_c3 import codec

    preset, rgb = _presets()[name]
    t, h, w = rgb.shape[:3]
    work = Work(Segment(rgb, np.arange(t), 0, 0), VideoInfo(w, h, "rgb24", Fraction(25), Fraction(1, 25)), preset,
                torch.device("cpu"), progress=False)
    return run_stages(codec.stages(preset), work, store)


@pytest.fixture(scope="module")
def reference():
    return {name: _encode(name).payload for name in ("learned", "cool")}


def _stop_at_check(monkeypatch, n: int) -> list[int]:
    """A real SIGINT to this process at the `n`-th "is a checkpoint due" check (one per optimisation step)."""
    calls = []
    due = StepCheckpoint.due

    def counting(self):
        calls.append(1)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGINT)
        return due(self)

    monkeypatch.setattr(StepCheckpoint, "due", counting)
    return calls


def _check_disk_estimate(name: str, arrays: dict) -> None:
    """The values of a step checkpoint stay within what diskcheck asks for before training: the plan's
    `checkpoint_bytes_per_value` (counted twice there: the old and the new file) per value of the segment's
    models (the generator states and the npz framing are in its fixed margin)."""
    from nvc_c3.model import PatchModel, patch_boxes
    from nvc_c3.steps import checkpoint_bytes_per_value

    preset, rgb = _presets()[name]
    values = sum(sum(p.numel() for p in PatchModel(preset.model, box[3:]).parameters())
                 for box in patch_boxes(preset.model, *rgb.shape[:3]))
    data = sum(a.nbytes for k, a in arrays.items() if k.startswith(("m:", "o:")))
    assert data <= checkpoint_bytes_per_value(preset.c3.warmup_candidates) / 2 * values


# (preset, SIGINT at the n-th step, where the checkpoint must say it stopped: patch, phase, steps done in that
# loop, and in the warm-up [round, candidate]). "learned" has per patch 4 probe steps, 3 + 2 candidates x 2
# steps, 5 stage-1 steps and (here) 5 of stage 2; "cool" 5 + 2 candidates x 1, 23 and 10.
STOPS = [
    ("learned", 2, (0, "mask", 2)),
    ("learned", 8, (0, "warmup", 2, [0, 1])),  # after the last step of a candidate, before its score
    ("learned", 12, (0, "warmup", 2, [1, 0])),
    ("learned", 17, (0, "noise", 3)),
    ("learned", 22, (0, "final", 3)),
    ("learned", 28, (1, "mask", 3)),  # the second patch: the first comes back from the checkpoint
    ("cool", 6, (0, "warmup", 1, [1, 0])),
    ("cool", 35, (0, "final", 5)),
]


@pytest.mark.parametrize("name, n, where", STOPS, ids=[f"{s[0]}-{s[2][1]}-{s[1]}" for s in STOPS])
def test_c3_stopped_at_any_step_resumes_to_the_same_bytes(reference, tmp_path, monkeypatch, name, n, where):
    out = str(tmp_path / "o.nvc")
    store = Checkpoint(out, {"k": 1}, resume=False, step_every=3600)  # saved on the signal only
    calls = _stop_at_check(monkeypatch, n)
    with pytest.raises(KeyboardInterrupt):
        _encode(name, store)
    meta = store.step_state(0)[0]
    assert (meta["patch"], meta["phase"], meta["step"]) == where[:3] and len(calls) == n
    if meta["phase"] == "warmup":
        assert [meta["warmup"]["round"], meta["warmup"]["index"]] == where[3]
    _check_disk_estimate(name, store.step_state(0)[1])
    monkeypatch.undo()
    calls = _stop_at_check(monkeypatch, 10**9)
    resumed = _encode(name, Checkpoint(out, {"k": 1}, resume=True, step_every=3600))
    assert resumed.payload == reference[name]
    assert 0 < len(calls) < 60 - n  # it went on from the checkpoint, not from the start


def test_c3_stopped_after_training_does_not_train_again(reference, tmp_path, monkeypatch):
    """An interrupt in quantize: the end of training was saved ("trained"), the resumed run only codes it."""
    c3codec = sys.modules["nvc_c3.codec"]  # (the package's `codec` is the plugin object)
    out = str(tmp_path / "o.nvc")
    store = Checkpoint(out, {"k": 1}, resume=False, step_every=3600)
    real = c3codec.quantize_segment

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(c3codec, "quantize_segment", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _encode("cool", store)
    assert store.step_state(0)[0]["phase"] == "trained"
    monkeypatch.setattr(c3codec, "quantize_segment", real)
    calls = _stop_at_check(monkeypatch, 10**9)
    assert _encode("cool", Checkpoint(out, {"k": 1}, resume=True, step_every=3600)).payload == reference["cool"]
    assert calls == []  # not one training step


def _raw(rgb: np.ndarray, path) -> RawOptions:
    rgb.tofile(path)
    return RawOptions((rgb.shape[2], rgb.shape[1]), Fraction(25), "rgb24")


def test_sigint_in_a_real_c3_encode_resumes_to_the_same_bytes(tmp_path, caplog):
    """`nvc encode --codec c3` SIGINTed after a step checkpoint landed: exit 130 with the --resume hint; the
    resumed encode (in this process, not the one interrupted) says where it went on and writes the
    uninterrupted run's bytes."""
    rgb = _clip(2, 16, 24, seed=2)
    src = tmp_path / "clip_24x16_25fps_rgb24.rgb"
    raw = _raw(rgb, src)
    ref = tmp_path / "ref.nvc"
    api.encode_file(str(src), str(ref), codec="c3", preset="c3-tiny-cool", device="cpu", raw=raw, progress=False)
    out = tmp_path / "out.nvc"
    step = tmp_path / "out.nvc.nvc-partial" / "seg00000.step.json"
    cmd = [sys.executable, "-m", "nvc_pipe", "encode", str(src), "-o", str(out), "--size", "24x16", "--fps", "25",
           "--pix-fmt", "rgb24", "--codec", "c3", "--preset", "c3-tiny-cool", "--device", "cpu", "--quiet"]
    meta = interrupt_at_first_step(cmd + ["--checkpoint-every", "0.01s"], step)  # saved inside a training stage
    assert not out.exists()
    assert meta["stage"] == "c3"
    with caplog.at_level("INFO", logger="nvc_pipe.checkpoint_step"):
        api.encode_file(str(src), str(out), codec="c3", preset="c3-tiny-cool", device="cpu", raw=raw,
                        progress=False, resume=True)
    assert f"c3 resumed at step {meta['step']}" in caplog.text
    assert out.read_bytes() == ref.read_bytes()
    assert not os.path.exists(str(out) + ".nvc-partial")


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """Two 2-frame segments of c3-tiny-cool (20 steps: no warm-up) at a rate target its first encode misses:
    one or two λ corrections, 20 steps per encode. The input, the options and the uninterrupted run's bytes and
    report."""
    d = tmp_path_factory.mktemp("c3rate")
    rgb = _clip(4, 32, 32, seed=3)
    src = d / "clip.rgb"
    opts = dict(codec="c3", preset="c3-tiny-cool", overrides={"steps": 20}, device="cpu", raw=_raw(rgb, src),
                progress=False, segment_frames=2, target=Target("bpp", 2.5))
    report = api.encode_file(str(src), str(d / "ref.nvc"), **opts)
    return str(src), opts, (d / "ref.nvc").read_bytes(), report


@pytest.mark.parametrize("where", ["in-the-corrected-encode", "in-the-last-correction", "in-segment-1"])
def test_a_rate_corrected_encode_resumes_to_the_same_bytes(corrected, tmp_path, monkeypatch, where):
    """Stopped in the second (corrected) encode of the first segment: the resumed run keeps the first encode's
    size (seg00000.first.json) and does not redo it; stopped in a later segment: the corrections are replayed from
    what the first segment recorded, so that segment is coded at the corrected λ as in one run."""
    src, opts, ref, report = corrected
    first = report["segments"][0]
    assert "rate_correction" in first and first["correct_from"]["coded_bytes"] == first["rate_correction"][
        "replaced_bytes"] == [c["from_bytes"] for c in first["rate_correction"]["corrections"]]
    total = 20 * (len(report["segments"]) + len(first["rate_correction"]["corrections"]))  # 20 steps an encode
    corrections = len(first["rate_correction"]["corrections"])
    if where == "in-the-last-correction" and corrections < 2:
        pytest.skip("the fixture's encode needed one correction")
    n = {"in-the-corrected-encode": 30, "in-the-last-correction": 20 * corrections + 10}.get(where, total - 10)
    out = tmp_path / "out.nvc"
    _stop_at_check(monkeypatch, n)
    with pytest.raises(KeyboardInterrupt):
        api.encode_file(src, str(out), **opts, checkpoint_every=3600)
    partial = tmp_path / "out.nvc.nvc-partial"
    names = sorted(os.listdir(partial))
    in_segment_0 = where != "in-segment-1"
    if in_segment_0:
        assert "seg00000.first.json" in names and "seg00000.au" not in names
        replaced = json.loads((partial / "seg00000.first.json").read_text())["coded_bytes"]
        assert replaced == first["rate_correction"]["replaced_bytes"][: (n - 1) // 20]
    else:
        assert "seg00000.au" in names and "seg00000.first.json" not in names
    assert json.loads((partial / f"seg0000{int(not in_segment_0)}.step.json").read_text())["step"] == 10
    monkeypatch.undo()
    calls = _stop_at_check(monkeypatch, 10**9)
    api.encode_file(src, str(out), **opts, resume=True)
    assert out.read_bytes() == ref
    assert len(calls) == total - n  # only the steps left: no replaced encode and not segment 0 again
