"""HiNeRV work per frame, counted on the meta device (no memory, no time): docs/perf.md's "Work per frame" table.

    .venv/bin/python benchmarks/flops.py

For each preset at its paper size (`fast` at the sample's 256x144x48): parameters, forward MACs of one frame in
frame mode (what decoding costs), forward MACs per frame-equivalent in patch mode (training renders B patches with
padded windows: B·ph·pw pixels of output is one frame-equivalent, but each patch also computes its window's
border), and training MACs per frame-equivalent (forward + backward). `torch.utils.flop_counter` counts matmuls
exactly but overcounts the backward of grouped (depth-wise) convolutions ~38x, so the backward's convolutions are
taken as twice their forward (input and weight gradients); bilinear upsampling, LayerNorm, GELU are not counted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

from nvc_hinerv.codec import PRESETS, segment_model  # noqa: E402

SIZES = {"bunny": (132, 720, 1280), "uvg": (600, 1080, 1920), "fast": (48, 144, 256)}


def _macs(fn) -> dict[str, float]:
    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(op): flops / 2 for op, flops in counter.get_flop_counts()["Global"].items()}


def count(name: str) -> dict:
    preset = PRESETS[name]
    frames, h, w = SIZES[name.split("-")[0]]
    (ph, pw), batch = preset.train.patch_size or (h, w), preset.train.batch_size
    whole = preset.train.patch_size is None  # whole-frame training (the CPU presets)
    with torch.device("meta"):
        model = segment_model(preset.model, frames, h, w)
        frame = sum(_macs(lambda: model(torch.zeros(1, dtype=torch.long), None, None)).values())
        t, yx = torch.zeros(batch, dtype=torch.long), torch.zeros(batch, 2, dtype=torch.long)
        args = (t, None, None) if whole else (t, yx, (ph, pw))
        fwd = _macs(lambda: model(*args))
        out = model(*args)
        bwd = _macs(lambda: out.float().mean().backward())
    conv = sum(v for k, v in fwd.items() if "convolution" in k)
    backward = sum(v for k, v in bwd.items() if "convolution" not in k) + 2 * conv
    per = h * w / (batch * ph * pw)  # frame-equivalents per step, inverted
    return {"preset": name, "video": f"{w}x{h}x{frames}", "params": sum(p.numel() for p in model.parameters()),
            "frame": frame / 1e9, "patch": sum(fwd.values()) * per / 1e9,
            "train": (sum(fwd.values()) + backward) * per / 1e9,
            "patch_size": "whole frames" if whole else f"{ph}x{pw}"}


def main() -> int:
    print("| preset | video | parameters | frame-mode forward GMAC/frame | patches | patch-mode forward GMAC/frame-eq "
          "| training (fwd+bwd) GMAC/frame-eq |")
    print("|---|---|---|---|---|---|---|")
    for name in ("bunny-xxs", "bunny-xs", "bunny-s", "uvg-s", "uvg-m", "uvg-l", "fast"):
        r = count(name)
        print(f"| {r['preset']} | {r['video']} | {r['params']:,} | {r['frame']:.1f} | {r['patch_size']} | "
              f"{r['patch']:.1f} | {r['train']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
