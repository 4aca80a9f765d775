"""Interrupted encodes: nothing that looks valid is left, and --resume gives the same bytes as one run."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import interrupt_at_first_step
from media_factory import FFMPEG, run

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


def test_resume_after_prune_keeps_the_rate_decision_made_on_the_trained_network(media, tmp_path, monkeypatch):
    """HiNeRV's `aim` (after overfit) picks the pruning ratio on the trained network. Resumed at a saved prune
    stage, the pipeline loads the pruned state only after `aim` has run, so `aim` used to search again on the
    fresh model of the init stage (on this tiny clip it happens to code within 0.2 % of the trained one, so the
    ratio came out equal; a ratio of 0 on one side only moves the prune epochs into QAT, and trim searches from
    the ratio). It now applies the ratio recorded in the saved report: no search on any network the
    uninterrupted run did not search on, and the same config, report and payload."""
    from nvc_hinerv import ratecontrol
    from nvc_hinerv.codec import PRESETS, codec
    from nvc_pipe.checkpoint import Checkpoint
    from nvc_pipe.media.demux import open_video
    import nvc_pipe.stages.qat as qat

    preset = PRESETS["tiny"]
    searched = []
    search = ratecontrol._search_ratio

    def spy(model, *args, **kw):  # which network a ratio search looks at
        searched.append(sum(float(p.detach().double().abs().sum()) for p in model.parameters()))
        return search(model, *args, **kw)

    monkeypatch.setattr(ratecontrol, "_search_ratio", spy)

    def encode(store=None):
        with open_video(str(media["odd"])) as src:
            work = Work(next(src.segments(None)), src.info, preset, torch.device("cpu"), progress=False,
                        budget_bytes=2100)  # ~2/3 of what the unpruned network codes: aim prunes
        return run_stages(codec.stages(preset), work, store)

    ref = encode()
    assert ref.config.train.prune_ratio > 0.2 and searched
    in_ref, searched[:] = list(searched), []
    out = str(tmp_path / "o.nvc")
    real = qat.run

    def interrupted(work):
        raise KeyboardInterrupt

    monkeypatch.setattr(qat, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode(Checkpoint(out, {"k": 1}, resume=False, step_every=0))
    assert json.loads((tmp_path / "o.nvc.nvc-partial" / "seg00000.state.json").read_text())["stage"] == "prune"
    monkeypatch.setattr(qat, "run", real)
    searched[:] = []
    resumed = encode(Checkpoint(out, {"k": 1}, resume=True, step_every=0))
    assert all(s in in_ref for s in searched), "a ratio search on a network the one run never had"
    assert resumed.config == ref.config and resumed.report["rate"] == ref.report["rate"]
    assert resumed.payload == ref.payload


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
                             "--preset", "tiny", "--epochs", "100000", "--json", "--checkpoint-every", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = proc.stderr.readline()  # the plan, printed just before training (--json: no progress bar)
    assert first.startswith(b"nvc: plan:"), first
    time.sleep(0.5)  # into the first stage
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = first + err
    # interrupted inside the first stage with step checkpoints off: nothing was saved, so no --resume hint
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


def _encode(src, out, *extra):
    return [sys.executable, "-m", "nvc_pipe", "encode", str(src), "-o", str(out),
            "--preset", "tiny", "--epochs", "40", "--device", "cpu", "--quiet", *extra]


def test_sigint_inside_a_stage_resumes_to_the_same_bytes(tmp_path, one_thread, caplog):
    """A real `nvc encode` interrupted mid-stage (after a step checkpoint landed) resumes at that step, and the
    stream equals an uninterrupted run's byte for byte (that one and the resumed one in this process, not the one
    interrupted; one thread as the CLI runs)."""
    src = tmp_path / "src.mkv"
    r = run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=32x24:rate=25:duration=0.08", "-c:v", "ffv1",
             str(src)])
    assert r.returncode == 0, r.stderr
    ref = tmp_path / "ref.nvc"
    api.encode_file(str(src), str(ref), preset="tiny", overrides={"epochs": 40}, device="cpu", progress=False)
    out = tmp_path / "out.nvc"
    step = tmp_path / "out.nvc.nvc-partial" / "seg00000.step.json"
    meta = interrupt_at_first_step(_encode(src, out, "--checkpoint-every", "0.05s"), step)  # saved inside a stage
    assert not out.exists()
    assert meta["stage"] in ("overfit", "prune", "qat") and meta["step"] > 0
    with caplog.at_level("INFO", logger="nvc_pipe.checkpoint_step"):
        api.encode_file(str(src), str(out), preset="tiny", overrides={"epochs": 40}, device="cpu", progress=False,
                        resume=True)
    assert f"{meta['stage']} resumed at step {meta['step']}" in caplog.text
    assert out.read_bytes() == ref.read_bytes()
    assert not os.path.exists(str(out) + ".nvc-partial")


def _tiny_work(media, store):
    """A HiNeRV tiny segment after its patch and init stages (a fresh model, as a new process builds it)."""
    from nvc_hinerv.codec import PRESETS, codec
    from nvc_pipe.media.demux import open_video

    preset = PRESETS["tiny"]
    with open_video(str(media["odd"])) as src:
        work = Work(next(src.segments(None)), src.info, preset, torch.device("cpu"), progress=False)
    for stage in codec.stages(preset)[:2]:  # patch, init
        work = stage.run(work)
    work.checkpoint = store
    return work


def test_a_signal_inside_fit_saves_then_stops_and_resume_matches(media, tmp_path, one_thread):
    """In process: SIGINT during a step of `fit` lets the step finish, saves a step checkpoint, then stops; a
    fresh model resumed from it ends with the uninterrupted run's exact weights; another stage ignores it."""
    from nvc_pipe.checkpoint import Checkpoint
    from nvc_pipe.stages.overfit import fit

    lr = lambda step, spe: 1e-2  # noqa: E731
    ref = _tiny_work(media, None)
    fit(ref, stage="overfit", epochs=4, lr_at=lr)
    store = Checkpoint(str(tmp_path / "o.nvc"), {"k": 1}, resume=False, step_every=3600)  # only on the signal
    work = _tiny_work(media, store)
    steps = []

    def interrupt_at_5():
        steps.append(1)
        if len(steps) == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit(work, stage="overfit", epochs=4, lr_at=lr, after_step=interrupt_at_5)
    assert len(steps) == 5 and store.step_state(0)[0]["step"] == 5
    other = _tiny_work(media, store)
    assert len(fit(other, stage="prune", epochs=1, lr_at=lr)) == 1  # not its checkpoint: starts over
    resumed = _tiny_work(media, store)
    assert [h["epoch"] for h in fit(resumed, stage="overfit", epochs=4, lr_at=lr)] == [1, 2, 3, 4]
    for (name, p), q in zip(ref.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(p, q), name


def test_checkpoint_every_option(capsys):
    from nvc_pipe import cli

    parse = cli.build_parser().parse_args
    assert parse(["encode", "i.mp4", "-o", "o.mkv"]).checkpoint_every is None  # api default: 5 minutes
    assert parse(["encode", "i.mp4", "-o", "o.mkv", "--checkpoint-every", "2m"]).checkpoint_every == 120
    assert parse(["encode", "i.mp4", "-o", "o.mkv", "--checkpoint-every", "0"]).checkpoint_every == 0
    with pytest.raises(SystemExit) as exc:
        parse(["encode", "i.mp4", "-o", "o.mkv", "--checkpoint-every", "soon"])
    assert exc.value.code == 2 and "expected a duration such as 30s or 5m" in capsys.readouterr().err


@pytest.mark.parametrize("codec, preset", [("hinerv", "tiny"), ("c3", "c3-tiny-cool")])
@pytest.mark.parametrize("when", ["before-training", "training", "training-no-checkpoints"])
def test_the_resume_hint_only_when_there_is_something_to_resume(media, tmp_path, monkeypatch, capsys, one_thread,
                                                                 codec, preset, when):
    """A real SIGINT to `nvc encode` (in this process): in the first stage, before any training, nothing is saved
    and the message has no --resume hint (no folder left); inside training with step checkpoints the step in
    progress is saved and the hint is given; with `--checkpoint-every 0` nothing is saved and there is no hint."""
    from nvc_pipe import cli
    import nvc_pipe.stages.patch as patch

    def kill_after(obj, name, n):
        real, calls = getattr(obj, name), []

        def wrapper(*a, **k):
            calls.append(1)
            out = real(*a, **k)
            if len(calls) == n:
                os.kill(os.getpid(), signal.SIGINT)
            return out
        monkeypatch.setattr(obj, name, wrapper)

    if when == "before-training":
        kill_after(patch, "run", 1)
    elif codec == "c3":  # the Cool-Chic-like presets train with SOAP (Adam on the latents inside it)
        from nvc_c3.soap import Soap

        kill_after(Soap, "step", 3)
    else:
        kill_after(torch.optim.Adam, "step", 3)
    out = tmp_path / "o.mkv"
    args = ["encode", str(media["odd"]), "-o", str(out), "--codec", codec, "--preset", preset, "--device", "cpu",
            "--quiet"] + (["--checkpoint-every", "0"] if when == "training-no-checkpoints" else [])
    term = signal.getsignal(signal.SIGTERM)  # cli.main sets its own: put it back afterwards
    try:
        code = cli.main(args)
    finally:
        signal.signal(signal.SIGTERM, term)
    err = capsys.readouterr().err.strip()
    assert code == 130 and not out.exists(), err
    partial = tmp_path / "o.mkv.nvc-partial"
    if when == "training":
        assert err.endswith("interrupted (continue with --resume)"), err
        assert (partial / "seg00000.step.npz").exists()
    else:
        assert err.endswith(": interrupted"), err
        assert not partial.exists()


def test_ctrl_c_while_the_command_starts_is_one_line(monkeypatch, capsys):
    """SIGINT while `nvc` still imports its subcommands (build_parser loads torch: seconds on a loaded box) gave
    a Python traceback; it is one line and exit 130, like any other interrupt."""
    from nvc_pipe import cli

    def slow_start():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # (the signal lands here)
        raise AssertionError("not interrupted")

    monkeypatch.setattr(cli, "build_parser", slow_start)
    term = signal.getsignal(signal.SIGTERM)
    try:
        code = cli.main(["encode", "in.mp4", "-o", "o.mkv"])
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped nvc's main (a traceback)")
    finally:
        signal.signal(signal.SIGTERM, term)
    assert code == 130 and capsys.readouterr().err == "nvc: interrupted\n"


def test_a_step_checkpoint_is_used_only_by_its_stage_shape_and_format(tmp_path):
    """save_state/load_state round trip; another stage, loop shape or file format (an older nvc-pipe's) is refused
    (the stage starts over) rather than loaded into the wrong places."""
    from nvc_pipe.checkpoint import Checkpoint
    from nvc_pipe.checkpoint_step import StepCheckpoint

    store = Checkpoint(str(tmp_path / "o.nvc"), {"k": 1}, resume=False, step_every=60)
    saver = StepCheckpoint(store, 0, "overfit", {"boxes": [(0, 0, 4)]})
    gen = torch.Generator().manual_seed(5)
    saver.save_state(3, {"where": "here"}, {"net": {"w": torch.arange(4.0)}}, generators={"g": gen})
    expected = torch.rand(3, generator=gen)
    saved = StepCheckpoint(store, 0, "overfit", {"boxes": [[0, 0, 4]]}).load_state()  # tuples read back as lists
    assert saved.meta["where"] == "here" and torch.equal(saved.tensors("net")["w"], torch.arange(4.0))
    other = torch.Generator()
    saved.load_generator("g", other)
    assert torch.equal(torch.rand(3, generator=other), expected)
    assert StepCheckpoint(store, 0, "prune", {"boxes": [[0, 0, 4]]}).load_state() is None
    assert StepCheckpoint(store, 0, "overfit", {"boxes": [[0, 0, 5]]}).load_state() is None
    meta, arrays = store.step_state(0)
    del meta["format"]
    store.save_step(0, meta, arrays)
    assert saver.load_state() is None
