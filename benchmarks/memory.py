"""Peak memory of `nvc encode` / `nvc decode` against clip length: 2x the frames should cost about the same RSS.

    .venv/bin/python benchmarks/memory.py [--frames 48] [--size 64x64] [--segment-frames 8] [--epochs 1]
                                          [--container nvc|mkv] [--markdown]
    .venv/bin/python benchmarks/memory.py --single 4096x4096 [--steps 3] [--limit-gib 4]

`--single WxH`: one frame of that size instead (issue 15: a 4096x4096 frame encodes at the tiny preset within
4 GiB RSS); the encode trains `--steps` steps if given (memory does not depend on the step count, the time
does), and the exit code is 1 when a peak passes `--limit-gib`.

Makes raw yuv420p clips of N and 2N frames (a moving gradient), encodes each with the tiny preset on CPU, one
segment every `--segment-frames` frames, then decodes the stream to a .y4m. Every command runs in its own process
(`python -m nvc_pipe ...`) and its peak resident set comes from the kernel's accounting of that one child
(`os.wait4` -> `ru_maxrss`), so nothing of this script's own memory is counted. The first row is the floor:
a process that only imports nvc_pipe.api (torch, PyAV, numpy).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_yuv(path: Path, w: int, h: int, n: int) -> None:
    """Raw yuv420p: a moving gradient with a bright square, written frame by frame (no whole clip in memory)."""
    yy, xx = np.mgrid[0:h, 0:w]
    with open(path, "wb") as f:
        for t in range(n):
            y = (40 + (xx * 3 + yy * 2 + t * 5) % 170).astype(np.uint8)
            x0 = (t * 2) % max(w - 8, 1)
            y[h // 3: h // 3 + 8, x0: x0 + 8] = 235
            u = np.full((h // 2, w // 2), 110 + (t % 20), np.uint8)
            v = np.full((h // 2, w // 2), 140 - (t % 15), np.uint8)
            f.write(y.tobytes() + u.tobytes() + v.tobytes())


def measure(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MiB, wall seconds, exit code) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2")))
    err = proc.stderr.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.stderr.write(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode(errors='replace')[-2000:]}\n")
    return usage.ru_maxrss / 1024, wall, proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=48, help="N: the short clip's frames (the long one has 2N)")
    p.add_argument("--size", default="64x64")
    p.add_argument("--segment-frames", type=int, default=8)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--container", choices=("nvc", "mkv"), default="nvc")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table")
    p.add_argument("--single", metavar="WxH", help="one frame of this size (instead of N and 2N frames)")
    p.add_argument("--steps", type=int, help="with --single: training steps in all (default: the preset's)")
    p.add_argument("--limit-gib", type=float, default=4.0, help="with --single: the RSS target")
    args = p.parse_args(argv)
    if args.single:
        return single(args)
    w, h = (int(v) for v in args.size.lower().split("x"))
    py = sys.executable
    rows = []
    floor, t, _ = measure([py, "-c", "import nvc_pipe.api, nvc_hinerv"])
    rows.append(("import only", "-", f"{floor:.0f}", f"{t:.1f}", "-", "-", "-"))
    with tempfile.TemporaryDirectory(prefix="nvc-mem-") as tmp:
        for n in (args.frames, 2 * args.frames):
            src = Path(tmp) / f"clip{n}.yuv"
            write_yuv(src, w, h, n)
            stream = Path(tmp) / f"clip{n}.{args.container}"
            out = Path(tmp) / f"clip{n}.y4m"
            enc_rss, enc_t, rc1 = measure([py, "-m", "nvc_pipe", "encode", str(src), "-o", str(stream), "--size",
                                           args.size, "--fps", "25", "--pix-fmt", "yuv420p", "--preset", "tiny",
                                           "--epochs", str(args.epochs), "--segment-frames", str(args.segment_frames),
                                           "--device", "cpu", "-q", "-y"])
            dec_rss, dec_t, rc2 = measure([py, "-m", "nvc_pipe", "decode", str(stream), "-o", str(out), "--device",
                                           "cpu", "-y"])
            if rc1 or rc2:
                return 1
            segs = -(-n // args.segment_frames)
            rows.append((f"{n} frames", str(segs), f"{enc_rss:.0f}", f"{enc_t:.1f}", f"{dec_rss:.0f}", f"{dec_t:.1f}",
                         str(stream.stat().st_size)))
            out.unlink()
    head = ("clip", "segments", "encode peak RSS MiB", "encode s", "decode peak RSS MiB", "decode s", "stream bytes")
    print(f"{w}x{h} yuv420p, preset tiny, --epochs {args.epochs}, --segment-frames {args.segment_frames}, "
          f"{args.container}, CPU")
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
        print("  ".join(c.rjust(wd) for c, wd in zip(head, widths)))
        for r in rows:
            print("  ".join(c.rjust(wd) for c, wd in zip(r, widths)))
    (a, b) = rows[1], rows[2]
    print(f"2x frames: encode peak {float(b[2]) / float(a[2]):.2f}x, decode peak {float(b[4]) / float(a[4]):.2f}x")
    return 0


def single(args) -> int:
    """One frame of `args.single`: encode (tiny preset, CPU) and decode peak RSS against `args.limit_gib`."""
    w, h = (int(v) for v in args.single.lower().split("x"))
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="nvc-mem-") as tmp:
        src, stream, out = Path(tmp) / "one.yuv", Path(tmp) / "one.nvc", Path(tmp) / "one.y4m"
        write_yuv(src, w, h, 1)
        train = ["--steps", str(args.steps)] if args.steps else []
        enc_rss, enc_t, rc1 = measure([py, "-m", "nvc_pipe", "encode", str(src), "-o", str(stream), "--size",
                                       args.single, "--fps", "25", "--pix-fmt", "yuv420p", "--preset", "tiny",
                                       *train, "--device", "cpu", "-q", "-y"])
        dec_rss, dec_t, rc2 = (0.0, 0.0, 1) if rc1 else measure(
            [py, "-m", "nvc_pipe", "decode", str(stream), "-o", str(out), "--device", "cpu", "-y"])
        size = stream.stat().st_size if stream.exists() else 0
    limit = args.limit_gib * 1024
    print(f"one {w}x{h} yuv420p frame, preset tiny{' --steps ' + str(args.steps) if args.steps else ''}, CPU")
    print("| encode peak RSS MiB | encode s | decode peak RSS MiB | decode s | stream bytes | "
          f"within {args.limit_gib:g} GiB |")
    print("|---|---|---|---|---|---|")
    ok = not rc1 and not rc2 and enc_rss <= limit and dec_rss <= limit
    print(f"| {enc_rss:.0f} | {enc_t:.1f} | {dec_rss:.0f} | {dec_t:.1f} | {size} | {'yes' if ok else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
