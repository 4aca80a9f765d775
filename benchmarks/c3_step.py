"""Time of one C3 training step (noise proxy: forward, backward, optimiser) per preset, one thread.

The step is `train.rd_loss` + backward + the preset's optimiser on a random 8×144×256 patch (1×144×256 for
c3-intra), the shape of the Bunny 256×144 curve's patches. It prints the median and minimum of 10 timed steps
after 2 untimed ones and the last loss (across two trees that compute the same function it agrees to ~0.2 %:
summation order differs, and 12 steps at the preset's learning rate amplify it). To compare two commits, run it
from each tree on a quiet core:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/c3_step.py [--presets c3-fast-cool,c3-fast,c3-intra]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

import torch  # noqa: E402

from nvc_c3 import train  # noqa: E402
from nvc_c3.presets import PRESETS  # noqa: E402


def step_ms(name: str, steps: int = 12, warm: int = 2) -> tuple[float, float, float]:
    preset = PRESETS[name]
    shape = (1, 144, 256) if preset.model.patch_frames == 1 else (8, 144, 256)
    torch.manual_seed(0)
    target = torch.rand(*shape, 3)
    model = train._new_model(preset.model, shape, None, target, preset, 0)
    gen = torch.Generator().manual_seed(0)
    opt = train._optimizer(model, preset.train.lr, preset.c3)
    quantize = train._proxy(preset.c3, 0.3, gen)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss, _, _ = train.rd_loss(model, target, preset.c3.rd_lambda, quantize, preset.c3.rate_cap_bits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = sorted(times[warm:])
    return 1000 * times[len(times) // 2], 1000 * times[0], float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="c3-fast-cool,c3-fast,c3-intra")
    args = ap.parse_args()
    torch.set_num_threads(1)
    for name in args.presets.split(","):
        median, best, loss = step_ms(name)
        print(f"{name}: median {median:.0f} ms, min {best:.0f} ms, loss {loss:.5f}")


if __name__ == "__main__":
    main()
