"""Interrupted encodes: nothing that looks valid is left, and --resume gives the same bytes as one run."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nvc_pipe import api
from nvc_pipe.pipeline import Stage, Work, run_stages


def test_resume_after_stage_and_segment_checkpoints(media, tmp_path, monkeypatch):
    src = str(media["odd"])
    ref = tmp_path / "ref.nvc"
    opts = dict(preset="tiny", segment_frames=2, progress=False)
    api.encode_file(src, str(ref), **opts)
    assert not os.path.exists(str(ref) + ".nvc-partial")

    # Interrupt the second segment right after its prune stage has been checkpointed.
    out = tmp_path / "out.nvc"
    import nvc_pipe.stages.qat as qat

    real_qat = qat.run
    calls = {"n": 0}

    def flaky_qat(work):
        calls["n"] += 1
        if work.segment.index == 1:
            raise KeyboardInterrupt
        return real_qat(work)

    monkeypatch.setattr(qat, "run", flaky_qat)
    with pytest.raises(KeyboardInterrupt):
        api.encode_file(src, str(out), **opts)
    assert not out.exists()
    partial = str(out) + ".nvc-partial"
    assert sorted(os.listdir(partial)) == ["key.json", "seg00000.au", "seg00000.json", "seg00001.state.json",
                                           "seg00001.state.npz"]
    monkeypatch.setattr(qat, "run", real_qat)
    report = api.encode_file(src, str(out), resume=True, **opts)
    assert out.read_bytes() == ref.read_bytes()
    assert report["frames"] == 4 and not os.path.exists(partial)


def test_resume_refuses_other_settings(media, tmp_path):
    out = tmp_path / "o.nvc"
    os.makedirs(str(out) + ".nvc-partial")
    (tmp_path / "o.nvc.nvc-partial" / "key.json").write_text("{}")
    from nvc_pipe.errors import ConfigError

    with pytest.raises(ConfigError, match="other input or settings"):
        api.encode_file(str(media["odd"]), str(out), preset="tiny", resume=True, progress=False)


def test_sigterm_leaves_no_output(media, tmp_path):
    out = tmp_path / "t.mkv"
    proc = subprocess.Popen([sys.executable, "-m", "nvc_pipe", "encode", str(media["qcif"]), "-o", str(out),
                             "--preset", "tiny", "--epochs", "100000", "--quiet"], stderr=subprocess.PIPE)
    time.sleep(6)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    # interrupted inside the first stage: nothing was saved, so no --resume hint (it would find nothing)
    assert proc.returncode == 130 and err.decode().strip().endswith("interrupted"), err
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def test_cuda_oom_halves_the_batch(media):
    from nvc_hinerv.codec import PRESETS, codec
    from nvc_pipe.media.demux import open_video

    seen = []

    def stage(work):
        seen.append(work.config.train.batch_size)
        if len(seen) < 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return work

    preset = dataclasses.replace(PRESETS["fast"], train=dataclasses.replace(PRESETS["fast"].train, batch_size=4))
    with open_video(str(media["odd"])) as src:
        seg = next(src.segments(None))
        work = Work(seg, src.info, preset, torch.device("cpu"), progress=False)
    work = run_stages([Stage("overfit", stage)], work, shrink=codec.shrink)
    assert seen == [4, 2, 1] and len(work.report["warnings"]) == 2
