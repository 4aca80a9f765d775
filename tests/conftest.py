"""Shared fixtures: small real media made with PyAV (and the real ffmpeg), and a runner for the `nvc` CLI.

Under pytest-xdist (`make test` runs `-n 2`) every worker, and every process a test starts, uses one torch/OpenMP
thread: the workers already fill the cores, more threads only thrash (see `one_thread`); and SIGINT is back to
Python's default in the workers (they start with it ignored), so Ctrl-C tests see what a terminal user sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):  # set before torch is imported here or in a child process
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        # xdist workers start with SIGINT ignored, and a process started with SIGINT ignored keeps it ignored (as
        # nohup'd jobs do; checkpoint_step honours that). Ctrl-C tests need what a terminal gives: the default.
        import signal

        signal.signal(signal.SIGINT, signal.default_int_handler)


def moving_pattern(n: int, w: int, h: int, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8: smooth gradients with a moving square, learnable by a tiny INR."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        r = 128 + 100 * np.sin(xx / max(w, 1) * 3 + t * 0.3)
        g = 128 + 100 * np.cos(yy / max(h, 1) * 2 - t * 0.2)
        b = np.full_like(r, 90.0)
        x0 = (t * 3) % max(w - 8, 1)
        b[h // 4 : h // 4 + 8, x0 : x0 + 8] = 230
        img = np.stack([r, g, b], -1) + rng.normal(0, 2, (h, w, 3))
        frames.append(img.clip(0, 255).astype(np.uint8))
    return np.stack(frames)


def write_video(path: Path, w: int, h: int, n: int, *, pix_fmt: str = "yuv420p", codec: str = "libx264",
                fps: int = 25, audio: bool = False, options: dict | None = None) -> Path:
    frames = moving_pattern(n, w, h)
    with av.open(str(path), "w") as oc:
        vs = oc.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        vs.options = options or ({"crf": "10", "preset": "ultrafast"} if codec == "libx264" else {})
        aus = None
        if audio:
            aus = oc.add_stream("aac", rate=48000)
            aus.layout = "stereo"
        for i, img in enumerate(frames):
            fmt = "rgb24" if pix_fmt.startswith(("yuv", "gbr", "rgb")) and "10" not in pix_fmt else "rgb48le"
            data = img if fmt == "rgb24" else img.astype(np.uint16) * 257
            frame = av.VideoFrame.from_ndarray(data, format=fmt).reformat(format=pix_fmt)
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for pkt in vs.encode(frame):
                oc.mux(pkt)
        for pkt in vs.encode(None):
            oc.mux(pkt)
        if aus is not None:
            samples = int(48000 * n / fps)
            t = np.arange(samples) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            pcm = np.stack([tone, tone])
            for start in range(0, samples, 1024):
                chunk = np.ascontiguousarray(pcm[:, start : start + 1024])
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
                af.sample_rate = 48000
                af.pts = start
                for pkt in aus.encode(af):
                    oc.mux(pkt)
            for pkt in aus.encode(None):
                oc.mux(pkt)
    return path


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    """Small real inputs, built once per test session."""
    d = tmp_path_factory.mktemp("media")
    return {
        "qcif": write_video(d / "qcif.mp4", 176, 144, 3),
        "odd": write_video(d / "odd.mkv", 97, 55, 4, codec="ffv1"),
        "ten_bit": write_video(d / "ten_bit.mkv", 48, 32, 4, pix_fmt="yuv420p10le", codec="ffv1"),
        "audio": write_video(d / "audio.mp4", 64, 48, 8, audio=True),
    }


class CliResult:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.returncode, self.stdout, self.stderr = proc.returncode, proc.stdout, proc.stderr

    def json(self) -> dict:
        return json.loads(self.stdout)


def run_nvc(*args: str, stdin: bytes | None = None, timeout: float = 300) -> CliResult:
    """Run the real `nvc` command in a fresh Python process."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "nvc_pipe", *args], input=stdin, capture_output=True,
                          timeout=timeout, env=env, cwd=ROOT)
    return CliResult(proc)


def run_nvc_each(*commands: tuple[str, ...], timeout: float = 300) -> list[CliResult]:
    """Run several `nvc` command lines, each in its own process forked from one interpreter that has imported nvc
    (tests/forked_cli.py): exit code, stdout and stderr of each as `run_nvc` gives them, one interpreter start for
    all. Meant for commands refused or failing early; what an import writes to stderr shows in every result."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "forked_cli.py")], capture_output=True, env=env,
                          cwd=ROOT, timeout=timeout, input=json.dumps([list(c) for c in commands]).encode())
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return [CliResult(subprocess.CompletedProcess(c, r["returncode"], r["stdout"].encode("latin-1"),
                                                  proc.stderr + r["stderr"].encode("latin-1")))
            for c, r in zip(commands, json.loads(proc.stdout))]


@pytest.fixture
def nvc():
    return run_nvc


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions on 2 shared cores: torch's thread pool thrashes under load (measured 15x slower)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def interrupt_at_first_step(cmd: list[str], step: Path) -> dict:
    """Run an `nvc encode` command line, Ctrl-C it as soon as its first step checkpoint (`step`, the .step.json)
    lands, check it stopped as a user sees it (exit 130, the --resume hint) and return that checkpoint's meta.
    The encode runs niced 15 below the watcher, so the signal lands long before the encode could end."""
    import signal
    import time

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, env=env, preexec_fn=lambda: os.nice(15))
    deadline = time.monotonic() + 120
    while not step.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and err.decode().strip().endswith("interrupted (continue with --resume)"), err
    return json.loads(step.read_text())

