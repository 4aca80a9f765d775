"""The evaluation sweep: every (sequence, codec curve, point) encoded, decoded and measured once, cached per point.

A *codec spec* is ``name:setting`` (comma-separated on the command line):

- anchors ``x264:medium``, ``x265:veryslow``, ``svtav1:8`` (setting = encoder preset, ``+`` joins several
  presets = several curves, e.g. ``x264:medium+veryslow``); each curve sweeps CRFs (default x264/x265
  22,27,32,37; SVT-AV1 30,38,46,54), overridable for all anchors or per anchor name;
- anything else is a codec plugin run through :mod:`nvc_pipe.api`: ``hinerv:uvg-s`` (setting = preset). Several
  presets joined by ``+`` (``hinerv:uvg-s+uvg-m+uvg-l``) form one curve with one point per preset; with an
  ``epochs`` list each preset is its own curve with one point per epoch count (``overrides={"epochs": e}``);
  with a list of rate targets (``--bitrate 100k,300k,1M``, ``--bpp``, ``--quality``) each preset is its own curve
  with one point per target (``encode_file(target=...)``).

Every point is written as ``out/cache/<dataset>/<sequence>/<codec>-<setting>-<param><value>-<hash>.json`` the
moment it is measured (atomic rename), the hash covering what the result depends on (source file name, size,
geometry, crop, frames, codec, setting, point, overrides, backend, metric options). A rerun, an interrupted run or
an extended sweep (more CRFs, another codec) computes only the points whose file is missing.

Each point is measured by :mod:`.measure` (the same frames and metrics for every codec; decode time = time spent
inside the decoder). Encode time = wall time of the encoder (ffmpeg process or ``encode_file``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

from nvc_pipe.errors import ConfigError, OutputError
from nvc_pipe.executors import check_available as check_executor
from nvc_pipe.executors import make_executor
from nvc_pipe.media.atomic import write_atomic

from . import baselines
from .datasets import Source, open_dataset, write_y4m
from .measure import measure

HARNESS_VERSION = 1   # bump when a change invalidates cached points


# ---- codec specs ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PointSpec:
    param: str             # "crf", "preset", "epochs", or a rate target kind: "bitrate", "bpp", "quality"
    value: object          # int CRF, preset name, epoch count, bits/s, bpp, quality
    setting: str           # encoder preset / plugin preset used at this point


@dataclass(frozen=True)
class Curve:
    codec: str             # x264, x265, svtav1, or a plugin name
    label: str             # legend / table label, e.g. "x265:veryslow"
    points: tuple[PointSpec, ...]
    is_anchor: bool


def _split_list(text: str) -> list[str]:
    return [t.strip() for t in re.split(r"[,\s]+", text or "") if t.strip()]


def parse_int_list(text: str, what: str) -> list[int]:
    try:
        vals = [int(t) for t in _split_list(text)]
    except ValueError:
        raise ConfigError(f"bad {what} list {text!r}: expected integers like 22,27,32,37") from None
    if not vals:
        raise ConfigError(f"empty {what} list")
    return vals


def parse_crf_options(values: Iterable[str] | None) -> dict[str, list[int]]:
    """``["22,27"]`` → all anchors; ``["x265=20,25", "svtav1=30,40"]`` → per anchor. Key ``"*"`` = all."""
    out: dict[str, list[int]] = {}
    for v in values or []:
        if "=" in v:
            name, lst = v.split("=", 1)
            a = baselines.get_anchor(name.strip())
            if a is None:
                raise ConfigError(f"--crf {v!r}: {name!r} is not an anchor ({', '.join(baselines.ANCHORS)})")
            out[a.name] = parse_int_list(lst, "CRF")
        else:
            out["*"] = parse_int_list(v, "CRF")
    return out


def parse_targets(kind: str, text: str) -> list[float]:
    """``--bitrate 100k,300k,1M`` / ``--bpp 0.05,0.1`` / ``--quality 22,28,34`` → values (checked like encode's)."""
    from nvc_pipe.rate import make_target

    items = _split_list(text)
    if not items:
        raise ConfigError(f"empty --{kind} list")
    values = []
    for v in items:
        if kind == "bitrate":
            values.append(make_target(bitrate=v).value)
            continue
        try:
            number = int(v) if kind == "quality" else float(v)
        except ValueError:
            raise ConfigError(f"bad --{kind} value {v!r}") from None
        values.append(make_target(**{kind: number}).value)
    return values


def parse_codecs(text: str | list[str], crf: dict[str, list[int]] | None = None,
                 epochs: list[int] | None = None, targets: tuple[str, list[float]] | None = None) -> list[Curve]:
    """Turn ``"x264:medium,x265:veryslow,hinerv:uvg-s+uvg-m"`` into curves with their sweep points."""
    specs = _split_list(text) if isinstance(text, str) else [s for t in text for s in _split_list(t)]
    if not specs:
        raise ConfigError("no codecs given (e.g. --codecs x265:veryslow,hinerv:uvg-s)")
    crf = crf or {}
    curves: list[Curve] = []
    for spec in specs:
        name, _, setting = spec.partition(":")
        if not name:
            raise ConfigError(f"bad codec spec {spec!r}: expected name:setting")
        anchor = baselines.get_anchor(name)
        settings = [s for s in setting.split("+") if s] if setting else []
        if anchor is not None:
            crfs = crf.get(anchor.name, crf.get("*", list(anchor.default_crfs)))
            for s in settings or [anchor.default_preset]:
                baselines.check_preset(anchor, s)
                for c in crfs:
                    baselines.check_crf(anchor, c)
                curves.append(Curve(anchor.name, f"{anchor.name}:{s}",
                                    tuple(PointSpec("crf", int(c), s) for c in sorted(set(crfs))), True))
        else:
            if not settings:
                raise ConfigError(f"codec {name!r}: give a preset, e.g. {name}:fast")
            if targets:
                kind, values = targets
                for s in settings:
                    curves.append(Curve(name, f"{name}:{s}",
                                        tuple(PointSpec(kind, v, s) for v in sorted(set(values))), False))
            elif epochs:
                for s in settings:
                    curves.append(Curve(name, f"{name}:{s}",
                                        tuple(PointSpec("epochs", int(e), s) for e in sorted(set(epochs))), False))
            else:
                curves.append(Curve(name, f"{name}:{'+'.join(settings)}",
                                    tuple(PointSpec("preset", s, s) for s in settings), False))
    labels = [c.label for c in curves]
    dup = {x for x in labels if labels.count(x) > 1}
    if dup:
        raise ConfigError(f"codec given twice: {', '.join(sorted(dup))}")
    return curves


# ---- configuration -------------------------------------------------------------------------------------------

@dataclass
class EvalConfig:
    dataset: str
    codecs: list[Curve]
    out: Path
    root: Path | None = None
    sequences: list[str] | None = None
    frames: int | None = None
    crop: tuple[int, int] | None = None
    size: tuple[int, int] | None = None          # geometry override of raw files (downscaled copies, tests)
    fps: Fraction | None = None
    anchor_backend: str = "auto"
    anchor: str | None = None                    # curve label BD-rates are computed against
    device: str = "auto"
    overrides: dict = field(default_factory=dict)   # extra overrides for plugin codecs
    ms_ssim: bool = True
    keep_streams: bool = False
    progress: bool = True
    plots: bool = True
    published: str = "auto"                    # published curves on plots: auto (full runs), always, never
    bd_method: str = "pchip"
    executor: str = "local"                    # where points run: this process, or Ray tasks (nvc_pipe.executors)
    ray_address: str | None = None


@dataclass
class EvalResult:
    points: list[dict]
    computed: int
    cached: int
    report: dict
    paths: dict[str, str]


# ---- one point -----------------------------------------------------------------------------------------------

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", str(text))


def point_key(src: Source, curve: Curve, pt: PointSpec, cfg: EvalConfig) -> dict:
    key = {
        "harness": HARNESS_VERSION, "source": src.identity(), "codec": curve.codec, "setting": pt.setting,
        "param": pt.param, "value": pt.value, "ms_ssim": cfg.ms_ssim,
    }
    if curve.is_anchor:
        key["backend"] = baselines.backend_version(baselines.resolve_backend(cfg.anchor_backend))
    else:
        key["overrides"] = _plugin_overrides(pt, cfg)
    return key


def _plugin_overrides(pt: PointSpec, cfg: EvalConfig) -> dict:
    ov = dict(cfg.overrides)
    if pt.param == "epochs":
        ov["epochs"] = pt.value
    return ov


def cache_path(out: Path, src: Source, curve: Curve, pt: PointSpec, key: dict) -> Path:
    digest = hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    name = f"{_slug(curve.codec)}-{_slug(pt.setting)}-{pt.param}{_slug(pt.value)}-{digest}.json"
    return out / "cache" / _slug(src.dataset) / _slug(src.name) / name


def _write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2, default=str))


def _load_cached(path: Path, key: dict) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != json.loads(json.dumps(key, default=str)):
        return None
    return data.get("result")


def _run_anchor_point(src: Source, curve: Curve, pt: PointSpec, cfg: EvalConfig, stream: Path) -> dict:
    anchor = baselines.get_anchor(curve.codec)
    enc = baselines.encode(src, anchor, pt.setting, int(pt.value), stream.with_suffix(anchor.ext),
                           cfg.anchor_backend)
    try:
        q = measure(src, baselines.decode_planes(enc.stream_path, src.pix_fmt), "yuv", cfg.ms_ssim)
    finally:
        if not cfg.keep_streams:
            enc.stream_path.unlink(missing_ok=True)
    return {"stream_bytes": enc.stream_bytes, "encode_s": enc.encode_s, "command": enc.command,
            "backend": enc.backend, "encoder_options": enc.options,
            "stream": str(enc.stream_path) if cfg.keep_streams else None, **q}


def _load_api():
    try:
        return importlib.import_module("nvc_pipe.api")
    except ImportError as e:
        raise ConfigError(f"plugin codecs need nvc_pipe.api, which cannot be imported ({e})") from e


def _stage_psnr(report: dict) -> list[dict]:
    """Per segment, the last training-time PSNR of each stage (what the stream's quality is compared with)."""
    out = []
    for seg in report.get("segments") or []:
        last = {h["stage"]: round(h["psnr_db"], 3) for h in seg.get("history", []) if "psnr_db" in h}
        out.append(last)
    return out


def _run_plugin_point(src: Source, curve: Curve, pt: PointSpec, cfg: EvalConfig, stream: Path,
                      get_input: Callable[[], tuple[Path, object]]) -> dict:
    api = _load_api()
    inp, raw = get_input()
    overrides = _plugin_overrides(pt, cfg)
    stream = stream.with_suffix(".nvc")
    stream.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    extra = {}
    if pt.param in ("bitrate", "bpp", "quality"):
        from nvc_pipe.rate import Target

        extra["target"] = Target(pt.param, pt.value)
    report = api.encode_file(str(inp), str(stream), codec=curve.codec, preset=pt.setting,
                             overrides=overrides or None, device=cfg.device, raw=raw, progress=cfg.progress, **extra)
    encode_s = time.perf_counter() - t0
    report = dict(report or {})
    nbytes = int(report.get("stream_bytes") or stream.stat().st_size)
    q = measure(src, api.decode_frames(str(stream), device=cfg.device), "rgb", cfg.ms_ssim)
    keep = {k: report[k] for k in ("bpp", "stream_bytes", "psnr_rgb", "ms_ssim", "time_s", "target",
                                   "bitrate_bps", "warnings") if k in report}
    keep["stage_psnr_db"] = _stage_psnr(report)
    cmd = (f"nvc_pipe.api.encode_file({str(inp)!r}, {str(stream)!r}, codec={curve.codec!r}, "
           f"preset={pt.setting!r}, overrides={overrides!r}, device={cfg.device!r}"
           + (f", target={extra['target']!r}" if extra else "")
           + (f", raw={raw!r}" if raw is not None else "") + ")")
    return {"stream_bytes": nbytes, "encode_s": encode_s, "command": cmd, "backend": "nvc_pipe.api",
            "encoder_options": overrides, "stream": str(stream), "codec_report": keep, **q}


# ---- the sweep -----------------------------------------------------------------------------------------------

def _progress_bar(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, unit="pt", desc="eval", disable=not enabled, dynamic_ncols=True)


def run_eval(cfg: EvalConfig) -> EvalResult:
    """Run (or resume) the sweep, then write results.json/.csv/.md and the RD plots under ``cfg.out``."""
    from . import report as report_mod

    if not cfg.codecs:
        raise ConfigError("no codecs to evaluate")
    check_executor(cfg.executor)
    if any(c.is_anchor for c in cfg.codecs):
        backend = baselines.resolve_backend(cfg.anchor_backend)
        for c in cfg.codecs:
            if c.is_anchor:
                baselines.check_available(baselines.get_anchor(c.codec), backend)
    if any(not c.is_anchor for c in cfg.codecs):
        _load_api()
    if cfg.anchor and not any(cfg.anchor in (c.label, c.codec) for c in cfg.codecs):
        raise ConfigError(f"--anchor {cfg.anchor!r} is none of the codecs given "
                          f"({', '.join(c.label for c in cfg.codecs)})")
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create output directory {out}: {e}") from e
    sources = open_dataset(cfg.dataset, cfg.root, sequences=cfg.sequences, frames=cfg.frames, crop=cfg.crop,
                           size=cfg.size, fps=cfg.fps)

    jobs = []
    for src in sources:
        for curve in cfg.codecs:
            for pt in curve.points:
                key = point_key(src, curve, pt, cfg)
                jobs.append((src, curve, pt, key, cache_path(out, src, curve, pt, key)))

    points: list[dict | None] = [None] * len(jobs)
    todo = []
    for i, (src, curve, pt, key, cpath) in enumerate(jobs):
        points[i] = _load_cached(cpath, key)
        if points[i] is None:
            todo.append(PointJob(src, curve, pt, cfg, out, cpath))
        else:
            points[i]["curve"] = curve.label  # the key does not cover the curve: a point reused by another curve
    computed, cached = len(todo), len(jobs) - len(todo)
    bar = _progress_bar(len(jobs), cfg.progress)
    if bar is not None:
        bar.update(cached)
    tmp_inputs: dict[str, Path] = {}
    runner = make_executor(cfg.executor, cfg.ray_address)
    try:
        if cfg.executor != "local" and any(not c.is_anchor for c in cfg.codecs):
            cfg.device = runner.device(cfg.device).type  # CUDA: each task holds one GPU
        at = [i for i, _ in enumerate(jobs) if points[i] is None]
        # Locally the points run in order and share one y4m copy per sequence (dropped after its last point).
        last_uses = _last_uses(todo)
        for position, result in runner.map(compute_point, todo, tmp_inputs=tmp_inputs):
            job = jobs[at[position]]
            if position in last_uses and job[0].name in tmp_inputs:
                tmp_inputs.pop(job[0].name).unlink(missing_ok=True)
            _write_json_atomic(job[4], {"key": job[3], "result": result})
            points[at[position]] = result
            if bar is not None:
                bar.set_description(f"{job[0].name} {job[1].label} {job[2].param}={job[2].value}")
                bar.update(1)
    finally:
        runner.close()
        if bar is not None:
            bar.close()
        for p in tmp_inputs.values():
            p.unlink(missing_ok=True)
        _remove_empty_dirs(out / "tmp")

    rep = report_mod.build_report(points, cfg, sources)
    paths = report_mod.write_all(rep, out, plots=cfg.plots)
    return EvalResult(points, computed, cached, rep, paths)


@dataclass(frozen=True)
class PointJob:
    """One RD point to compute: plain data, so it can run as a Ray task (`compute_point`)."""

    src: Source
    curve: Curve
    pt: PointSpec
    cfg: EvalConfig
    out: Path
    cpath: Path


def _last_uses(todo: list[PointJob]) -> set[int]:
    """Positions after which a sequence's y4m copy is not needed any more (local, in-order runs)."""
    return {i for i, job in enumerate(todo) if i + 1 == len(todo) or todo[i + 1].src is not job.src}


def compute_point(job: PointJob, tmp_inputs: dict[str, Path] | None = None) -> dict:
    """Encode, decode and measure one point. Without a shared `tmp_inputs` (a Ray task) the y4m copy it may
    need is its own, under a folder of its own, and removed at the end."""
    own = tmp_inputs is None
    inputs: dict[str, Path] = {} if own else tmp_inputs
    tmp_root = job.out / "tmp" / job.cpath.stem if own else job.out / "tmp"
    try:
        return _compute(job.src, job.curve, job.pt, job.cfg, job.out, job.cpath, inputs, tmp_root)
    finally:
        if own:
            for p in inputs.values():
                p.unlink(missing_ok=True)


def _remove_empty_dirs(top: Path) -> None:
    if not top.is_dir():
        return
    for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        try:
            d.rmdir()
        except OSError:
            pass
    try:
        top.rmdir()
    except OSError:
        pass


def _compute(src: Source, curve: Curve, pt: PointSpec, cfg: EvalConfig, out: Path, cpath: Path,
             tmp_inputs: dict[str, Path], tmp_root: Path) -> dict:
    rel = cpath.parent.relative_to(out / "cache") / cpath.stem
    # Plugin streams are always kept (expensive to make); anchor streams only with keep_streams.
    stream = (out / "streams" / rel) if (cfg.keep_streams or not curve.is_anchor) else (out / "tmp" / "streams" / rel)

    def get_input():
        # The original raw file needs no copy when nothing is cropped or cut; otherwise write a .y4m once.
        if src.kind == "raw" and not src.crop and src.frames == src.frames_in_file:
            from nvc_pipe.media.demux import RawOptions  # lazily: the media package is the lead's

            return src.path, RawOptions(size=(src.width, src.height), fps=src.fps, pix_fmt=src.pix_fmt)
        if src.kind == "container" and not src.crop and src.frames == src.frames_in_file:
            return src.path, None
        if src.name not in tmp_inputs:
            name = f"{_slug(src.name)}-{src.out_width}x{src.out_height}-{src.frames}f.y4m"
            p = tmp_root / _slug(src.dataset) / name
            tmp_inputs[src.name] = write_y4m(src, p)
        return tmp_inputs[src.name], None

    if curve.is_anchor:
        res = _run_anchor_point(src, curve, pt, cfg, stream)
    else:
        res = _run_plugin_point(src, curve, pt, cfg, stream, get_input)
    from nvc_pipe.metrics import bpp as stream_bpp

    bpp = stream_bpp(res["stream_bytes"], src.frames, src.out_width, src.out_height)
    return {
        **src.describe(), "codec": curve.codec, "curve": curve.label, "setting": pt.setting, "param": pt.param,
        "value": pt.value, "bpp": bpp, **res,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
