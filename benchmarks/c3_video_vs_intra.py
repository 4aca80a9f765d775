"""C3 video (temporal context) against the same C3 run frame by frame (all-intra): RD table and BD-rate.

Both codecs are the image decoder of `presets.COOL_MODEL` and the Cool-Chic-like schedule, with the same number
of optimisation steps per model (`--steps`, warm-up and final phase included):

* intra (`c3-intra`): every frame its own patch, i.e. its own latents, ARM and synthesis (8 networks for 8 frames);
* video (`c3-fast-cool` with the patch as long as the clip): one model over all frames; grid k has ⌈T/2^k⌉ latent
  frames (coarse grids are shared by several frames) and the ARM sees the previous latent frame too.

A training step of the video model covers every frame, so both use the same compute for the clip. Frames are read
with PyAV from `--video` (default `samples/bunny_256x144.mp4`), the first `--frames`, centre-cropped to `--crop`.
Each point is a real encode (`codec.encode_frames`) decoded from its payload bytes (`codec.decode_segment`):
bpp = 8 × payload bytes / (frames × pixels) (the sequence header, the same for both, is not counted), PSNR on RGB
per frame, averaged. BD-rate (PCHIP, `nvc_pipe.eval.bdrate`): video against intra, negative = video needs less.

    python benchmarks/c3_video_vs_intra.py --crop 128x72 --steps 1000 --jobs 2 --json out/vvi.json
    python benchmarks/c3_video_vs_intra.py --modes video --set video:model.num_grids=5   # one side changed

`--set [MODE:]SECTION.FIELD=JSON` changes one field of a preset (both modes unless MODE is given).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np

LAMBDAS = (4e-3, 1e-3, 2.5e-4)
MODES = {"intra": "c3-intra", "video": "c3-fast-cool"}
SAMPLE = os.path.join(os.path.dirname(__file__), "..", "samples", "bunny_256x144.mp4")


def read_clip(path: str, frames: int, crop: tuple[int, int] | None) -> np.ndarray:
    """The first `frames` frames as (T, H, W, 3) uint8 RGB, centre-cropped to `crop` (w, h)."""
    import av

    out = []
    with av.open(path) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                break
    if len(out) < frames:
        raise SystemExit(f"{path}: only {len(out)} frames")
    clip = np.stack(out)
    if crop:
        w, h = crop
        y0, x0 = (clip.shape[1] - h) // 2, (clip.shape[2] - w) // 2
        clip = clip[:, y0 : y0 + h, x0 : x0 + w]
    return np.ascontiguousarray(clip)


def _parse_sets(items: list[str]) -> dict[str, dict[str, dict]]:
    out = {m: {"model": {}, "train": {}, "c3": {}} for m in MODES}
    for item in items:
        key, _, value = item.partition("=")
        mode, _, key = key.rpartition(":")
        section, _, field = key.partition(".")
        if mode not in ("", *MODES) or section not in out["intra"] or not field or not value:
            raise SystemExit(f"--set {item!r}: expected [intra:|video:]SECTION.FIELD=JSON (model, train or c3)")
        v = json.loads(value)
        for m in [mode] if mode else MODES:
            out[m][section][field] = tuple(v) if isinstance(v, list) else v
    return out


def make_preset(mode: str, rd_lambda: float, steps: int, frames: int, sets: dict[str, dict]):
    from nvc_c3.presets import PRESETS, with_lambda, with_steps

    p = with_lambda(PRESETS[MODES[mode]], rd_lambda)
    model = dataclasses.replace(p.model, patch_frames=1 if mode == "intra" else frames)
    p = dataclasses.replace(p, model=dataclasses.replace(model, **sets["model"]),
                            train=dataclasses.replace(p.train, **sets["train"]),
                            c3=dataclasses.replace(p.c3, **sets["c3"]))
    return with_steps(p, steps)


def run_point(clip: np.ndarray, mode: str, rd_lambda: float, steps: int, sets: dict[str, dict]) -> dict:
    import torch

    torch.set_num_threads(1)
    from nvc_c3.codec import codec, encode_frames, integer_frame
    from nvc_c3.model import macs_per_pixel, patch_boxes
    from nvc_c3.presets import total_steps
    from nvc_pipe.metrics import frame_psnr

    t, h, w = clip.shape[:3]
    preset = make_preset(mode, rd_lambda, steps, t, sets[mode])
    t0 = time.perf_counter()
    payload, report = encode_frames(torch.from_numpy(clip).to(torch.int32), 255, preset)
    enc_s = time.perf_counter() - t0
    decoded = [integer_frame(f, 255) for f in codec.decode_segment(bytes(payload), preset.model, t, h, w, "cpu")]
    psnrs = [frame_psnr(clip[i], decoded[i], 255) for i in range(t)]
    facts = codec.describe(bytes(payload), preset.model, t, h, w)
    return {"mode": mode, "lambda": rd_lambda, "bytes": len(payload), "bpp": 8 * len(payload) / (t * h * w),
            "psnr": float(np.mean(psnrs)), "psnr_per_frame": [round(p, 3) for p in psnrs],
            "latent_bytes": facts["latent_bytes"], "other_bytes": facts["other_bytes"],
            "steps_per_model": total_steps(preset), "models": len(patch_boxes(preset.model, t, h, w)),
            "encode_s": enc_s, "macs_per_pixel": round(macs_per_pixel(preset.model, patch_boxes(preset.model, t, h, w)),
                                                      1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default=SAMPLE)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--crop", help="WxH centre crop (default: whole frame)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=list(LAMBDAS))
    ap.add_argument("--steps", type=int, default=2000, help="optimisation steps per model, all included")
    ap.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="[MODE:]SECTION.FIELD=JSON")
    ap.add_argument("--jobs", type=int, default=1, help="points at once (processes, one thread each)")
    ap.add_argument("--json", help="write the points here (and NAME.partial as they finish)")
    args = ap.parse_args(argv)
    crop = tuple(int(v) for v in args.crop.lower().split("x")) if args.crop else None
    clip = read_clip(args.video, args.frames, crop)
    sets = _parse_sets(args.sets)
    head = {"video": args.video, "frames": args.frames, "crop": args.crop, "steps": args.steps, "sets": args.sets}
    points = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_point, clip, m, lam, args.steps, sets) for lam in args.lambdas for m in args.modes]
        for fut in as_completed(futures):
            p = fut.result()
            points.append(p)
            print(f"done: {p['mode']} λ {p['lambda']:g}: {p['bpp']:.4f} bpp, {p['psnr']:.2f} dB, {p['bytes']} B, "
                  f"{p['encode_s']:.0f} s", flush=True)
            if args.json:
                with open(args.json + ".partial", "w") as f:
                    json.dump({**head, "points": points}, f, indent=2)
    points.sort(key=lambda p: (p["mode"], -p["lambda"]))
    t, h, w = clip.shape[:3]
    print(f"{args.video}: {t} frames {w}×{h}, {args.steps} steps per model, settings {args.sets or 'defaults'}")
    print(f"{'mode':>5} {'λ':>8} | {'bpp':>7} {'PSNR':>6} | {'bytes':>6} {'latent B':>8} {'models':>6} {'MAC/px':>7} "
          f"{'enc s':>6}")
    for p in points:
        print(f"{p['mode']:>5} {p['lambda']:8.2g} | {p['bpp']:7.4f} {p['psnr']:6.2f} | {p['bytes']:6d} "
              f"{p['latent_bytes']:8d} {p['models']:6d} {p['macs_per_pixel']:7.0f} {p['encode_s']:6.0f}")
    result = {**head, "points": points}
    by = {m: [p for p in points if p["mode"] == m] for m in MODES}
    if len(by["intra"]) >= 2 and len(by["video"]) >= 2:
        from nvc_pipe.eval.bdrate import bd_psnr, bd_rate

        ri, qi = [p["bpp"] for p in by["intra"]], [p["psnr"] for p in by["intra"]]
        rv, qv = [p["bpp"] for p in by["video"]], [p["psnr"] for p in by["video"]]
        result["bd_rate_pct"], result["bd_psnr_db"] = bd_rate(ri, qi, rv, qv), bd_psnr(ri, qi, rv, qv)
        print(f"BD-rate video vs all-intra: {result['bd_rate_pct']:+.1f} %   BD-PSNR: {result['bd_psnr_db']:+.2f} dB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
