"""Held-out RD evaluation of the learned image codecs against JPEG and WebP (Pillow).

Test set: scikit-image's `astronaut`, `coffee`, `chelsea`, `rocket` (`TEST_IMAGES`; never used for training).
Each codec point: every image coded at one quality; rate = 8 × FILE bytes / pixels (the whole `.nvc` image file,
or the whole JPEG/WebP file), quality = PSNR on RGB 0..255; the curve point is the mean bpp and mean PSNR over
the images (as for Kodak results). Anchors: JPEG 4:2:0 (`subsampling=2`, Huffman-optimised) and WebP (method 6)
quality sweeps. BD-rates use `nvc_pipe.eval.bdrate.bd_rate` (PCHIP; negative = fewer bits than the anchor).

    python -m nvc_pipe.intra.rd --codecs balle [evc] --out docs/    → rd_intra.json, intra_rd.png, a markdown table
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

import numpy as np

from ..eval.bdrate import bd_rate
from ..metrics import frame_psnr

TEST_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")
JPEG_QUALITIES = (5, 10, 15, 20, 25, 30, 40, 50, 60, 70, 80, 90)
WEBP_QUALITIES = (1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90)


def test_images() -> dict[str, np.ndarray]:
    import skimage.data

    return {name: np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in TEST_IMAGES}


def _pillow_point(rgb: np.ndarray, fmt: str, quality: int) -> tuple[float, float]:
    from PIL import Image

    buf = io.BytesIO()
    opts = {"subsampling": 2, "optimize": True} if fmt == "JPEG" else {"method": 6}
    Image.fromarray(rgb).save(buf, format=fmt, quality=quality, **opts)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:
        dec = np.asarray(im.convert("RGB"))
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), frame_psnr(rgb, dec, 255)


def _codec_point(rgb: np.ndarray, codec: str, quality: int) -> tuple[float, float]:
    from .image import decode_bytes, encode_rgb

    data = encode_rgb(rgb, codec, quality)
    _, dec = decode_bytes(data, "cpu")
    return 8 * len(data) / (rgb.shape[0] * rgb.shape[1]), frame_psnr(rgb, dec, 255)


def curve(images: dict[str, np.ndarray], point, qualities) -> dict:
    """{"quality": [...], "bpp": [...], "psnr": [...], "per_image": {...}} averaged over the images."""
    out = {"quality": list(qualities), "bpp": [], "psnr": [], "per_image": {n: [] for n in images}}
    for q in qualities:
        pts = [point(rgb, q) for rgb in images.values()]
        for n, p in zip(images, pts):
            out["per_image"][n].append([round(p[0], 5), round(p[1], 4)])
        out["bpp"].append(float(np.mean([p[0] for p in pts])))
        out["psnr"].append(float(np.mean([p[1] for p in pts])))
    return out


def evaluate(codecs: list[str]) -> dict:
    from ..plugins import load_image_codec

    images = test_images()
    curves = {"JPEG 4:2:0": curve(images, lambda im, q: _pillow_point(im, "JPEG", q), JPEG_QUALITIES),
              "WebP": curve(images, lambda im, q: _pillow_point(im, "WEBP", q), WEBP_QUALITIES)}
    for name in codecs:
        qualities = load_image_codec(name).qualities
        curves[name] = curve(images, lambda im, q, n=name: _codec_point(im, n, q), qualities)
    bd = {}
    for name in codecs:
        for anchor in ("JPEG 4:2:0", "WebP"):
            a, t = curves[anchor], curves[name]
            v = bd_rate(a["bpp"], a["psnr"], t["bpp"], t["psnr"])
            bd[f"{name} vs {anchor}"] = None if math.isnan(v) else round(v, 2)
    return {"images": list(TEST_IMAGES), "curves": curves, "bd_rate_percent": bd}


def markdown(result: dict) -> str:
    lines = ["| codec | setting | bpp | PSNR RGB (dB) |", "|---|---|---|---|"]
    for name, c in result["curves"].items():
        for q, b, p in zip(c["quality"], c["bpp"], c["psnr"]):
            lines.append(f"| {name} | q{q} | {b:.4f} | {p:.2f} |")
    lines += ["", "| BD-rate | % |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in result["bd_rate_percent"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ..eval.plots import plot_rd

    p = argparse.ArgumentParser(prog="python -m nvc_pipe.intra.rd", description=__doc__.splitlines()[0])
    p.add_argument("--codecs", nargs="+", default=["balle"], help="image codec plugins to evaluate")
    p.add_argument("--out", default="docs", help="directory for rd_intra.json and intra_rd.png")
    args = p.parse_args(argv)
    result = evaluate(args.codecs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rd_intra.json").write_text(json.dumps(result, indent=1))
    curves = [{"label": n, "bpp": c["bpp"], "y": c["psnr"]} for n, c in result["curves"].items()]
    plot_rd(curves, out / "intra_rd.png", "held-out: astronaut, coffee, chelsea, rocket (mean)")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
