"""The `nvc` command: argument parsing, human/JSON output, and turning errors into one stderr line.

This is the only module that prints. Exit codes: 0 ok, 1 other failure, 2 bad input or option, 3 corrupt or
foreign stream, 4 output not writable, 130 interrupted. Set NVC_DEBUG=1 to get tracebacks.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from fractions import Fraction

from . import __version__
from .errors import ConfigError, NvcError

PROG = "nvc"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (expected WxH, e.g. 1920x1080)") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}")
    return w, h


def _fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid frame rate {text!r} (e.g. 25, 30000/1001)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid frame rate {text!r}")
    return value


def _time(text: str) -> Fraction:
    """ffmpeg's time syntax: seconds (``1.5``, ``500ms``) or ``[HH:]MM:SS[.frac]``."""
    t = text.strip()
    scale = Fraction(1)
    for suffix, factor in (("ms", Fraction(1, 1000)), ("us", Fraction(1, 10**6)), ("s", Fraction(1))):
        if t.endswith(suffix) and ":" not in t:
            t, scale = t[: -len(suffix)], factor
            break
    parts = t.split(":")
    try:
        if len(parts) > 3 or not all(p.replace(".", "", 1).isdigit() for p in parts) or \
                any("." in p for p in parts[:-1]):
            raise ValueError
        value = Fraction(0)
        for p in parts:
            value = value * 60 + Fraction(p)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid time {text!r} (e.g. 2.5, 500ms, 00:01:02.5)") from None
    return value * scale


def _at_least_one(text: str) -> int:
    v = _positive(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def _bitrate(text: str) -> float:
    from .rate import parse_bitrate

    try:
        return parse_bitrate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    from .rate import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _interval(text: str) -> float:
    """--checkpoint-every: a duration as --time-limit takes it, or 0 (off)."""
    from .rate import parse_duration

    if text.strip() in ("0", "0s", "off"):
        return 0.0
    try:
        return parse_duration(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30s or 5m, or 0 (off), got {text!r}") from None


def _float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _option(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def _add_raw_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("raw input (.yuv/.rgb files; default: from names like clip_1920x1080_50fps_420_10bit.yuv)"
                             " and image sequences (img%03d.png)")
    g.add_argument("--size", "-s", type=_size, metavar="WxH", help="frame size of a raw input")
    g.add_argument("--fps", "-framerate", "-r", type=_fps, metavar="F",
                   help="frame rate of a raw input or image sequence (25, 30000/1001; images default to 25)")
    g.add_argument("--pix-fmt", "-pix_fmt", metavar="FMT",
                   help="pixel format of a raw input (yuv420p, yuv420p10le, ...)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Neural video codec for FFmpeg workflows.",
                     epilog="Run 'nvc COMMAND -h' for a command's options.")
    parser.add_argument("--version", action="store_true", help="print versions of nvc, its bitstream and libraries")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each stage")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    enc = sub.add_parser("encode", help="encode a video into an NVC stream (MKV or bare .nvc)",
                         description="Encode any input FFmpeg reads into an NVC stream in Matroska (audio copied).")
    enc.add_argument("input", help="input file, or '-' for y4m on stdin")
    enc.add_argument("-o", "--output", required=True, help="output .mkv (default) or .nvc")
    enc.add_argument("-f", "--format", choices=("mkv", "nvc"), help="output format (default: from the name)")
    enc.add_argument("-c", "--codec", default="hinerv",
                     help="video codec plugin (default: hinerv), or an image codec (balle, evc): every frame intra")
    enc.add_argument("-p", "--preset", help="preset name (see 'nvc presets'; default: the codec's 'fast')")
    rate = enc.add_argument_group("rate (at most one; none: the codec's default quality, or a named preset's "
                                  "fixed network)")
    rate.add_argument("--bitrate", "-b:v", dest="bitrate", type=_bitrate, metavar="RATE",
                      help="video stream bits/s, ffmpeg suffixes: 500k, 2M, 1.5M")
    rate.add_argument("--bpp", type=_float_arg, metavar="X", help="video stream bits per pixel")
    rate.add_argument("--quality", "-crf", dest="quality", type=_int_arg, metavar="Q",
                      help="0..51, lower is better (CRF-like; 6 steps halve the rate)")
    rate.add_argument("--lambda", dest="rd_lambda", type=_float_arg, metavar="L",
                      help="C3 only: the rate-distortion lambda itself (no rate control)")
    enc.add_argument("--steps", type=_positive, help="optimisation steps in all (default: from the clip)")
    enc.add_argument("--time-limit", type=_duration, metavar="T",
                     help="cap training to this wall time on this device: 90s, 10m, 1.5h")
    enc.add_argument("--epochs", type=_positive, help="main training epochs (paper recipes; pruning/QAT scale along)")
    enc.add_argument("--prune-epochs", type=_positive, help="pruning fine-tune epochs")
    enc.add_argument("--qat-epochs", type=_positive, help="Quant-Noise fine-tune epochs")
    enc.add_argument("--batch-size", type=_at_least_one, help="patches (or frames) per training step")
    enc.add_argument("--seed", type=_positive, help="random seed (default 0)")
    enc.add_argument("--segment-frames", type=_positive, help="frames per temporal segment (default: whole clip)")
    enc.add_argument("--intra", metavar="CODEC", help="code intra frames with this image codec (balle, evc)")
    enc.add_argument("--intra-period", type=_positive, metavar="K",
                     help="an intra frame every K frames of a segment (default: its first frame only)")
    enc.add_argument("--intra-quality", type=_positive, metavar="Q", help="image codec quality (see 'nvc presets')")
    enc.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    enc.add_argument("--resume", action="store_true",
                     help="continue an interrupted encode from its checkpoints (OUTPUT.nvc-partial/)")
    enc.add_argument("--checkpoint-every", type=_interval, metavar="T",
                     help="save the training state this often (and on Ctrl-C/SIGTERM) for --resume: 30s, 5m; "
                          "0 = only between stages (default: 5m)")
    enc.add_argument("--json", action="store_true", help="print the encode report as JSON")
    enc.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output if it exists")
    enc.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    enc.add_argument("--drop-alpha", action="store_true", help="encode a source with alpha without it (else refused)")
    enc.add_argument("-ss", dest="start", type=_time, metavar="T", help="start at this time of the input (as ffmpeg)")
    enc.add_argument("-t", dest="duration", type=_time, metavar="T", help="encode this long (as ffmpeg)")
    enc.add_argument("-frames:v", "--frames", dest="frames", type=_at_least_one, metavar="N",
                     help="encode at most N frames (as ffmpeg)")
    _add_raw_options(enc)

    dec = sub.add_parser("decode", help="decode an NVC stream to y4m/raw or any FFmpeg encoder",
                         description="Decode an NVC MKV/.nvc file. '-o -' writes y4m to stdout for '| ffmpeg -i -'.")
    dec.add_argument("input", help="MKV or .nvc file")
    dec.add_argument("-o", "--output", required=True, help="'-' (y4m on stdout), .y4m, .yuv, or any video file")
    dec.add_argument("--vcodec", help="FFmpeg encoder for video files (default by container, e.g. libx264)")
    dec.add_argument("--codec-opt", type=_option, action="append", default=[], metavar="KEY=VALUE",
                     help="encoder option, repeatable (e.g. crf=18, preset=slow)")
    dec.add_argument("--out-pix-fmt", dest="out_pix_fmt", help="output pixel format (default: the source's)")
    dec.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    dec.add_argument("--ref", help="reference video: print PSNR/MS-SSIM of the decoded frames against it")
    dec.add_argument("--json", action="store_true", help="print the decode report as JSON")
    dec.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output if it exists")
    _add_raw_options(dec)

    info = sub.add_parser("info", help="describe an NVC stream", description="Summarise an NVC MKV/.nvc file.")
    info.add_argument("input")
    info.add_argument("--json", action="store_true")

    pre = sub.add_parser("presets", help="list codecs and presets")
    pre.add_argument("-c", "--codec", help="only this codec")

    from .intra import cli as intra_cli

    intra_cli.add_parsers(sub)

    try:
        from .eval import cli as eval_cli
    except ImportError:  # the evaluation harness is optional
        eval_cli = None
    if eval_cli is not None:
        eval_cli.add_parser(sub)
    return parser


def _raw(args):
    from .media.demux import RawOptions

    if args.size is None and args.fps is None and args.pix_fmt is None:
        return None
    return RawOptions(size=args.size, fps=args.fps, pix_fmt=args.pix_fmt)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _selection(args):
    from .media.demux import Selection

    if args.start is None and args.duration is None and args.frames is None:
        return None
    return Selection(args.start or Fraction(0), args.duration, args.frames)


def _check_output(path: str, overwrite: bool, inputs: list[str]) -> None:
    if path == "-":
        return
    for src in inputs:
        if src != "-" and os.path.exists(src) and os.path.exists(path) and os.path.samefile(src, path):
            raise ConfigError(f"output {path} is also an input")
    if os.path.exists(path) and not overwrite:
        raise ConfigError(f"output {path} exists (use -y to overwrite)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigError(f"output directory {parent} does not exist")


def _cmd_encode(args) -> int:
    from .api import encode_file
    from .rate import make_target

    target = make_target(args.bitrate, args.bpp, args.quality)  # before the output check: bad options first
    if args.rd_lambda is not None and (args.rd_lambda <= 0 or target is not None):
        raise ConfigError("--lambda must be > 0" if args.rd_lambda <= 0 else
                          "give --lambda or a rate target, not both")
    _check_output(args.output, args.overwrite or args.resume, [args.input])
    overrides = {"epochs": args.epochs, "prune_epochs": args.prune_epochs, "qat_epochs": args.qat_epochs,
                 "batch_size": args.batch_size, "seed": args.seed, "steps": args.steps,
                 "time_limit": args.time_limit, "lambda": args.rd_lambda}
    bar = _PlanPrinter(show=not args.quiet, bar=not args.quiet and not args.json)
    try:
        report = encode_file(args.input, args.output, codec=args.codec, preset=args.preset, target=target,
                             overrides=overrides, device=args.device, raw=_raw(args),
                             segment_frames=args.segment_frames, container=args.format,
                             progress=not args.quiet and not args.json, resume=args.resume, intra=args.intra,
                             intra_quality=args.intra_quality, intra_period=args.intra_period,
                             drop_alpha=args.drop_alpha, overwrite=args.overwrite or args.resume,
                             select=_selection(args), on_plan=bar, checkpoint_every=args.checkpoint_every)
    finally:
        bar.close()
    out = sys.stderr if args.output == "-" else sys.stdout  # stdout holds the stream
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        intra = report["config"]["intra"]
        what = f"{report['codec']}:{report['preset']}" if report["preset"] else report["codec"]
        if intra and report["preset"]:
            what += f" + {intra['codec']} q{intra['quality']} intra"
        elif intra:
            what = f"{intra['codec']} q{intra['quality']} all-intra"
        print(f"{report['output']}: {report['frames']} frames {report['width']}x{report['height']} "
              f"{what} on {report['device']} in {report['time_s']:.1f} s", file=out)
        print(f"  stream {report['stream_bytes']} B  bpp {report['bpp']:.5f}  {report['bitrate_bps'] / 1000:.1f} kb/s"
              f"  (file {report['file_bytes']} B, bpp {report['bpp_file']:.5f})", file=out)
        if report["target"]:
            print(f"  target {_target_text(report['target'])}", file=out)
        ssim = report["ms_ssim"]
        print(f"  PSNR {report['psnr_rgb_db']:.2f} dB RGB, {report['psnr_yuv_db']:.2f} dB YUV 6:1:1"
              + (f", MS-SSIM {ssim:.4f}" if ssim is not None else ""), file=out)
    return 0


CPU_WARN_S = 30 * 60


class _PlanPrinter:
    """`encode_file`'s on_plan: prints the plan (and a long-encode warning) on stderr, then runs one bar in steps."""

    def __init__(self, show: bool, bar: bool) -> None:
        self.show, self.want_bar, self.bar = show, bar, None

    def __call__(self, plan: dict):
        est = plan.get("estimated_s")
        if self.show:
            _note(f"{PROG}: plan: {plan.get('summary', '')}; about {_duration_text(est)} on this device"
                  if est is not None else f"{PROG}: plan: {plan.get('summary', '')}")
            if est is not None and est > CPU_WARN_S and plan.get("device", "cpu") == "cpu":
                _note(f"{PROG}: warning: this CPU encode is estimated to take {_duration_text(est)} "
                      "(--time-limit or --steps shorten it; a GPU is much faster)")
        if not self.want_bar or not plan.get("steps"):
            return None
        from tqdm.auto import tqdm

        self.bar = tqdm(total=int(plan["steps"]), desc="encode", unit="step", dynamic_ncols=True)
        return self.bar.update

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _note(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _target_text(t: dict) -> str:
    from .rate import Target

    asked = "default quality" if t.get("default") else str(Target(t["kind"], t["value"]))
    return f"{asked} -> aimed at {t['stream_bpp']:.5f} bpp, {t['bitrate_bps'] / 1000:.1f} kb/s"


def _cmd_decode(args) -> int:
    from .api import decode_file

    _check_output(args.output, args.overwrite, [args.input] + ([args.ref] if args.ref else []))
    report = decode_file(args.input, args.output, vcodec=args.vcodec, codec_options=dict(args.codec_opt) or None,
                         pix_fmt=args.out_pix_fmt, device=args.device, reference=args.ref, raw=_raw(args))
    out = sys.stderr if args.output == "-" else sys.stdout
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        line = (f"{report['output']}: {report['frames']} frames {report['width']}x{report['height']} decoded on "
                f"{report['device']} in {report['time_s']:.1f} s ({report['fps']:.1f} fps), bpp {report['bpp']:.5f}")
        if "psnr_rgb_db" in report:
            line += f", PSNR {report['psnr_rgb_db']:.2f} dB RGB vs {args.ref}"
        print(line, file=out)
    return 0


def _cmd_info(args) -> int:
    from .api import inspect_file

    r = inspect_file(args.input)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['file']}: NVC {r['codec']} stream in {r['container']}, {r['width']}x{r['height']} {r['pix_fmt']}, "
          f"{r['fps']} fps, {r['frames']} frames ({r['duration_s']} s), {r['segments']} segment(s)")
    print(f"  stream {r['stream_bytes']} B ({r['kbps']} kb/s), bpp {r['bpp']:.5f}; file {r['file_bytes']} B, "
          f"bpp {r['bpp_file']:.5f}; sequence header {r['sequence_header_bytes']} B")
    if r.get("target"):
        print(f"  target {_target_text(r['target'])}; achieved {r['bpp']:.5f} bpp, {r['kbps']} kb/s")
    for au in r["access_units"]:
        extra = ", ".join(f"{k} {v}" for k, v in au.items() if k not in ("index", "first_frame", "frames", "bytes")
                          and not isinstance(v, dict))
        print(f"  AU {au['index']}: frames {au['first_frame']}..{au['first_frame'] + au['frames'] - 1}, "
              f"{au['bytes']} B; {extra}")
    return 0


def _cmd_presets(args) -> int:
    from .plugins import available_codecs, load_codec

    for name in ([args.codec] if args.codec else available_codecs()):
        codec = load_codec(name)
        print(f"{name}:")
        for pname in codec.presets:
            mark = "*" if pname == codec.default_preset else " "
            print(f" {mark} {pname:<14} {codec.preset_summary(pname)}")
    return 0


def _versions() -> str:
    import av
    import constriction
    import torch

    from .bitstream.spec import VERSION
    from .plugins import available_codecs, available_image_codecs

    return (f"nvc {__version__} (bitstream {VERSION[0]}.{VERSION[1]}); PyAV {av.__version__} "
            f"(FFmpeg {getattr(av, 'ffmpeg_version_info', '?')}); torch {torch.__version__}; constriction "
            f"{getattr(constriction, '__version__', '0.5')}; codecs: {', '.join(available_codecs())}; "
            f"image codecs: {', '.join(available_image_codecs())}")


COMMANDS = {"encode": _cmd_encode, "decode": _cmd_decode, "info": _cmd_info, "presets": _cmd_presets}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="nvc: %(message)s")
    if args.version:
        print(_versions())
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    handler = COMMANDS.get(args.command) or getattr(args, "handler", None)
    # SIGTERM unwinds like Ctrl-C, so atomic outputs and temp files are cleaned up on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return handler(args)
    except NvcError as exc:
        _fail(f"{PROG} {args.command}: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        resumable = args.command == "encode" and args.output != "-" and any(
            n.endswith((".au", ".npz")) for n in _listdir(args.output + ".nvc-partial"))
        hint = " (continue with --resume)" if resumable else ""
        _fail(f"{PROG} {args.command}: interrupted{hint}")
        return 130
    except BrokenPipeError:
        _fail(f"{PROG} {args.command}: error: output pipe closed")
        return 4
    except Exception as exc:  # a bug: still one line, unless debugging
        if os.environ.get("NVC_DEBUG"):
            raise
        _fail(f"{PROG} {args.command}: internal error: {type(exc).__name__}: {exc} (set NVC_DEBUG=1 for details)")
        return 1


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _fail(line: str) -> None:
    try:
        sys.stderr.write(line.replace("\n", " ") + "\n")
        sys.stderr.flush()
    except OSError:
        pass
