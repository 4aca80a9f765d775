"""The library API behind the CLI: encode a file, decode a file, iterate decoded frames, inspect a stream.

    encode_file: demux → per segment: codec stages → AU → (decode it back: measured quality) → stream → MKV/.nvc
    decode_file: MKV/.nvc → sequence header → per AU: plugin.decode_segment → integer RGB → sink

Reports are plain dicts (JSON-able). Nothing here prints; errors are `NvcError`s.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import time
from fractions import Fraction
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from . import __version__
from .bitstream.spec import (MAGIC, AccessUnit, SequenceHeader, check_access_unit, pack_stream_header,
                             parse_stream_header, split_access_units)
from .checkpoint import Checkpoint, input_identity
from .errors import BitstreamError, ConfigError, InputError
from .intra.frames import ALL_INTRA, IntraSpec, encode_section, image_codec_for, merge, split_section
from .intra.image import MAGIC_IMAGE
from .media.clip import Segment, VideoInfo
from .media.convert import yuv_planes
from .media.demux import RawOptions, Selection, count_frames, open_video
from .media.atomic import atomic_output, check_writable
from .media.mux import Packet, read_mkv, with_track_metadata, write_mkv
from .media.sink import open_sink
from .media.spool import spool_stdin, write_stdout
from .metrics import bpp, frame_psnr, ms_ssim, psnr_yuv611
from .pipeline import Work, run_stages
from .precision import exact_math
from .plugins import (ImageCodec, VideoCodec, available_codecs, available_image_codecs, load_codec,
                      load_image_codec)
from .rate import DEFAULT_QUALITY, Clip, Target

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA GPU is available (use --device cpu or auto)")
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)")


def clip_for(plugin: VideoCodec, preset: str | None, target: Target | None, overrides: dict, info: VideoInfo,
             frames: int, segment_frames: int | None, device: torch.device) -> tuple[object, Clip]:
    """The plugin's config for this clip, and the clip with the stream overhead no plugin controls.

    The overhead (sequence header + access-unit headers) is measured on a header built with a first config; a
    width or two more digits in the final config's JSON are covered by a few bytes of margin.
    """
    seg = min(segment_frames or frames, frames)
    clip = Clip(info.width, info.height, frames, info.fps, seg, 0, device.type)
    raw_bpp = 3 * info.bit_depth
    if target is not None and target.kind != "quality" and clip.bpp(target) > raw_bpp:
        raise ConfigError(f"the target ({clip.bpp(target):.3g} bpp) is above the raw video's {raw_bpp} bpp "
                          "(ask for a lower rate)")
    first = plugin.configure(preset, target, overrides, clip)
    n_aus = -(-frames // seg)
    seq = SequenceHeader(info.width, info.height, info.pix_fmt, info.color_range, info.colorspace, info.fps,
                         info.time_base, frames, n_aus, tuple(range(frames)), plugin.name, plugin.payload_version,
                         plugin.config_to_dict(first), {})
    au = len(AccessUnit(n_aus - 1, frames - 1, seg, b"").to_bytes())
    clip = dataclasses.replace(clip, overhead_bytes=len(pack_stream_header(seq)) + 8 + n_aus * au)
    return (plugin.configure(preset, target, overrides, clip) if target is not None or preset is None
            else first), clip


def _integer(frame: torch.Tensor, max_value: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1] → uint8 / uint16 samples (8-bit ones narrowed on the device: 4x less to copy)."""
    q = torch.round(frame.float().clamp(0, 1) * max_value).to(torch.uint8 if max_value == 255 else torch.int32)
    return q.cpu().numpy().astype(np.uint8 if max_value == 255 else np.uint16, copy=False)


class Decoder(NamedTuple):
    """What renders access units: the video plugin and its config (None for all-intra streams) and the intra codec."""

    codec: VideoCodec | None
    config: object
    intra: ImageCodec | None


def render_access_unit(dec: Decoder, width: int, height: int, au: AccessUnit, max_value: int,
                       device: torch.device) -> Iterator[np.ndarray]:
    """Integer RGB frames of one access unit: exactly what `nvc decode` outputs.

    Rendered under `exact_math` (TF32 off, deterministic cuDNN) whatever the process set before, so the quality
    `encode_file` measures is what a decoder on the same kind of device gets (docs/reliability.md, "Devices").
    """
    with exact_math():
        yield from _render_access_unit(dec, width, height, au, max_value, device)


def _render_access_unit(dec: Decoder, width: int, height: int, au: AccessUnit, max_value: int,
                        device: torch.device) -> Iterator[np.ndarray]:
    if dec.intra is None:
        items, payload, n_video = [], au.payload, au.frame_count
    else:
        items, payload = split_section(au.payload, au.frame_count)
        n_video = au.frame_count - len(items)
    if n_video and dec.codec is None:
        raise BitstreamError("corrupt all-intra stream: an access unit has frames without an intra picture")
    video = (_integer(f, max_value) for f in dec.codec.decode_segment(payload, dec.config, n_video, height, width,
                                                                      device)) if n_video else iter(())
    if dec.intra is None:
        yield from video
        return
    if not n_video and payload:
        raise BitstreamError("corrupt access unit: trailing bytes after the intra frames")
    yield from merge(au.frame_count, items, dec.intra, video, width, height, max_value, device)


class _Quality:
    """Accumulates per-frame PSNR (RGB, YUV 6:1:1) and MS-SSIM against reference frames."""

    def __init__(self, info: VideoInfo) -> None:
        self.info, self.rgb, self.yuv, self.ssim = info, [], [], []

    def add(self, decoded: np.ndarray, reference: np.ndarray) -> None:
        m = self.info.max_value
        self.rgb.append(frame_psnr(decoded, reference, m))
        self.yuv.append(psnr_yuv611(yuv_planes(decoded, self.info), yuv_planes(reference, self.info),
                                    (1 << self.info.bit_depth) - 1))
        if min(decoded.shape[:2]) >= 11:
            x = torch.from_numpy(decoded.astype(np.float32) / m)[None]
            y = torch.from_numpy(reference.astype(np.float32) / m)[None]
            self.ssim.append(float(ms_ssim(x, y)[0]))

    def values(self) -> dict:
        return {"rgb": self.rgb, "yuv": self.yuv, "ssim": self.ssim}

    def extend(self, values: dict) -> None:
        self.rgb += values["rgb"]
        self.yuv += values["yuv"]
        self.ssim += values["ssim"]

    def summary(self) -> dict:
        mean = lambda v: round(sum(v) / len(v), 4) if v else None  # noqa: E731
        return {"psnr_rgb_db": mean(self.rgb), "psnr_yuv_db": mean(self.yuv), "ms_ssim": mean(self.ssim)}


def encode_file(input_path: str, output_path: str, *, codec: str = "hinerv", preset: str | None = None,
                target: Target | None = None, overrides: dict | None = None, device: str = "auto",
                raw: RawOptions | None = None, segment_frames: int | None = None, container: str | None = None,
                progress: bool = True, resume: bool = False, intra: str | None = None,
                intra_quality: int | None = None, intra_period: int | None = None, drop_alpha: bool = False,
                overwrite: bool = True, select: Selection | None = None,
                on_plan: Callable[[dict], Callable[[int], None] | None] | None = None) -> dict:
    """Encode `input_path` into an MKV (default) or bare NVC stream (`container="nvc"` or a .nvc name).

    The video plugin configures itself for the clip (`configure`: preset, `target` — a `nvc_pipe.rate.Target`,
    None = the plugin's default quality, or the preset's fixed network when a preset is named — and `overrides`
    such as steps, time_limit, epochs, seed) before any training; `on_plan(plan)` then sees the plan (network
    size, steps, estimated seconds) and may return a `tick(n)` callback that is advanced by optimisation steps.
    Finished segments and training stages are checkpointed next to the output (`<output>.nvc-partial/`) and
    the directory is removed on success; `resume=True` continues an interrupted encode from there.
    `intra="balle"` codes the first frame of each segment (and every `intra_period`-th) with that image codec;
    `codec="balle"` (an image codec's name) codes every frame that way, with no video plugin.
    """
    spec, intra_codec = _intra_settings(codec, intra, intra_quality, intra_period)
    plugin = None if spec and spec.period == 1 and intra is None else load_codec(codec)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if plugin is None and (preset or target is not None or overrides):
        raise ConfigError(f"--codec {codec} codes every frame as an image: it takes --intra-quality, not presets, "
                          "rate targets or training options")
    if spec is not None and target is not None:
        raise ConfigError("rate targets do not cover intra frames yet: drop --intra or the rate target")
    dev = resolve_device(device)
    container = container or ("nvc" if output_path.endswith(".nvc") else "mkv")
    if container not in ("mkv", "nvc"):
        raise ConfigError(f"unknown output format {container!r} (mkv or nvc)")
    if segment_frames is not None and segment_frames <= 0:
        raise ConfigError("--segment-frames must be positive")
    if output_path == "-" and resume:
        raise ConfigError("--resume needs an output file, not standard output")
    check_writable(output_path)  # exit 4 now, not after the training
    t_start = time.perf_counter()
    aus, pts, segments = [], [], []
    with open_video(input_path, raw, drop_alpha=drop_alpha, select=select) as src:
        info = src.info
        seg_iter = src.segments(segment_frames)
        first = next(seg_iter, None)
        if first is None:
            raise InputError(f"no video frames in {input_path}")
        seg_iter = itertools.chain([first], seg_iter)
        cfg, clip, plan, tick = None, None, None, None
        if plugin is not None:
            whole = segment_frames is None or input_path == "-" or select is not None
            frames = len(first) if whole else count_frames(input_path, raw)
            cfg, clip = clip_for(plugin, preset, target, overrides, info, max(frames, len(first)), segment_frames,
                                 dev)
            plan = {**plugin.plan(cfg, clip), "device": dev.type}
            if plan.get("stream_bpp") is not None and clip.payload_bytes(plan["stream_bpp"]) <= 0:
                raise ConfigError(f"the target is below what the stream's headers alone cost "
                                  f"({clip.overhead_bytes} bytes): ask for a higher rate")
            tick = on_plan(plan) if on_plan is not None else None
        settings = plugin.settings(cfg) if plugin else {}
        ckpt = None
        if (input_path != "-" or resume) and output_path != "-":
            key = {"input": input_identity(input_path) if os.path.isfile(input_path) else input_path,
                   "codec": plugin.name if plugin else ALL_INTRA, "settings": settings,
                   "intra": spec.to_dict() if spec else {}, "segment_frames": segment_frames,
                   "raw": dataclasses.asdict(raw) if raw else None, "device": dev.type,
                   "payload_version": plugin.payload_version if plugin else 1}
            ckpt = Checkpoint(output_path, key, resume)
        dec = Decoder(plugin, plugin.config_from_dict(plugin.config_to_dict(cfg)) if plugin else None, intra_codec)
        aimed_bpp = plan.get("stream_bpp") if plan else None
        steps_per_segment = plan["steps"] / max(1, -(-clip.frames // clip.segment_frames)) if plan else 0
        corrected = False
        for seg in seg_iter:
            done = ckpt.segment(seg.index) if ckpt else None
            if done is not None:
                au_bytes, meta = done  # meta holds the segment's measured quality too
            budget = max(1, clip.payload_bytes(aimed_bpp, len(seg))) if aimed_bpp is not None else None
            if done is None:
                counted = _Counter(tick)
                payload, report = _encode_segment(seg, info, plugin, cfg, spec, intra_codec, dev,
                                                  progress and tick is None, ckpt, budget, counted)
                correction = None
                if budget is not None and hasattr(plugin, "correct") and not corrected:
                    # e.g. C3: one re-encode at a corrected λ when the real size misses the budget (once per encode)
                    corrected = True
                    fixed = plugin.correct(cfg, budget, len(payload), clip)
                    if fixed is not None:
                        cfg, correction = fixed
                        payload, report = _encode_segment(seg, info, plugin, cfg, spec, intra_codec, dev,
                                                          progress and tick is None, None, budget, counted)
                if tick is not None:
                    tick(max(0, round(steps_per_segment * len(seg) / clip.segment_frames) - counted.n))
                au_bytes = AccessUnit(seg.index, seg.start, seg.rgb.shape[0], payload).to_bytes()
                # Measure what the decoder will really produce: parse the AU bytes back and render them.
                seg_quality = _Quality(info)
                for k, frame in enumerate(render_access_unit(dec, info.width, info.height,
                                                             AccessUnit.from_bytes(au_bytes), info.max_value, dev)):
                    seg_quality.add(frame, seg.rgb[k])
                meta = {"index": seg.index, "first_frame": seg.start, "frames": seg.rgb.shape[0],
                        "bytes": len(au_bytes), **({"budget_bytes": budget} if budget is not None else {}), **report}
                if correction is not None:
                    meta["rate_correction"] = {**correction, "second_bytes": len(payload)}
                if ckpt:
                    ckpt.save_segment(seg.index, au_bytes, {**meta, "quality": seg_quality.values()})
                meta["quality"] = seg_quality.values()
            aus.append(au_bytes)
            pts.extend(int(p) for p in seg.pts)
            segments.append(meta)
        source_path, copy_window = src.path, src.copy_window
    quality = _Quality(info)
    for meta in segments:
        quality.extend(meta.pop("quality"))
    name = plugin.name if plugin else ALL_INTRA
    seq = SequenceHeader(info.width, info.height, info.pix_fmt, info.color_range, info.colorspace, info.fps,
                         info.time_base, len(pts), len(aus), tuple(pts), name,
                         plugin.payload_version if plugin else 1, plugin.config_to_dict(cfg) if plugin else {},
                         spec.to_dict() if spec else {})
    header = pack_stream_header(seq)
    stream_bytes = len(header) + sum(len(a) for a in aus)
    n = len(pts)
    duration = n / float(info.fps)
    target_info = _target_info(target, aimed_bpp, clip) if plugin else None
    file_bytes = None
    if container == "nvc" and output_path == "-":
        file_bytes = write_stdout([header, *aus])
    elif container == "nvc":
        with atomic_output(output_path, overwrite=overwrite) as tmp, open(tmp, "wb") as f:
            f.write(header)
            for a in aus:
                f.write(a)
    else:
        packets = [Packet(a, pts[s["first_frame"]], _segment_duration(pts, s, info)) for a, s in zip(aus, segments)]
        label = name + (f"+{spec.codec}" if spec and plugin else f":{spec.codec}" if spec else "")
        tags = {"NVC_CODEC": label, "NVC_VERSION": __version__, "title": f"nvc-pipe {label} stream"}
        if target_info:
            tags["NVC_TARGET"] = json.dumps(target_info, sort_keys=True)
        file_bytes = write_mkv(output_path, header, packets, info, tags, copy_from=source_path, overwrite=overwrite,
                               copy_window=copy_window)
    if ckpt:
        ckpt.remove()
    file_bytes = file_bytes if output_path == "-" else _file_size(output_path)
    return {
        "input": input_path, "output": output_path, "container": container, "codec": name,
        "preset": (preset or plugin.default_preset) if plugin else None, "device": str(dev), "frames": n,
        "width": info.width, "height": info.height, "pix_fmt": info.pix_fmt, "fps": str(info.fps),
        "target": target_info, "stream_bytes": stream_bytes, "file_bytes": file_bytes,
        "bpp": round(bpp(stream_bytes, n, info.width, info.height), 6),
        "bitrate_bps": round(8 * stream_bytes / max(duration, 1e-9), 1),
        "bpp_file": round(bpp(file_bytes, n, info.width, info.height), 6), **quality.summary(),
        "time_s": round(time.perf_counter() - t_start, 2), "plan": plan, "segments": segments,
        "config": {"settings": settings, "intra": spec.to_dict() if spec else {}},
    }


class _Counter:
    """Counts the optimisation steps a segment reports, passing them on to the whole-encode tick."""

    def __init__(self, tick: Callable[[int], None] | None) -> None:
        self.n, self._tick = 0, tick

    def __call__(self, n: int) -> None:
        self.n += n
        if self._tick is not None:
            self._tick(n)


def _target_info(target: Target | None, aimed_bpp: float | None, clip: Clip | None) -> dict | None:
    """What was asked for and the stream rate the plugin aimed at (None: a preset's fixed network)."""
    if aimed_bpp is None or clip is None:
        return None
    out = target.to_dict() if target is not None else {"kind": "quality", "value": DEFAULT_QUALITY, "default": True}
    out.update({"stream_bpp": round(aimed_bpp, 6), "bitrate_bps": round(clip.bitrate(aimed_bpp), 1)})
    return out


def _intra_settings(codec: str, intra: str | None, quality: int | None,
                    period: int | None) -> tuple[IntraSpec | None, ImageCodec | None]:
    """The intra spec of an encode: `--intra NAME`, or all-intra when `codec` names an image codec."""
    if intra is None and codec not in available_codecs() and codec in available_image_codecs():
        intra, period = codec, 1
    if intra is None:
        if quality is not None or period is not None:
            raise ConfigError("--intra-quality and --intra-period need --intra CODEC")
        return None, None
    if period is not None and period <= 0:
        raise ConfigError(f"--intra-period must be positive, got {period}")
    if intra not in available_image_codecs():
        raise ConfigError(f"unknown intra codec {intra!r} (installed: {', '.join(available_image_codecs())})")
    image = load_image_codec(intra)
    spec = IntraSpec(intra, image.default_quality if quality is None else quality, period or 0)
    return spec, image_codec_for(spec, from_stream=False)


def _encode_segment(seg: Segment, info: VideoInfo, plugin: VideoCodec | None, cfg, spec: IntraSpec | None,
                    intra_codec: ImageCodec | None, dev: torch.device, progress: bool,
                    ckpt: Checkpoint | None, budget: int | None = None,
                    tick: Callable[[int], None] | None = None) -> tuple[bytes, dict]:
    """One access unit's payload: the intra section (if any), then the video plugin's payload for the rest."""
    shrink = getattr(plugin, "shrink", None)
    if spec is None:
        work = run_stages(plugin.stages(cfg), Work(seg, info, cfg, dev, progress, budget_bytes=budget, tick=tick),
                          ckpt, shrink)
        return work.payload, work.report
    t0 = time.perf_counter()
    section, _decoded = encode_section(seg.rgb, spec, intra_codec, info.max_value, dev)
    report = {"intra_frames": len(spec.offsets(len(seg))), "intra_bytes": len(section),
              "time_s": {"intra": round(time.perf_counter() - t0, 3)}}
    rest = [k for k in range(len(seg)) if k not in set(spec.offsets(len(seg)))]
    if not rest:
        return section, report
    if plugin is None:
        raise ConfigError("all-intra encode left frames without an intra picture")  # unreachable: period 1
    sub = Segment(seg.rgb[rest], seg.pts[rest], seg.start, seg.index)
    work = run_stages(plugin.stages(cfg), Work(sub, info, cfg, dev, progress, tick=tick), ckpt, shrink)
    work.report.setdefault("time_s", {}).update(report.pop("time_s"))
    return section + work.payload, {**work.report, **report}


def _segment_duration(pts: list[int], segment: dict, info: VideoInfo) -> int:
    """Duration of a segment in time_base units (to the next segment's first pts, or one frame past its last)."""
    first = segment["first_frame"]
    last = first + segment["frames"]
    frame_dur = max(1, round(1 / (info.fps * info.time_base)))
    end = pts[last] if last < len(pts) else pts[last - 1] + frame_dur
    return max(1, end - pts[first])


def _file_size(path: str) -> int:
    return os.path.getsize(path)


def read_stream(path: str) -> tuple[SequenceHeader, list[bytes], str]:
    """Sequence header and AU bytes of an MKV or bare NVC file (sniffed by content, not by name)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    if head == MAGIC:
        with open(path, "rb") as f:
            data = f.read()
        seq, rest = parse_stream_header(data)
        return seq, list(split_access_units(rest)), "nvc"
    if head == MAGIC_IMAGE:
        raise InputError(f"{path} is an NVC image, not a video stream: use `nvc image decode`")
    header, _tags, packets = read_mkv(path)
    seq, rest = parse_stream_header(header)
    if rest:
        raise BitstreamError("corrupt stream: unexpected bytes after the sequence header")
    return seq, [p.payload for p in packets], "mkv"


def _info_from_header(seq: SequenceHeader) -> VideoInfo:
    try:
        return VideoInfo(seq.width, seq.height, seq.pix_fmt, seq.fps, seq.time_base, seq.color_range,
                         seq.colorspace)
    except (ValueError, KeyError) as exc:
        raise BitstreamError(f"corrupt sequence header: {exc}") from None


def _open_decoder(seq: SequenceHeader) -> Decoder:
    intra = image_codec_for(IntraSpec.from_dict(seq.intra), from_stream=True) if seq.intra else None
    if seq.codec == ALL_INTRA:
        if intra is None or seq.codec_config:
            raise BitstreamError("corrupt sequence header: an all-intra stream without intra settings")
        return Decoder(None, None, intra)
    codec = load_codec_for_stream(seq)
    return Decoder(codec, codec.config_from_dict(seq.codec_config), intra)


def load_codec_for_stream(seq: SequenceHeader) -> VideoCodec:
    try:
        codec = load_codec(seq.codec)
    except ConfigError:
        raise BitstreamError(f"stream needs codec plugin {seq.codec!r}, which is not installed") from None
    if seq.payload_version not in getattr(codec, "payload_versions", (codec.payload_version,)):
        raise BitstreamError(f"{seq.codec} payload version {seq.payload_version} is not supported "
                             f"(plugin reads {codec.payload_version})")
    return codec


def iter_decoded(seq: SequenceHeader, aus: list[bytes], device: torch.device) -> Iterator[tuple[np.ndarray, int]]:
    """(integer RGB frame, pts) for every frame, segment by segment (one segment's model in memory at a time)."""
    dec = _open_decoder(seq)
    info = _info_from_header(seq)
    if len(aus) != seq.segment_count:
        raise BitstreamError(f"stream has {len(aus)} access units, header declares {seq.segment_count}")
    produced = 0
    for i, raw_au in enumerate(aus):
        au = AccessUnit.from_bytes(raw_au)
        check_access_unit(au, seq, i)
        if au.first_frame != produced:
            raise BitstreamError(f"corrupt stream: access unit {i} starts at frame {au.first_frame}, "
                                 f"expected {produced}")
        for k, frame in enumerate(render_access_unit(dec, seq.width, seq.height, au, info.max_value, device)):
            yield frame, seq.pts[au.first_frame + k]
        produced += au.frame_count
    if produced != seq.frame_count:
        raise BitstreamError(f"stream ends after {produced} of {seq.frame_count} frames")


def decode_segment(path: str, index: int, device: str = "auto") -> Iterator[np.ndarray]:
    """Random access: the frames of access unit `index` alone (no other segment is decoded)."""
    seq, aus, _ = read_stream(path)
    if not 0 <= index < len(aus):
        raise ConfigError(f"segment {index} does not exist ({len(aus)} segments)")
    au = AccessUnit.from_bytes(aus[index])
    check_access_unit(au, seq, index)
    yield from render_access_unit(_open_decoder(seq), seq.width, seq.height, au, _info_from_header(seq).max_value,
                                  resolve_device(device))


def decode_frames(path: str, device: str = "auto") -> Iterator[np.ndarray]:
    """Decoded integer RGB frames (H, W, 3) of an MKV/NVC file, in display order."""
    seq, aus, _ = read_stream(path)
    for frame, _pts in iter_decoded(seq, aus, resolve_device(device)):
        yield frame


def decode_file(input_path: str, output_path: str, *, vcodec: str | None = None,
                codec_options: dict | None = None, pix_fmt: str | None = None, device: str = "auto",
                reference: str | None = None, raw: RawOptions | None = None) -> dict:
    """Decode to `output_path` ('-' = y4m on stdout); with `reference`, measure quality against it."""
    dev = resolve_device(device)
    if input_path == "-":
        input_path = spool_stdin()  # an MKV/.nvc on standard input: the reader seeks, the audio is copied
    seq, aus, container = read_stream(input_path)
    info = _info_from_header(seq)
    if container == "mkv":
        info = with_track_metadata(info, input_path)  # primaries, transfer, rotation: in the MKV track only
    t0 = time.perf_counter()
    quality = _Quality(info) if reference else None
    ref_frames = None
    ref_src = open_video(reference, raw, drop_alpha=True) if reference else None
    try:
        if ref_src is not None:
            ref_size = (ref_src.info.width, ref_src.info.height)
            if ref_size != (info.width, info.height):  # measured never, decoded anyway
                log.warning("reference %s is %dx%d, the stream %dx%d: no quality measured", reference, *ref_size,
                            info.width, info.height)
                quality = None
            else:
                ref_frames = ref_src.frames()
        sink = open_sink(output_path, info, vcodec=vcodec, codec_options=codec_options, pix_fmt=pix_fmt,
                         audio_from=input_path if container == "mkv" else None)
        with sink:
            n = 0
            for frame, pts in iter_decoded(seq, aus, dev):
                sink.write(frame, pts)
                if ref_frames is not None:
                    ref = next(ref_frames, None)
                    if ref is None:  # measure the overlap, keep decoding
                        log.warning("reference %s has %d frames, the stream %d: quality measured on the first %d",
                                    reference, n, seq.frame_count, n)
                        ref_frames = None
                    else:
                        quality.add(frame, _same_scale(ref[0], info.max_value))
                n += 1
    finally:
        if ref_src is not None:
            ref_src.__exit__(None, None, None)
    size = sum(len(a) for a in aus) + len(pack_stream_header(seq))
    report = {"input": input_path, "output": output_path, "frames": n, "width": seq.width, "height": seq.height,
              "codec": seq.codec, "device": str(dev), "stream_bytes": size,
              "bpp": round(bpp(size, n, seq.width, seq.height), 6), "time_s": round(time.perf_counter() - t0, 2),
              "fps": round(n / max(time.perf_counter() - t0, 1e-9), 2)}
    if quality is not None:
        report.update(quality.summary())
    return report


def _same_scale(rgb: np.ndarray, max_value: int) -> np.ndarray:
    """A reference frame on the stream's RGB scale (8-bit references of a deep stream and vice versa)."""
    if max_value == 255 and rgb.dtype != np.uint8:
        return ((rgb.astype(np.uint32) + 128) // 257).astype(np.uint8)
    if max_value != 255 and rgb.dtype == np.uint8:
        return rgb.astype(np.uint16) * 257
    return rgb


def _describe(dec: Decoder, au: AccessUnit, seq: SequenceHeader) -> dict:
    payload, n_video, out = au.payload, au.frame_count, {}
    if dec.intra is not None:
        items, payload = split_section(au.payload, au.frame_count)
        n_video -= len(items)
        out = {"intra_frames": [k for k, _ in items], "intra_bytes": len(au.payload) - len(payload)}
    if n_video and dec.codec is not None:
        out.update(dec.codec.describe(payload, dec.config, n_video, seq.height, seq.width))
    return out


def _stored_target(path: str) -> dict | None:
    """The rate target an MKV was encoded for (its NVC_TARGET tag), or None."""
    _header, tags, packets = read_mkv(path)
    close = getattr(packets, "close", None)
    if close is not None:
        close()
    try:
        target = json.loads(tags.get("NVC_TARGET", "null"))
    except ValueError:
        return None
    return target if isinstance(target, dict) else None


def inspect_file(path: str) -> dict:
    """Stream summary for `nvc info`: header fields, sizes per section, bpp."""
    seq, aus, container = read_stream(path)
    dec = _open_decoder(seq)
    header_bytes = len(pack_stream_header(seq))
    stream = header_bytes + sum(len(a) for a in aus)
    units = []
    for i, raw_au in enumerate(aus):
        au = AccessUnit.from_bytes(raw_au)
        check_access_unit(au, seq, i)
        units.append({"index": i, "first_frame": au.first_frame, "frames": au.frame_count, "bytes": len(raw_au),
                      **_describe(dec, au, seq)})
    size = _file_size(path)
    n = seq.frame_count
    duration = Fraction(seq.pts[-1] - seq.pts[0], 1) * seq.time_base + 1 / seq.fps
    return {
        "file": path, "container": container, "codec": seq.codec, "payload_version": seq.payload_version,
        "width": seq.width, "height": seq.height, "pix_fmt": seq.pix_fmt, "color_range": seq.color_range,
        "colorspace": seq.colorspace, "fps": str(seq.fps), "time_base": str(seq.time_base), "frames": n,
        "duration_s": round(float(duration), 4), "segments": seq.segment_count, "file_bytes": size,
        "stream_bytes": stream, "sequence_header_bytes": header_bytes,
        "bpp": round(bpp(stream, n, seq.width, seq.height), 6),
        "bpp_file": round(bpp(size, n, seq.width, seq.height), 6),
        "kbps": round(8 * stream / max(float(duration), 1e-9) / 1000, 2), "codec_config": seq.codec_config,
        "intra": seq.intra, "target": _stored_target(path) if container == "mkv" else None,
        "access_units": units,
    }


__all__ = ["encode_file", "decode_file", "decode_frames", "decode_segment", "inspect_file", "read_stream", "RawOptions"]
