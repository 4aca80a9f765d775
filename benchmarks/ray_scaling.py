"""Ray scaling of one encode: a 4-segment CPU encode on a local Ray with 1 worker, then with 2 (1 thread each).

    nice -n 5 .venv/bin/python benchmarks/ray_scaling.py [--size 128x72] [--frames 16] [--segments 4]
                                                         [--preset tiny] [--steps 400]

Makes a raw yuv420p clip (a moving gradient), then for W = 1 and 2 starts a local Ray with W CPUs, starts its W
workers and imports the codec in them (not timed: a fixed cost of seconds), and times
`api.encode_file(..., executor="ray")` with `--segments` equal segments. Prints both wall times, the ratio and
the machine's load average before and after (others' processes skew a 2-core box), and checks that both runs
wrote the same bytes. The issue's bar (#16, must-show 3): ratio >= 1.6 on an otherwise idle 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from memory import write_yuv  # noqa: E402  (the same synthetic clip as the memory benchmark)


def _warm() -> int:
    """Run in a worker: import what a segment job imports, so the timed encode starts on warm workers."""
    import nvc_pipe.jobs  # noqa: F401
    from nvc_pipe.plugins import load_codec

    load_codec("hinerv")
    return os.getpid()


def run(workers: int, clip: str, raw, args, out: Path) -> tuple[float, bytes]:
    import ray

    from nvc_pipe import api
    from nvc_pipe.executors import RayExecutor

    executor = RayExecutor(num_cpus=workers)  # a local Ray with `workers` CPUs; encode_file's executor uses it
    try:
        warm = ray.remote(num_cpus=1)(_warm)
        pids = set(ray.get([warm.remote() for _ in range(workers * 2)]))
        t0 = time.perf_counter()
        api.encode_file(clip, str(out), preset=args.preset, overrides={"steps": args.steps} if args.steps else None,
                        device="cpu", raw=raw, segment_frames=args.frames // args.segments, progress=False,
                        executor="ray")
        wall = time.perf_counter() - t0
    finally:
        executor.close()
    print(f"  {workers} worker(s) (warm-up ran in {len(pids)} process(es)): {wall:.1f} s", flush=True)
    return wall, out.read_bytes()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="128x72", help="WxH of the synthetic clip (default 128x72)")
    p.add_argument("--frames", type=int, default=16, help="frames in the clip (default 16)")
    p.add_argument("--segments", type=int, default=4, help="equal segments (default 4)")
    p.add_argument("--preset", default="tiny", help="hinerv preset (default tiny)")
    p.add_argument("--steps", type=int, default=400, help="optimisation steps of the whole encode (default 400)")
    args = p.parse_args()
    if args.frames % args.segments:
        p.error("--frames must be a multiple of --segments")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the driver reads frames and assembles; workers: 1 thread each
    from nvc_pipe.media.demux import RawOptions

    w, h = (int(v) for v in args.size.split("x"))
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nvc-ray-scaling-") as tmp:
        clip = Path(tmp) / "clip.yuv"
        write_yuv(clip, w, h, args.frames)
        raw = RawOptions(size=(w, h), fps=25, pix_fmt="yuv420p")
        print(f"ray_scaling: {args.size}, {args.frames} frames in {args.segments} segments, hinerv:{args.preset}, "
              f"{args.steps} steps, CPU; load average before {load0[0]:.2f}", flush=True)
        one, bytes_one = run(1, str(clip), raw, args, Path(tmp) / "w1.nvc")
        two, bytes_two = run(2, str(clip), raw, args, Path(tmp) / "w2.nvc")
    load1 = os.getloadavg()
    same = bytes_one == bytes_two
    print(f"1 worker {one:.1f} s, 2 workers {two:.1f} s: speed-up {one / two:.2f}x "
          f"(load average after {load1[0]:.2f}; same bytes: {same})")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
