"""Published rate-distortion points, drawn on the RD plots as reference curves (dashed) and usable for BD-rate.

These are numbers as their authors released them, measured on the full sequences at full resolution (RGB PSNR on
FFmpeg-converted frames, averaged per frame then over sequences; bpp counts pixels once). They are only comparable
with a full run (no ``--crop``, no ``--frames``).

Sources:

- **HiNeRV** (Kwan et al., NeurIPS 2023), ``hmkx/HiNeRV`` ``results/*.xlsx``, 6-bit models [HiNeRV issue #13]:
  UVG points are the S/M/L/XL/XXL models, MCL-JCV points XXS/XS/S/M/L. "original" = the paper's implementation,
  "new" = the released code [issue #15]. Cells are bpp / PSNR (dB, RGB) / MS-SSIM. The UVG average bpp is the
  plain mean of the per-sequence bpp (ShakeNDry, 300 frames, has twice the bpp of the others).
- **C3 (Adaptive)** (Kim et al., CVPR 2024), ``google-deepmind/c3_neural_compression`` ``baselines/uvg.py``: 8 points
  per UVG video and their unweighted mean over the 7 videos (bpp and PSNR; no MS-SSIM). C3's bitrate is an entropy
  estimate, not a written bitstream. Values rounded here to 5 decimals (bpp) and 2 (dB).

See ``/work/shared/reference/hinerv.md`` §4.2 and ``c3_coolchic.md`` §3.1 for the notes these were copied from.
"""

from __future__ import annotations

from dataclasses import dataclass

AVERAGE = "average"


@dataclass(frozen=True)
class PublishedCurve:
    method: str                         # legend label, e.g. "HiNeRV (paper)"
    dataset: str                        # "uvg" / "mcl-jcv"
    sequence: str                       # a sequence name, or "average"
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]             # RGB PSNR, dB
    ms_ssim: tuple[float, ...] | None = None
    labels: tuple[str, ...] = ()        # model size / point names
    source: str = ""

    def as_dict(self) -> dict:
        return {"method": self.method, "dataset": self.dataset, "sequence": self.sequence, "bpp": list(self.bpp),
                "psnr_rgb": list(self.psnr), "ms_ssim": list(self.ms_ssim) if self.ms_ssim else None,
                "labels": list(self.labels), "source": self.source}


_HINERV_SRC = "hmkx/HiNeRV results/uvg_results.xlsx (6-bit; issue #13)"
_HINERV_MCL_SRC = "hmkx/HiNeRV results/mcl_results.xlsx (6-bit; issue #13)"
_C3_SRC = "google-deepmind/c3_neural_compression baselines/uvg.py, 'C3 (Adaptive)'"
_UVG_SIZES = ("S", "M", "L", "XL", "XXL")
_MCL_SIZES = ("XXS", "XS", "S", "M", "L")

# (bpp, PSNR, MS-SSIM) per model size, HiNeRV original (paper) implementation, UVG.
_HINERV_UVG_ORIGINAL = {
    "Beauty": ((0.0130, 33.87, 0.9041), (0.0261, 34.07, 0.9100), (0.0512, 34.41, 0.9180), (0.1020, 34.75, 0.9283),
               (0.2007, 35.24, 0.9406)),
    "Bosphorus": ((0.0131, 37.53, 0.9810), (0.0262, 39.36, 0.9867), (0.0511, 41.14, 0.9901),
                  (0.1015, 42.40, 0.9920), (0.1981, 43.28, 0.9932)),
    "HoneyBee": ((0.0133, 38.75, 0.9851), (0.0264, 39.29, 0.9856), (0.0513, 39.69, 0.9869), (0.1020, 40.07, 0.9884),
                 (0.1993, 40.33, 0.9896)),
    "Jockey": ((0.0130, 35.39, 0.9532), (0.0262, 37.36, 0.9655), (0.0511, 38.56, 0.9723), (0.1017, 39.14, 0.9764),
               (0.1997, 39.82, 0.9802)),
    "ReadySetGo": ((0.0131, 30.63, 0.9617), (0.0263, 33.62, 0.9783), (0.0513, 36.55, 0.9870),
                   (0.1018, 38.65, 0.9910), (0.1991, 40.14, 0.9929)),
    "ShakeNDry": ((0.0255, 35.32, 0.9599), (0.0508, 36.41, 0.9704), (0.0991, 37.67, 0.9783),
                  (0.1971, 38.77, 0.9842), (0.3867, 39.72, 0.9887)),
    "YachtRide": ((0.0132, 30.24, 0.9410), (0.0262, 31.99, 0.9606), (0.0511, 34.13, 0.9751),
                  (0.1019, 36.43, 0.9844), (0.1995, 38.86, 0.9899)),
    AVERAGE: ((0.0149, 34.53, 0.9551), (0.0297, 36.01, 0.9653), (0.0580, 37.45, 0.9725), (0.1154, 38.60, 0.9778),
              (0.2262, 39.63, 0.9822)),
}
_HINERV_UVG_NEW_AVERAGE = ((0.0150, 34.80, 0.9559), (0.0299, 36.24, 0.9660), (0.0583, 37.51, 0.9726),
                           (0.1159, 38.72, 0.9779), (0.2271, 39.81, 0.9823))
_HINERV_MCL_AVERAGE = ((0.0154, 32.57, 0.9438), (0.0301, 34.68, 0.9616), (0.0596, 36.57, 0.9729),
                       (0.1203, 38.17, 0.9803), (0.2376, 39.50, 0.9851))

# (bpp tuple, PSNR tuple) per UVG video, C3 (Adaptive).
_C3_UVG = {
    "Beauty": ((0.01005, 0.01236, 0.01605, 0.02418, 0.04205, 0.10817, 0.44461, 0.96877),
               (32.97, 33.41, 33.74, 34.07, 34.29, 34.94, 36.89, 38.81)),
    "Bosphorus": ((0.01026, 0.01426, 0.02034, 0.03252, 0.05300, 0.07366, 0.13821, 0.20776),
                  (35.57, 36.72, 37.92, 39.32, 40.38, 41.24, 42.43, 43.29)),
    "HoneyBee": ((0.00888, 0.01070, 0.01306, 0.01791, 0.03134, 0.04139, 0.08882, 0.19873),
                 (35.78, 36.52, 37.13, 37.79, 38.39, 38.74, 39.20, 39.89)),
    "Jockey": ((0.01544, 0.02170, 0.03214, 0.05508, 0.08609, 0.12894, 0.22349, 0.37987),
               (31.97, 33.02, 34.10, 35.46, 36.86, 37.87, 39.13, 40.03)),
    "ReadySetGo": ((0.03441, 0.05015, 0.07316, 0.11822, 0.16848, 0.23756, 0.36402, 0.52306),
                   (29.71, 31.28, 32.88, 34.94, 36.80, 38.20, 40.09, 41.22)),
    "ShakeNDry": ((0.01136, 0.01684, 0.02608, 0.04511, 0.07592, 0.11066, 0.20996, 0.38954),
                  (32.94, 33.90, 34.95, 36.20, 37.22, 37.96, 38.82, 39.85)),
    "YachtRide": ((0.02123, 0.03276, 0.05115, 0.08918, 0.13527, 0.19297, 0.30876, 0.43005),
                  (31.53, 32.92, 34.47, 36.52, 38.21, 39.62, 41.37, 42.48)),
    AVERAGE: ((0.01595, 0.02268, 0.03314, 0.05460, 0.08459, 0.12762, 0.25398, 0.44254),
              (32.93, 33.97, 35.03, 36.33, 37.45, 38.36, 39.70, 40.79)),
}


def _hinerv(method, dataset, seq, rows, sizes, source) -> PublishedCurve:
    return PublishedCurve(method, dataset, seq, tuple(r[0] for r in rows), tuple(r[1] for r in rows),
                          tuple(r[2] for r in rows), sizes, source)


def _build() -> list[PublishedCurve]:
    out = []
    for seq, rows in _HINERV_UVG_ORIGINAL.items():
        out.append(_hinerv("HiNeRV (paper)", "uvg", seq, rows, _UVG_SIZES, _HINERV_SRC + ", original"))
    out.append(_hinerv("HiNeRV (released code)", "uvg", AVERAGE, _HINERV_UVG_NEW_AVERAGE, _UVG_SIZES,
                       _HINERV_SRC + ", new"))
    out.append(_hinerv("HiNeRV (paper)", "mcl-jcv", AVERAGE, _HINERV_MCL_AVERAGE, _MCL_SIZES, _HINERV_MCL_SRC))
    for seq, (b, p) in _C3_UVG.items():
        out.append(PublishedCurve("C3 (Adaptive)", "uvg", seq, b, p, None, tuple(f"P{i}" for i in range(len(b))),
                                  _C3_SRC))
    return out


PUBLISHED: tuple[PublishedCurve, ...] = tuple(_build())


def published_curves(dataset: str, sequence: str = AVERAGE) -> list[PublishedCurve]:
    """Published curves for a dataset and one sequence (case-insensitive; ``"average"`` = the dataset mean).

    ReadySteadyGo is an alias of ReadySetGo.
    """
    key = sequence.lower()
    if key == "readysteadygo":
        key = "readysetgo"
    return [c for c in PUBLISHED if c.dataset == dataset.lower() and c.sequence.lower() == key]
