#!/usr/bin/env python3
"""One-command GPU check of nvc-pipe: at most 8 minutes on one H200, one table on stdout, JSON in $OUT.

    (a) hinerv  GPU encode through the CLI (bunny-xxs on Bunny 1280x720x132, short schedule), then `nvc decode`
                on the GPU and in a CPU-only process: max sample difference, fraction of samples that differ, PSNR
    (b) c3      the same for C3 on a crop (c3-fast, short schedule); the CPU decode checks every latent CRC, and
                the frames' CRC is compared with the encoder's `frames_crc32`
    (c) train   bunny-xxs training frames/s, eager vs torch.compile (reference 29.45 on an H100; target 300), and
                PSNR / MS-SSIM after 30 epochs of the official schedule (reference 30.07 dB / 0.9545)
    (d) decode  decoder frames/s at 720p on the model trained in (c): fp32 (as `nvc decode` runs) and bf16

They run in the order c, d, a, b: (c) and (d) measure the targets, and the graph (c) compiles is the one (a)'s
encode needs (Inductor's on-disk cache). Each phase is guarded (a failure prints a FAIL row, the next phase runs);
a global budget (`--budget-s`, default 450 s) stops the quality run early so that (d), (a) and (b) keep
`--reserve-s` (its row says at which epoch), and skips phases that no longer fit. The encodes and decodes run the
real CLI (`python -m nvc_pipe ...`) as subprocesses; (c) and (d) use `nvc_pipe.bench`.
`--smoke` runs the same code on the CPU with tiny sizes (tests/test_gpu_check.py runs it).

On the GPU machine (no package index, no `make`), from the project root, with the wheels of
`bash ../shared/tools/gpu-prep.sh` carried in .whl/ (docs/perf.md, "GPU", has the exact device command):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD:$PWD/plugins python3 benchmarks/gpu_check.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "plugins", ROOT):  # the tree itself, whether or not it is pip-installed
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

try:  # one line, not a traceback, when the GPU machine lacks a wheel
    import av
    import constriction  # noqa: F401
    import numpy as np
    import torch
    import tqdm  # noqa: F401

    from nvc_pipe import bench
    from nvc_pipe.media.demux import open_video
    from nvc_pipe.media.sink import open_sink
    from nvc_pipe.metrics import frame_psnr
    from nvc_pipe.plugins import available_codecs, load_codec
    from nvc_pipe.stages import overfit
except ModuleNotFoundError as exc:
    print(f"gpu_check: Python module {exc.name!r} is missing (on the GPU machine: install the .whl wheels into "
          "/tmp/site and put it first on PYTHONPATH, docs/perf.md 'The device command')", file=sys.stderr)
    raise SystemExit(2) from None

T0 = time.perf_counter()
ROWS: list[dict] = []
REF_FPS, REF_PSNR, REF_SSIM, TARGET_FPS = 29.45, 30.07, 0.9545, 300.0  # shared/reference/anchors_measured.md

GPU = dict(clip=None, preset="bunny-xxs", rt_frames=132, rt_epochs=6, c3_preset="c3-fast", c3_frames=16,
           c3_crop=(144, 192), c3_epochs=100, eager_epochs=3, epochs=30, crop=None, frames=None)
SMOKE = dict(clip=str(ROOT / "samples" / "bunny_256x144.mp4"), preset="tiny", rt_frames=6, rt_epochs=1,
             c3_preset="c3-tiny", c3_frames=4, c3_crop=(32, 48), c3_epochs=10, eager_epochs=2, epochs=2,
             crop=(64, 64), frames=6)


def elapsed() -> float:
    return time.perf_counter() - T0


def row(phase: str, check: str, result: str, detail: str = "", **values) -> None:
    ROWS.append({"phase": phase, "check": check, "result": result, "detail": detail, "t_s": round(elapsed(), 1),
                 **values})
    print(f"| {elapsed():4.0f} | {phase} | {check} | {result} | {detail} |", flush=True)


def guarded(phase: str):
    def wrap(fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # one table whatever breaks: FAIL row, traceback on stderr, next phase
                row(phase, "phase", "FAIL", f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                traceback.print_exc(limit=6)
            finally:
                print(f"#   phase {phase}: {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
        return run
    return wrap


class Ctx:
    """What the phases share: options, device, scratch folder, the source clip and the (c)-trained work."""

    def __init__(self, args, device: torch.device, tmp: Path):
        self.args, self.device, self.tmp = args, device, tmp
        self.deadline = T0 + args.budget_s
        self.env = dict(os.environ, PYTHONUNBUFFERED="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), str(ROOT / "plugins"),
                                                                 os.environ.get("PYTHONPATH")])))
        threads = str(1 if args.smoke else max(1, (os.cpu_count() or 2) // 2))
        self.cpu_env = dict(self.env, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=threads)
        self.segment = self.info = self.trained = None
        self.procs: list[subprocess.Popen] = []

    def left(self) -> float:
        return self.deadline - time.perf_counter()


def nvc(ctx: Ctx, *args: str, cpu_only: bool = False, background: bool = False):
    """`python -m nvc_pipe ARGS --json` in its own process; its JSON report (or the running process).

    stderr goes to a file, so a chatty child never blocks on a full pipe while it runs in the background."""
    cmd = [sys.executable, "-m", "nvc_pipe", *args, "--json"]
    err = open(ctx.tmp / f"stderr-{len(ctx.procs)}.txt", "w+")
    proc = subprocess.Popen(cmd, env=ctx.cpu_env if cpu_only else ctx.env, stdout=subprocess.PIPE, stderr=err,
                            text=True, cwd=ctx.tmp)
    proc.err_file = err
    ctx.procs.append(proc)
    return proc if background else report_of(proc, max(60.0, ctx.left()))


def report_of(proc: subprocess.Popen, timeout: float) -> dict:
    what = " ".join(proc.args[3:5])
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"{what} ran past the budget") from None
    if proc.returncode:
        proc.err_file.seek(0)
        last = (proc.err_file.read().strip().splitlines() or ["(no stderr)"])[-1]
        raise RuntimeError(f"{what} exited {proc.returncode}: {last}")
    return json.loads(out)


def write_y4m(path: Path, rgb: np.ndarray, info, pts) -> None:
    info = dataclasses.replace(info, height=rgb.shape[1], width=rgb.shape[2])
    with open_sink(str(path), info) as sink:
        for frame, p in zip(rgb, pts):
            sink.write(np.ascontiguousarray(frame), int(p))


def frames_of(ctx: Ctx, clip: str) -> np.ndarray:
    """The RGB frames the encoder reads from `clip` (a y4m we wrote went through YUV 4:2:0: read it back)."""
    if clip == ctx.args.clip:
        return ctx.segment.rgb
    with open_video(clip) as src:
        return next(src.segments(None)).rgb


def read_rgb(path: Path, like: np.ndarray) -> np.ndarray:
    """Frames `nvc decode -o X.rgb` wrote (packed rgb24), shaped like the source."""
    return np.fromfile(path, dtype=np.uint8).reshape(like.shape)


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "n/a" if value is None else format(value, spec)


def mean_psnr(frames: np.ndarray, source: np.ndarray) -> float:
    return float(np.mean([frame_psnr(a, b, 255) for a, b in zip(frames, source)]))


def compare(phase: str, gpu: np.ndarray, cpu: np.ndarray, source: np.ndarray, reported: float | None) -> None:
    diff = np.abs(gpu.astype(np.int16) - cpu.astype(np.int16))
    p_gpu, p_cpu = mean_psnr(gpu, source), mean_psnr(cpu, source)
    ok = int(diff.max()) <= 2 and abs(p_gpu - p_cpu) < 0.01
    row(phase, "gpu vs cpu decode", "ok" if ok else "MISMATCH",
        f"max |gpu-cpu| {int(diff.max())} LSB, {100 * float((diff > 0).mean()):.4f} % of samples differ; PSNR gpu "
        f"{p_gpu:.4f} / cpu {p_cpu:.4f} dB", max_diff=int(diff.max()), differ_frac=float((diff > 0).mean()),
        psnr_gpu=p_gpu, psnr_cpu=p_cpu)
    if reported is not None:
        same = round(p_gpu, 4) == round(reported, 4)
        row(phase, "encode report = gpu decode", "ok" if same else "DIFFERS",
            f"encoder reported {reported:.4f} dB, `nvc decode` on the same device gives {p_gpu:.4f} dB",
            psnr_reported=reported)


def source_clip(ctx: Ctx) -> tuple[str, np.ndarray]:
    """The HiNeRV input of (a) and (c): Bunny as shipped, or (smoke) a y4m of its first frames, cropped."""
    a = ctx.args
    if a.crop is None and a.frames is None:
        return a.clip, ctx.segment.rgb
    rgb = ctx.segment.rgb[: a.frames, : a.crop[0], : a.crop[1]]
    path = ctx.tmp / "hinerv_in.y4m"
    write_y4m(path, rgb, ctx.info, ctx.segment.pts)
    return str(path), rgb


@guarded("a")
def phase_a(ctx: Ctx):
    a, dev = ctx.args, ctx.device.type
    clip, source = source_clip(ctx)
    if a.rt_frames < source.shape[0]:
        source = source[: a.rt_frames]
        clip = str(ctx.tmp / "hinerv_rt.y4m")
        write_y4m(Path(clip), source, ctx.info, ctx.segment.pts)
    source = frames_of(ctx, clip)
    out = ctx.tmp / "h.mkv"
    enc = nvc(ctx, "encode", clip, "-o", str(out), "--preset", a.preset, "--epochs", str(a.rt_epochs), "--device",
              dev, "--quiet", "-y")
    seg = enc["segments"][0]
    row("a", "hinerv encode (CLI)", "ok",
        f"{a.preset} {source.shape[0]}x{source.shape[2]}x{source.shape[1]}, --epochs {a.rt_epochs}: {enc['time_s']} s "
        f"(stages {seg.get('time_s')}), {enc['psnr_rgb']} dB, {enc['bpp']} bpp; warnings {seg.get('warnings', [])}",
        encode_s=enc["time_s"], stage_s=seg.get("time_s"), bpp=enc["bpp"])
    cpu = nvc(ctx, "decode", str(out), "-o", str(ctx.tmp / "h_cpu.rgb"), "--device", "cpu", "-y", cpu_only=True,
              background=True)
    gpu = nvc(ctx, "decode", str(out), "-o", str(ctx.tmp / "h_gpu.rgb"), "--device", dev, "-y")
    row("a", "hinerv decode (CLI, gpu)", "ok", f"{gpu['fps']} frames/s end to end (model rebuild, rendering, "
        f"writing .rgb)", decode_fps=gpu["fps"])

    @guarded("a")
    def finish():  # joined after (b): the CPU decode overlaps (b)'s encode
        rep = report_of(cpu, max(60.0, ctx.left()))
        row("a", "hinerv decode (CLI, CPU-only process)", "ok", f"{rep['fps']} frames/s", cpu_decode_fps=rep["fps"])
        compare("a", read_rgb(ctx.tmp / "h_gpu.rgb", source), read_rgb(ctx.tmp / "h_cpu.rgb", source), source,
                enc["psnr_rgb"])
    return finish


@guarded("b")
def phase_b(ctx: Ctx):
    a, dev = ctx.args, ctx.device.type
    if "c3" not in available_codecs():
        raise RuntimeError(f"no c3 codec (installed: {available_codecs()})")
    if a.c3_preset not in load_codec("c3").presets:
        raise RuntimeError(f"no C3 preset {a.c3_preset!r} (have {', '.join(load_codec('c3').presets)})")
    source = ctx.segment.rgb[: a.c3_frames, : a.c3_crop[0], : a.c3_crop[1]]
    clip = ctx.tmp / "c3_in.y4m"
    write_y4m(clip, source, ctx.info, ctx.segment.pts)
    source = frames_of(ctx, str(clip))
    out = ctx.tmp / "c3.mkv"
    enc = nvc(ctx, "encode", str(clip), "-o", str(out), "--codec", "c3", "--preset", a.c3_preset, "--epochs",
              str(a.c3_epochs), "--device", dev, "--quiet", "-y")
    seg = enc["segments"][0]
    c3 = seg.get("c3", {})
    row("b", "c3 encode (CLI)", "ok",
        f"{a.c3_preset} {source.shape[0]}x{source.shape[2]}x{source.shape[1]}, --epochs {a.c3_epochs}: "
        f"{enc['time_s']} s (stages {seg.get('time_s')}), {len(c3.get('patches', []))} patches, "
        f"{enc['psnr_rgb']} dB, {enc['bpp']} bpp", encode_s=enc["time_s"], stage_s=seg.get("time_s"))
    cpu = nvc(ctx, "decode", str(out), "-o", str(ctx.tmp / "c3_cpu.rgb"), "--device", "cpu", "-y", cpu_only=True,
              background=True)
    gpu = nvc(ctx, "decode", str(out), "-o", str(ctx.tmp / "c3_gpu.rgb"), "--device", dev, "-y")
    rep = report_of(cpu, max(60.0, ctx.left()))  # exit 3 here = a latent CRC or range-decoder mismatch
    crcs = {k: zlib.crc32((ctx.tmp / f"c3_{k}.rgb").read_bytes()) for k in ("gpu", "cpu")}
    enc_crc = c3.get("frames_crc32")
    row("b", "c3 decode: latent CRCs", "ok", f"all latent CRCs pass in the CPU-only process ({rep['fps']} frames/s; "
        f"gpu {gpu['fps']} frames/s)")
    row("b", "c3 frame CRCs", "ok" if crcs["gpu"] == crcs["cpu"] == enc_crc else "DIFFER",
        f"encoder frames_crc32 {enc_crc}, gpu decode {crcs['gpu']}, cpu decode {crcs['cpu']}",
        crc_encoder=enc_crc, crc_gpu=crcs["gpu"], crc_cpu=crcs["cpu"])
    compare("b", read_rgb(ctx.tmp / "c3_gpu.rgb", source), read_rgb(ctx.tmp / "c3_cpu.rgb", source), source,
            enc["psnr_rgb"])


def dynamo_graphs() -> int:
    """Graphs TorchDynamo has captured in this process so far (its own statistics counter; -1 if it is gone)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except (ImportError, KeyError, TypeError):
        return -1


@guarded("c")
def phase_c(ctx: Ctx):
    a, dev = ctx.args, ctx.device
    codec = load_codec("hinerv")
    preset = codec.presets[a.preset]
    _, source = source_clip(ctx)
    segment = dataclasses.replace(ctx.segment, rgb=np.ascontiguousarray(source), pts=ctx.segment.pts[: len(source)])
    where = f"{a.preset} on {source.shape[0]}x{source.shape[2]}x{source.shape[1]}"
    stop = ctx.deadline - (0 if set("dab") <= set(a.skip) else a.reserve_s)
    eager = bench.train(bench.setup_work(codec, preset, segment, ctx.info, dev), a.eager_epochs, compile="off",
                        count_syncs=True, deadline=stop)
    per_step = eager["host_syncs"] / (eager["epochs_done"] * eager["steps_per_epoch"]) if dev.type == "cuda" else None
    row("c", "train eager", "ok" if eager["frames_s"] else "PARTIAL",
        f"{where}: {fmt(eager['frames_s'])} frames/s (epochs {eager['epoch_s']} s), peak "
        f"{eager['peak_gib'] or 0:.2f} GiB; host syncs {eager['host_syncs']} ({fmt(per_step, '.2f')} per step) at "
        f"{eager['host_sync_sites'][:4]}", frames_s=eager["frames_s"], epoch_s=eager["epoch_s"],
        peak_gib=eager["peak_gib"], host_syncs=eager["host_syncs"])
    work = bench.setup_work(codec, preset, segment, ctx.info, dev)
    graphs = dynamo_graphs()
    run = bench.train(work, a.epochs, compile="on", deadline=stop)
    graphs = dynamo_graphs() - graphs  # expected 2: the forward and the loss, each compiled once for all epochs
    ctx.trained = work
    fps = run["frames_s"]
    result = "EAGER" if run["warnings"] else "ok" if fps else "PARTIAL"
    row("c", "train torch.compile", result,
        f"{fmt(fps)} frames/s steady ({f'{fps / REF_FPS:.1f}x' if fps else 'n/a'} the reference's {REF_FPS}; target "
        f"{TARGET_FPS:.0f}), epoch 1 {run['first_epoch_s']:.1f} s (compile), {graphs} graphs compiled, peak "
        f"{run['peak_gib'] or 0:.2f} GiB; {run['warnings']}", frames_s=fps, first_epoch_s=run["first_epoch_s"],
        graphs=graphs, epoch_s=run["epoch_s"],
        peak_gib=run["peak_gib"], speedup_vs_eager=fps / eager["frames_s"] if fps and eager["frames_s"] else None)
    done = run["epochs_done"]
    row("c", f"quality after {done} epochs", "ok" if done == a.epochs else "PARTIAL",
        f"{run['psnr_db']:.2f} dB, MS-SSIM {run['ms_ssim']:.4f} (reference at 30: {REF_PSNR} dB, {REF_SSIM})"
        f"{'' if done == a.epochs else f'; stopped by the budget at epoch {done} of {a.epochs}'}",
        epochs=done, psnr_db=run["psnr_db"], ms_ssim=run["ms_ssim"])


@guarded("d")
def phase_d(ctx: Ctx):
    if ctx.trained is None:
        raise RuntimeError("no trained model from (c)")
    codec = load_codec("hinerv")
    work = bench.finish_work(codec, ctx.trained)
    fp32 = bench.decode_fps(codec, work, bf16=False)
    bf16 = bench.decode_fps(codec, work, bf16=True)
    h, w = work.segment.rgb.shape[1:3]
    row("d", f"decode {w}x{h}", "ok", f"codec.decode_segment, batch 1: fp32 (exact math, as nvc decode) {fp32:.1f} "
        f"frames/s, bf16 autocast {bf16:.1f} frames/s (target {TARGET_FPS:.0f})", fp32_fps=fp32, bf16_fps=bf16)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/gpu_check.py", description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny sizes: tests this script without a GPU")
    p.add_argument("--budget-s", type=float, help="wall-clock budget from start (default 450; smoke 1800)")
    p.add_argument("--reserve-s", type=float, default=240.0,
                   help="seconds of the budget the quality run (c) leaves for (d), (a) and (b) (default 240)")
    p.add_argument("--skip", default="", help="phases to leave out, e.g. 'b' or 'ab'")
    p.add_argument("--out", help="JSON report path (default $OUT/gpu_check.json, else out/gpu_check.json)")
    for key, value in GPU.items():
        if isinstance(value, (int, str)):
            p.add_argument(f"--{key.replace('_', '-')}", type=type(value), help=f"(GPU default {value})")
    args = p.parse_args(argv)
    for key, value in (SMOKE if args.smoke else GPU).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.clip = args.clip or bench.bunny_path()
    args.budget_s = args.budget_s or (1800.0 if args.smoke else 450.0)
    if args.smoke:
        overfit.COMPILE_BACKEND = "eager"  # TorchDynamo without Inductor's minutes of CPU code generation
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --smoke on a CPU machine)", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.smoke else "cuda")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    machine = {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0],
               "av": av.__version__, "numpy": np.__version__, "cpus": os.cpu_count(), "codecs": available_codecs()}
    print(f"# nvc gpu_check{' --smoke' if args.smoke else ''}: {json.dumps(machine)}", flush=True)
    print("| t s | phase | check | result | detail |\n|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory(prefix="nvc-gpu-check-") as tmp:
        ctx = Ctx(args, device, Path(tmp))
        t = time.perf_counter()
        with open_video(args.clip) as src:
            ctx.segment, ctx.info = next(src.segments(None)), src.info
        row("setup", "demux", "ok", f"{os.path.basename(args.clip)} {ctx.segment.rgb.shape} in "
            f"{time.perf_counter() - t:.1f} s; codecs {available_codecs()}")
        # (c) and (d) first: they measure the targets, and (c)'s compiled graph is (a)'s too (Inductor's cache)
        if "c" not in args.skip:
            phase_c(ctx)
        if "d" not in args.skip:
            phase_d(ctx)
        finish_a = None
        if "a" not in args.skip:
            if ctx.left() > 120 or args.smoke:
                finish_a = phase_a(ctx)
            else:
                row("a", "phase", "SKIP", f"{ctx.left():.0f} s of the budget left")
        if "b" not in args.skip:
            if ctx.left() > 90 or args.smoke:
                phase_b(ctx)
            else:
                row("b", "phase", "SKIP", f"{ctx.left():.0f} s of the budget left")
        if finish_a is not None:
            finish_a()
        for proc in ctx.procs:  # none should be left; never leave one writing into the removed folder
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.err_file.close()
    bad = [r for r in ROWS if r["result"] not in ("ok", "SKIP")]
    row("total", f"{len(ROWS)} rows", "ok" if not bad else "CHECK", f"{elapsed():.0f} s wall; "
        f"{len(bad)} rows not ok: {sorted({r['phase'] + ' ' + r['check'] for r in bad})}")
    out = Path(args.out or os.path.join(os.environ.get("OUT") or str(ROOT / "out"), "gpu_check.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "args": vars(args), "rows": ROWS}, indent=1, default=str))
    print(f"# report: {out}", flush=True)
    return 0 if not bad else 1


if __name__ == "__main__":
    raise SystemExit(main())
