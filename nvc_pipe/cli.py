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
from . import cliargs
from .errors import ConfigError, NvcError

PROG = "nvc"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} -h')\n")


def _add_raw_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("raw input (.yuv/.rgb files; default: from names like clip_1920x1080_50fps_420_10bit.yuv)"
                             " and image sequences (img%03d.png)")
    g.add_argument("--size", "-s", type=cliargs.size, metavar="WxH", help="frame size of a raw input")
    g.add_argument("--fps", "-framerate", "-r", type=cliargs.fps, metavar="F",
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
    rate.add_argument("--bitrate", "-b:v", dest="bitrate", type=cliargs.bitrate, metavar="RATE",
                      help="video stream bits/s, ffmpeg suffixes: 500k, 2M, 1.5M")
    rate.add_argument("--bpp", type=cliargs.float_arg, metavar="X", help="video stream bits per pixel")
    rate.add_argument("--quality", "-crf", dest="quality", type=cliargs.int_arg, metavar="Q",
                      help="0..51, lower is better (CRF-like; 6 steps halve the rate)")
    rate.add_argument("--lambda", dest="rd_lambda", type=cliargs.float_arg, metavar="L",
                      help="C3 and HiNeRV rd-* presets: the rate-distortion lambda itself (no rate control)")
    enc.add_argument("--steps", type=cliargs.positive, help="optimisation steps in all (default: from the clip)")
    enc.add_argument("--time-limit", type=cliargs.duration, metavar="T",
                     help="cap training to this wall time on this device: 90s, 10m, 1.5h")
    enc.add_argument("--epochs", type=cliargs.positive,
                     help="main training epochs (paper recipes; pruning/QAT scale along)")
    enc.add_argument("--prune-epochs", type=cliargs.positive, help="pruning fine-tune epochs")
    enc.add_argument("--qat-epochs", type=cliargs.positive, help="Quant-Noise fine-tune epochs")
    enc.add_argument("--batch-size", type=cliargs.at_least_one, help="patches (or frames) per training step")
    enc.add_argument("--seed", type=cliargs.positive, help="random seed (default 0)")
    enc.add_argument("--segment-frames", type=cliargs.positive,
                     help="frames per temporal segment (default: whole clip)")
    enc.add_argument("--intra", metavar="CODEC", help="code intra frames with this image codec (balle, evc)")
    enc.add_argument("--intra-period", type=cliargs.positive, metavar="K",
                     help="an intra frame every K frames of a segment (default: its first frame only)")
    enc.add_argument("--intra-quality", type=cliargs.positive, metavar="Q",
                     help="image codec quality (see 'nvc presets')")
    enc.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    cliargs.add_executor_options(enc)
    enc.add_argument("--resume", action="store_true",
                     help="continue an interrupted encode from its checkpoints (OUTPUT.nvc-partial/)")
    enc.add_argument("--checkpoint-every", type=cliargs.interval, metavar="T",
                     help="save the training state this often (and on Ctrl-C/SIGTERM) for --resume: 30s, 5m; "
                          "0 = only between stages (default: 5m)")
    enc.add_argument("--json", action="store_true", help="print the encode report as JSON")
    enc.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output if it exists")
    enc.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    enc.add_argument("--drop-alpha", action="store_true", help="encode a source with alpha without it (else refused)")
    enc.add_argument("-ss", dest="start", type=cliargs.time, metavar="T",
                     help="start at this time of the input (as ffmpeg)")
    enc.add_argument("-t", dest="duration", type=cliargs.time, metavar="T", help="encode this long (as ffmpeg)")
    enc.add_argument("-frames:v", "--frames", dest="frames", type=cliargs.at_least_one, metavar="N",
                     help="encode at most N frames (as ffmpeg)")
    _add_raw_options(enc)

    dec = sub.add_parser("decode", help="decode an NVC stream to y4m/raw or any FFmpeg encoder",
                         description="Decode an NVC MKV/.nvc file. '-o -' writes y4m to stdout for '| ffmpeg -i -'.")
    dec.add_argument("input", help="MKV or .nvc file")
    dec.add_argument("-o", "--output", required=True, help="'-' (y4m on stdout), .y4m, .yuv, or any video file")
    dec.add_argument("--vcodec", help="FFmpeg encoder for video files (default by container, e.g. libx264)")
    dec.add_argument("--codec-opt", type=cliargs.option, action="append", default=[], metavar="KEY=VALUE",
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


_RESUMABLE = (".au", ".npz", ".first.json")  # = checkpoint.RESUMABLE (not imported here: it loads torch)


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


def _cmd_encode(args) -> int:
    from .api import encode_file
    from .rate import make_target

    target = make_target(args.bitrate, args.bpp, args.quality)  # before the output check: bad options first
    if args.rd_lambda is not None and (args.rd_lambda <= 0 or target is not None):
        raise ConfigError("--lambda must be > 0" if args.rd_lambda <= 0 else
                          "give --lambda or a rate target, not both")
    cliargs.check_output(args.output, args.overwrite or args.resume, [args.input])
    _check_executor(args)
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
                             select=_selection(args), on_plan=bar, executor=args.executor,
                             ray_address=args.ray_address, checkpoint_every=args.checkpoint_every)
    finally:
        bar.close()
    for line in report["warnings"]:  # e.g. a rate target missed: the stream is kept, the user is told
        _note(f"{PROG}: warning: {line}")
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
        print(f"  PSNR {report['psnr_rgb']:.2f} dB RGB, {report['psnr_yuv611']:.2f} dB YUV 6:1:1"
              + (f", MS-SSIM {ssim:.4f}" if ssim is not None else ""), file=out)
    return 0


def _check_executor(args) -> None:
    from .executors import check_available

    if args.ray_address and args.executor != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    check_available(args.executor)


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

    cliargs.check_output(args.output, args.overwrite, [args.input] + ([args.ref] if args.ref else []))
    report = decode_file(args.input, args.output, vcodec=args.vcodec, codec_options=dict(args.codec_opt) or None,
                         pix_fmt=args.out_pix_fmt, device=args.device, reference=args.ref, raw=_raw(args))
    out = sys.stderr if args.output == "-" else sys.stdout
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        line = (f"{report['output']}: {report['frames']} frames {report['width']}x{report['height']} decoded on "
                f"{report['device']} in {report['time_s']:.1f} s ({report['fps']:.1f} fps), bpp {report['bpp']:.5f}")
        if "psnr_rgb" in report:
            line += f", PSNR {report['psnr_rgb']:.2f} dB RGB vs {args.ref}"
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
    # SIGTERM unwinds like Ctrl-C, so atomic outputs and temp files are cleaned up on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a command started (imports, parsing): nothing can have been saved
        _fail(f"{PROG}: interrupted")
        return 130


def _main(argv: list[str] | None) -> int:
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
    try:
        return handler(args)
    except NvcError as exc:
        _fail(f"{PROG} {args.command}: error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        resumable = args.command == "encode" and args.output != "-" and any(
            n.endswith(_RESUMABLE) for n in _listdir(args.output + ".nvc-partial"))
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
