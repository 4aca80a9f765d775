"""Segment jobs and RD points on Ray (`--executor ray`): the same bytes and reports as a local run, a worker that
dies mid-task, a driver killed and resumed. One local Ray with 2 CPUs serves the whole module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from nvc_pipe import api, cli
from nvc_pipe.jobs import EXIT_ONCE_ENV

# the 4-frame clip in 4 segments, few steps: what is tested is where the jobs run, not what they learn
ENCODE = dict(preset="tiny", segment_frames=1, progress=False, overrides={"steps": 8})
ENCODE_ARGS = ["--preset", "tiny", "--segment-frames", "1", "--steps", "8"]

pytestmark = pytest.mark.xdist_group("ray")  # one Ray cluster: under pytest-xdist the module stays on one worker


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray (2 CPUs) for the module. Its workers start with the worker-exit hook set but disarmed (the
    marker file exists): a test arms it by removing the file, so no new workers (seconds each) are needed."""
    ray = pytest.importorskip("ray", reason="Ray is the optional extra nvc-pipe[ray] (make install has it)")
    marker = tmp_path_factory.mktemp("hook") / "worker-exited"
    marker.touch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(EXIT_ONCE_ENV, str(marker))
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
        yield ray.get_runtime_context().gcs_address, marker
        ray.shutdown()


@pytest.fixture(scope="module")
def local_bytes(media, tmp_path_factory, one_thread):
    """The reference: a 4-segment encode in this process, one thread (as each Ray worker runs)."""
    out = tmp_path_factory.mktemp("local") / "local.nvc"
    report = api.encode_file(str(media["odd"]), str(out), **ENCODE)
    assert len(report["segments"]) == 4
    return out.read_bytes()


def test_ray_gives_the_local_bytes(media, tmp_path, ray_cluster, local_bytes):
    out = tmp_path / "ray.nvc"
    report = api.encode_file(str(media["odd"]), str(out), executor="ray", **ENCODE)
    assert out.read_bytes() == local_bytes
    assert [s["index"] for s in report["segments"]] == [0, 1, 2, 3]
    assert not os.path.exists(str(out) + ".nvc-partial")


def test_a_worker_that_dies_mid_task_is_retried(media, tmp_path, ray_cluster, local_bytes):
    _, marker = ray_cluster
    marker.unlink()  # armed: the first job to start ends its worker process with os._exit
    out = tmp_path / "retried.nvc"
    api.encode_file(str(media["odd"]), str(out), executor="ray", **ENCODE)
    assert marker.exists(), "the fault hook never fired: no worker died"
    assert out.read_bytes() == local_bytes


def test_driver_killed_then_resume(media, tmp_path, ray_cluster, local_bytes):
    out = tmp_path / "killed.nvc"
    partial = tmp_path / "killed.nvc.nvc-partial"
    cmd = [sys.executable, "-m", "nvc_pipe", "encode", str(media["odd"]), "-o", str(out), *ENCODE_ARGS,
           "--executor", "ray", "--ray-address", ray_cluster[0], "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not list(partial.glob("seg*.au")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, err.decode()
    landed = sorted(p.name for p in partial.glob("seg*.au"))
    assert landed and len(landed) < 4, landed  # killed with work done and work left
    assert not out.exists()
    api.encode_file(str(media["odd"]), str(out), executor="ray", resume=True, **ENCODE)
    assert out.read_bytes() == local_bytes and not partial.exists()


def test_ctrl_c_cancels_the_tasks_and_leaves_no_output(media, tmp_path, ray_cluster):
    import ray

    out = tmp_path / "stopped.nvc"

    def on_plan(plan):
        def tick(n):  # on Ray the driver ticks when a segment lands: Ctrl-C right after the first one
            raise KeyboardInterrupt
        return tick

    with pytest.raises(KeyboardInterrupt):
        api.encode_file(str(media["odd"]), str(out), executor="ray", on_plan=on_plan, **ENCODE)
    assert not out.exists()
    assert len(list((tmp_path / "stopped.nvc.nvc-partial").glob("seg*.au"))) <= 1
    deadline = time.monotonic() + 60  # the cancelled tasks give their CPUs back
    while ray.available_resources().get("CPU", 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.available_resources().get("CPU", 0) == 2


def test_eval_on_ray_gives_the_local_report_and_shares_the_cache(tmp_path, ray_cluster):
    from nvc_pipe.eval import cli as eval_cli
    from nvc_pipe.eval.datasets import write_synthetic_dataset

    root = tmp_path / "UVG"
    write_synthetic_dataset("uvg", root, frames=2, sequences=["Beauty"])  # as tests/eval: 1080p, 2 frames
    common = ["--dataset", "uvg", "--root", str(root), "--sequences", "Beauty", "--codecs", "x264:medium",
              "--crf", "22,30,37", "--frames", "2", "--crop", "64x64", "--no-plots", "--quiet"]
    assert eval_cli.main([*common, "--out", str(tmp_path / "local")]) == 0
    assert eval_cli.main([*common, "--out", str(tmp_path / "ray"), "--executor", "ray"]) == 0
    local, ray = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("local", "ray"))
    assert _comparable(ray) == _comparable(local)
    assert len(ray["points"]) == 3 and not (tmp_path / "ray" / "tmp").exists()

    # the Ray run's cache serves a local run (and the other way round): nothing is computed again
    from nvc_pipe.eval.runner import run_eval

    parser = cli.build_parser()
    res = run_eval(eval_cli.config_from_args(parser.parse_args(["eval", *common, "--out", str(tmp_path / "ray")])))
    assert (res.computed, res.cached) == (0, 3)
    res = run_eval(eval_cli.config_from_args(parser.parse_args(
        ["eval", *common, "--out", str(tmp_path / "local"), "--executor", "ray"])))
    assert (res.computed, res.cached) == (0, 3)


_RUN_DEPENDENT = {"encode_s", "decode_s", "date", "command", "stream", "created", "out", "output", "paths"}


def _comparable(value):
    """A report without what differs between any two runs (times, dates, output paths)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k not in _RUN_DEPENDENT}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


def test_executor_ray_without_ray_says_how_to_install(media, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as it does without the extra
    out = tmp_path / "o.nvc"
    code = cli.main(["encode", str(media["odd"]), "-o", str(out), "--preset", "tiny", "--executor", "ray"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "pip install 'nvc-pipe[ray]'" in err[0], err
    assert not out.exists() and os.listdir(tmp_path) == []


def test_an_unreachable_ray_address_is_refused_in_seconds():
    from nvc_pipe.errors import ConfigError
    from nvc_pipe.executors import check_reachable

    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        check_reachable("127.0.0.1:1")  # nothing listens on port 1: refused (ray.init would retry for minutes)
    assert time.monotonic() - t0 < 10
    check_reachable("local")  # not a host:port: left to Ray
