"""The training loop's GPU-facing behaviour, checked on CPU: torch.compile graphs, the eager fallback, OOM restarts.

torch.compile runs for real (TorchDynamo traces, guards and caches the graphs) but with a backend that records
each graph and runs it eagerly: Inductor's code generation takes minutes on 2 CPU cores.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nvc_pipe.errors import ConfigError
from nvc_pipe.media.demux import open_video
from nvc_pipe.pipeline import Stage, Work, run_stages
from nvc_pipe.plugins import load_codec
from nvc_pipe.stages import overfit

PATCHES = dict(patch_size=(8, 8), batch_size=64, epochs=2, prune_epochs=1, qat_epochs=1, eval_every=1)


def _work(media, **train) -> tuple[Work, list[Stage]]:
    """A `tiny` HiNeRV encode of the 97x55x4 clip, after its patch and init stages; the training stages."""
    codec = load_codec("hinerv")
    preset = codec.presets["tiny"]
    preset = dataclasses.replace(preset, train=dataclasses.replace(preset.train, **train))
    with open_video(str(media["odd"])) as src:
        work = Work(next(src.segments(None)), src.info, preset, torch.device("cpu"), progress=False)
    stages = {s.name: s for s in codec.stages(preset)}
    run_stages([stages["patch"], stages["init"]], work)
    return work, [stages[n] for n in ("overfit", "prune", "qat")]


@pytest.fixture
def graphs(monkeypatch):
    """The graphs torch.compile builds: the shapes of each one's tensor inputs."""
    seen: list[tuple] = []

    def backend(gm, example_inputs):
        seen.append(tuple(x.shape for x in example_inputs if isinstance(x, torch.Tensor)))
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(overfit, "COMPILE_BACKEND", backend)
    yield seen
    torch._dynamo.reset()


def test_compile_builds_one_graph_per_stage_and_trains_like_eager(media, graphs):
    work, stages = _work(media, compile="on", **PATCHES)
    counts = {}
    for stage in stages:
        run_stages([stage], work)
        counts[stage.name] = len(graphs)
    # a forward and a loss graph, both reused by pruning (same module, same shapes); evaluation (frame mode, every
    # epoch) eager; QAT's forward (noised weights through functional_call) is one more graph
    assert counts == {"overfit": 2, "prune": 2, "qat": 3}
    assert "warnings" not in work.report
    eager, stages = _work(media, compile="off", **PATCHES)
    run_stages(stages, eager)
    assert len(graphs) == 3
    assert [h["loss"] for h in work.report["history"]] == [h["loss"] for h in eager.report["history"]]
    for a, b in zip(work.model.state_dict().values(), eager.model.state_dict().values()):
        assert torch.equal(a, b)


def test_compile_cuda_mode_stays_eager_on_cpu(media, graphs):
    work, stages = _work(media, compile="cuda", **PATCHES)
    run_stages(stages[:1], work)
    assert graphs == []
    assert overfit.wants_compile(work.config.train, torch.device("cuda"))
    assert not overfit.wants_compile(dataclasses.replace(work.config.train, compile="off"), torch.device("cuda"))
    with pytest.raises(ConfigError, match="compile must be one of off, cuda, on"):
        overfit.wants_compile(dataclasses.replace(work.config.train, compile="yes"), torch.device("cpu"))


def test_paper_presets_compile_on_cuda_only():
    presets = load_codec("hinerv").presets
    assert {n for n, p in presets.items() if p.train.compile == "cuda"} == {
        "bunny-xxs", "bunny-xs", "bunny-s", "uvg-s", "uvg-m", "uvg-l"}
    assert all(p.train.compile == "off" for n, p in presets.items() if not n.startswith(("bunny", "uvg")))


def test_failed_compile_trains_eager_with_a_warning(media, monkeypatch):
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    torch._dynamo.reset()
    monkeypatch.setattr(overfit, "COMPILE_BACKEND", broken)
    try:
        work, stages = _work(media, compile="on", **PATCHES)
        run_stages(stages[:1], work)
    finally:
        torch._dynamo.reset()
    eager, stages = _work(media, compile="off", **PATCHES)
    run_stages(stages[:1], eager)
    assert len(work.report["warnings"]) == 1 and "torch.compile failed" in work.report["warnings"][0]
    assert [h["loss"] for h in work.report["history"]] == [h["loss"] for h in eager.report["history"]]


def test_oom_restarts_the_stage_from_its_initial_weights(media):
    """An OOM half-way through training must not leave the retry on half-trained weights: the result equals a run
    that used the smaller batch from the start."""
    work, stages = _work(media, epochs=2, batch_size=2)
    calls = []

    def flaky(w: Work) -> Work:
        calls.append(w.config.train.batch_size)
        if len(calls) == 1:
            def oom_after_two_steps(n=[0]):
                n[0] += 1
                if n[0] == 2:
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")
            overfit.fit(w, stage="overfit", epochs=2, lr_at=lambda s, n: 1e-2, after_step=oom_after_two_steps)
        return stages[0].run(w)

    from nvc_hinerv.codec import codec

    run_stages([Stage("overfit", flaky, checkpoint=True)], work, shrink=codec.shrink)
    direct, stages_b = _work(media, epochs=2, batch_size=1)
    run_stages(stages_b[:1], direct)
    assert calls == [2, 1]
    assert work.report["warnings"] == ["overfit: out of GPU memory, stage restarted with a lighter configuration"]
    assert [h["epoch"] for h in work.report["history"]] == [1, 2]  # the failed attempt's history is gone
    assert work.report["history"] == direct.report["history"]
    for a, b in zip(work.model.state_dict().values(), direct.model.state_dict().values()):
        assert torch.equal(a, b)
