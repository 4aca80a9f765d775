"""Measure HiNeRV's payload bytes against its parameter count (the rate model in plugins/nvc_hinerv/ratecontrol.py).

For each clip and width of the `fast` family: train the segment network for a short schedule (overfit only), then
code it (6-bit, constriction) at pruning ratios 0 and PRUNE_AIM, and print parameters, tensors and bytes, plus a
least-squares fit bytes = a · tensors + b · parameters at PRUNE_AIM (0: networks are sized unpruned).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ratecontrol_calibrate.py out/clips/c64x64x8.mp4 ... --steps 150
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from nvc_pipe.api import clip_for, resolve_device
from nvc_pipe.media.demux import open_video
from nvc_pipe.pipeline import Stage, Work, run_stages


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--widths", default="8,16,32,64,96", help="widths of the fast family; 'min': the smallest network")
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from nvc_hinerv import codec as hinerv
    from nvc_hinerv import ratecontrol as rc

    rows = []
    dev = resolve_device("cpu")
    for path in args.clips:
        with open_video(path) as src:
            seg = next(src.segments(None))
            info = src.info
        for width in args.widths.split(","):
            cfg, clip = clip_for(hinerv, "fast", None, {"steps": args.steps}, info, len(seg), None, dev)
            model = rc.smallest_network(cfg.model) if width == "min" else rc.family(cfg.model, int(width))
            cfg = type(cfg)(model, cfg.train, cfg.description)
            stages = [s for s in hinerv.stages(cfg) if s.name in ("patch", "init", "overfit")]
            work = run_stages([Stage(s.name, s.run) for s in stages], Work(seg, info, cfg, dev, False))
            n = work.model.num_parameters()
            tensors = sum(1 for _ in work.model.parameters())
            b0, _ = rc._bytes_at(work.model, 0.0, cfg.train.bits)
            b1, _ = rc._bytes_at(work.model, rc.PRUNE_AIM, cfg.train.bits)
            row = {"clip": path, "width": width, "parameters": n, "tensors": tensors, "bytes_r0": b0,
                   f"bytes_r{rc.PRUNE_AIM}": b1, "bits_per_param_r0": round(8 * b0 / n, 3)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    n = np.array([r["parameters"] for r in rows], float)
    t = np.array([r["tensors"] for r in rows], float)
    y = np.array([r[f"bytes_r{rc.PRUNE_AIM}"] for r in rows], float)
    coef, *_ = np.linalg.lstsq(np.stack([t, n], 1), y, rcond=None)
    print(json.dumps({"fit": f"bytes ≈ {coef[0]:.1f} · tensors + {coef[1] * 8:.3f} bits · parameters",
                      "max_rel_error": float(np.max(np.abs(np.stack([t, n], 1) @ coef - y) / y))}))


if __name__ == "__main__":
    main()
