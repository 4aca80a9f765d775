"""The library API behind the CLI: encode a file, decode a file, iterate decoded frames, inspect a stream.

    encode_file: demux → segment jobs (`jobs.encode_segment`: codec stages → AU → decoded back: measured quality),
                 run by an executor (`executors`: this process or Ray) → stream → MKV/.nvc (`container`)
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
from typing import Callable, Iterator

import numpy as np
import torch

from . import __version__
from .bitstream.spec import AccessUnit, SequenceHeader, check_access_unit, pack_stream_header
from .checkpoint import DEFAULT_STEP_EVERY_S, Checkpoint, input_identity
from .container import info_from_header, read_stream, stored_target, write_stream
from .diskcheck import check_free_space
from .diskcheck import estimate as estimate_disk
from .errors import BitstreamError, ConfigError, InputError
from .executors import check_available as check_executor
from .executors import make_executor, resolve_device
from .intra.frames import ALL_INTRA, IntraSpec, image_codec_for, split_section
from .jobs import Decoder, FrameQuality, SegmentJob, SegmentResult, encode_segment, render_access_unit
from .media.atomic import check_writable
from .media.clip import Segment, VideoInfo
from .media.demux import RawOptions, Selection, count_frames, open_video
from .media.mux import with_track_metadata
from .media.sink import open_sink
from .media.spool import spool_stdin
from .metrics import bpp
from .plugins import ImageCodec, VideoCodec, available_codecs, available_image_codecs, load_codec, load_image_codec
from .rate import DEFAULT_QUALITY, Clip, Target, rate_miss

log = logging.getLogger(__name__)


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


def encode_file(input_path: str, output_path: str, *, codec: str = "hinerv", preset: str | None = None,
                target: Target | None = None, overrides: dict | None = None, device: str = "auto",
                raw: RawOptions | None = None, segment_frames: int | None = None, container: str | None = None,
                progress: bool = True, resume: bool = False, intra: str | None = None,
                intra_quality: int | None = None, intra_period: int | None = None, drop_alpha: bool = False,
                overwrite: bool = True, select: Selection | None = None,
                on_plan: Callable[[dict], Callable[[int], None] | None] | None = None,
                executor: str = "local", ray_address: str | None = None,
                checkpoint_every: float | None = None) -> dict:
    """Encode `input_path` into an MKV (default) or bare NVC stream (`container="nvc"` or a .nvc name).

    The video plugin configures itself for the clip (`configure`: preset, `target` — a `nvc_pipe.rate.Target`,
    None = the plugin's default quality, or the preset's fixed network when a preset is named — and `overrides`
    such as steps, time_limit, epochs, seed) before any training; `on_plan(plan)` then sees the plan (network
    size, steps, estimated seconds) and may return a `tick(n)` callback that is advanced by optimisation steps.
    Each segment is a job (`jobs.encode_segment`) run by `executor` ("local": this process, in order; "ray": Ray
    tasks on a local Ray or the cluster at `ray_address` / RAY_ADDRESS); the stream is assembled here.
    Finished segments (and, locally, training stages) are checkpointed next to the output
    (`<output>.nvc-partial/`) and the directory is removed on success; `resume=True` continues an interrupted
    encode from there. Inside a local training stage a step checkpoint is saved every `checkpoint_every` seconds
    (None: 5 min) and on SIGINT/SIGTERM (0: neither). `intra="balle"` codes the first frame of each segment (and
    every `intra_period`-th) with that image codec; `codec="balle"` (an image codec's name) codes every frame that
    way, with no video plugin.
    """
    spec, _intra_codec = _intra_settings(codec, intra, intra_quality, intra_period)
    plugin = None if spec and spec.period == 1 and intra is None else load_codec(codec)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if plugin is None and (preset or target is not None or overrides):
        raise ConfigError(f"--codec {codec} codes every frame as an image: it takes --intra-quality, not presets, "
                          "rate targets or training options")
    if spec is not None and target is not None:
        raise ConfigError("rate targets do not cover intra frames yet: drop --intra or the rate target")
    check_executor(executor)  # a missing Ray: exit 2 now
    dev = resolve_device(device) if executor == "local" else None
    container = container or ("nvc" if output_path.endswith(".nvc") else "mkv")
    if container not in ("mkv", "nvc"):
        raise ConfigError(f"unknown output format {container!r} (mkv or nvc)")
    if segment_frames is not None and segment_frames <= 0:
        raise ConfigError("--segment-frames must be positive")
    if output_path == "-" and resume:
        raise ConfigError("--resume needs an output file, not standard output")
    check_writable(output_path)  # exit 4 now, not after the training
    runner = make_executor(executor, ray_address)
    try:
        dev = dev or runner.device(device)
        return _encode(input_path, output_path, plugin, spec, preset, target, overrides, dev, raw, segment_frames,
                       container, progress, resume, drop_alpha, overwrite, select, on_plan, runner, checkpoint_every)
    finally:
        runner.close()


def _encode(input_path, output_path, plugin, spec, preset, target, overrides, dev, raw, segment_frames, container,
            progress, resume, drop_alpha, overwrite, select, on_plan, runner, checkpoint_every) -> dict:
    """`encode_file` once its options are checked: make the segment jobs, run them with `runner`, assemble."""
    t_start = time.perf_counter()
    done: dict[int, tuple[bytes, dict]] = {}  # segment index -> (AU bytes, report with per-frame quality)
    pts_of: dict[int, list[int]] = {}
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
            copied = os.path.getsize(src.path) if container == "mkv" and src.copied_streams else 0
            checkpoints = (input_path != "-" or resume) and output_path != "-"
            check_free_space(output_path, estimate_disk(plan, clip, copied, checkpoints))  # exit 4 before training
            tick = on_plan(plan) if on_plan is not None else None
        settings = plugin.settings(cfg) if plugin else {}
        ckpt = None
        if (input_path != "-" or resume) and output_path != "-":
            key = {"input": input_identity(input_path) if os.path.isfile(input_path) else input_path,
                   "codec": plugin.name if plugin else ALL_INTRA, "settings": settings,
                   "intra": spec.to_dict() if spec else {}, "segment_frames": segment_frames,
                   "raw": dataclasses.asdict(raw) if raw else None, "device": dev.type,
                   "payload_version": plugin.payload_version if plugin else 1}
            ckpt = Checkpoint(output_path, key, resume,
                              step_every=DEFAULT_STEP_EVERY_S if checkpoint_every is None else checkpoint_every)
        aimed_bpp = plan.get("stream_bpp") if plan else None
        steps_per_segment = plan["steps"] / max(1, -(-clip.frames // clip.segment_frames)) if plan else 0
        local = runner.name == "local"
        counted = _Counter(tick)  # local jobs tick as they train; the rest of a segment's steps when it lands

        def job(seg: Segment, config, correct: bool) -> SegmentJob:
            budget = max(1, clip.payload_bytes(aimed_bpp, len(seg))) if aimed_bpp is not None else None
            return SegmentJob(seg, info, plugin.name if plugin else None, config, spec, str(dev), budget, clip,
                              correct, progress and tick is None and local, ckpt if local else None)

        def to_encode():
            """The segments still to encode; those a checkpoint holds are taken from it."""
            for seg in seg_iter:
                pts_of[seg.index] = [int(p) for p in seg.pts]
                saved = ckpt.segment(seg.index) if ckpt else None
                if saved is not None:
                    done[seg.index] = saved
                else:
                    yield seg

        def land(result: SegmentResult) -> None:
            if tick is not None:
                n = result.meta["frames"]
                tick(max(0, round(steps_per_segment * n / clip.segment_frames) - counted.n))
            counted.n = 0
            if ckpt:
                ckpt.save_segment(result.index, result.au, result.meta)
            done[result.index] = (result.au, result.meta)

        pending = to_encode()
        if aimed_bpp is not None and hasattr(plugin, "correct"):
            # e.g. C3: the first segment encoded may correct the config (λ), for itself and all later ones
            head = next(pending, None)
            replay = next((m["correct_from"] for _, m in done.values() if "correct_from" in m), None)
            if replay is not None:  # resumed after that segment: the same corrections, from what it recorded
                coded = replay["coded_bytes"]
                for size in coded if isinstance(coded, list) else [coded]:
                    fixed = plugin.correct(cfg, replay["budget_bytes"], size, clip)
                    if fixed is None:
                        break
                    cfg = fixed[0]
                pending = itertools.chain([head] if head is not None else [], pending)
            elif head is not None:
                for _, result in runner.map(encode_segment, [job(head, cfg, True)], tick=counted):
                    land(result)
                    cfg = result.config
        for _, result in runner.map(encode_segment, (job(seg, cfg, False) for seg in pending), tick=counted):
            land(result)
        source_path, copy_window = src.path, src.copy_window
    order = sorted(done)
    aus = [done[i][0] for i in order]
    segments = [done[i][1] for i in order]
    pts = [p for i in order for p in pts_of[i]]
    quality = FrameQuality(info)
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
    label = name + (f"+{spec.codec}" if spec and plugin else f":{spec.codec}" if spec else "")
    tags = {"NVC_CODEC": label, "NVC_VERSION": __version__, "title": f"nvc-pipe {label} stream"}
    if target_info:
        tags["NVC_TARGET"] = json.dumps(target_info, sort_keys=True)
    file_bytes = write_stream(output_path, container, header, aus, [(s["first_frame"], s["frames"]) for s in segments],
                              pts, info, tags, copy_from=source_path, copy_window=copy_window, overwrite=overwrite)
    if ckpt:
        ckpt.remove()
    achieved_bpp = bpp(stream_bytes, n, info.width, info.height)
    missed = rate_miss(name, target_info, achieved_bpp, clip) if target_info else None
    warnings = [missed] if missed else []
    return {
        "input": input_path, "output": output_path, "container": container, "codec": name,
        "preset": (preset or plugin.default_preset) if plugin else None, "device": str(dev), "frames": n,
        "width": info.width, "height": info.height, "pix_fmt": info.pix_fmt, "fps": str(info.fps),
        "target": target_info, "stream_bytes": stream_bytes, "file_bytes": file_bytes,
        "bpp": round(achieved_bpp, 6), "bitrate_bps": round(8 * stream_bytes / max(duration, 1e-9), 1),
        "bpp_file": round(bpp(file_bytes, n, info.width, info.height), 6), **quality.summary(),
        "time_s": round(time.perf_counter() - t_start, 2), "plan": plan, "segments": segments,
        "config": {"settings": settings, "intra": spec.to_dict() if spec else {}}, "warnings": warnings,
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
    info = info_from_header(seq)
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
    yield from render_access_unit(_open_decoder(seq), seq.width, seq.height, au, info_from_header(seq).max_value,
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
    info = info_from_header(seq)
    if container == "mkv":
        info = with_track_metadata(info, input_path)  # primaries, transfer, rotation: in the MKV track only
    t0 = time.perf_counter()
    quality = FrameQuality(info) if reference else None
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
    size = os.path.getsize(path)
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
        "intra": seq.intra, "target": stored_target(path) if container == "mkv" else None,
        "access_units": units,
    }


__all__ = ["encode_file", "decode_file", "decode_frames", "decode_segment", "inspect_file", "read_stream", "RawOptions"]
