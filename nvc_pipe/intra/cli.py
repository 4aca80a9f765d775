"""`nvc image encode|decode|info|codecs` and `nvc train-intra`: the learned image codecs' subcommands.

Registered on the main CLI by `nvc_pipe.cli.build_parser` (`add_parsers`), like `nvc_pipe/eval/cli.py`; errors
are raised as `NvcError`s and turned into one stderr line and an exit code by `nvc_pipe.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..cliargs import check_output as _check_output
from ..cliargs import positive as _positive
from ..errors import ConfigError


def _quality(text: str) -> int:
    v = _positive(text)
    if not 1 <= v <= 255:
        raise argparse.ArgumentTypeError(f"quality must be 1..255, got {v}")
    return v


def _lambda(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < v < 1e3:
        raise argparse.ArgumentTypeError(f"λ must be > 0, got {text}")
    return v


def add_parsers(sub) -> None:
    img = sub.add_parser("image", help="encode/decode a still image with a learned image codec (.nvc image)",
                         description="Learned image codecs (plugins: see 'nvc image codecs').")
    img.set_defaults(handler=lambda args: _usage(img))
    isub = img.add_subparsers(dest="image_command", metavar="ACTION", parser_class=sub._parser_class)

    enc = isub.add_parser("encode", help="encode a picture (PNG, JPEG, ...) into a .nvc image",
                          description="Encode the first picture of any file FFmpeg reads into a .nvc image file.")
    enc.add_argument("input", help="input image (PNG, JPEG, BMP, ...)")
    enc.add_argument("-o", "--output", required=True, help="output .nvc image file")
    enc.add_argument("-c", "--codec", default="balle", help="image codec plugin: balle, evc or c3 (default: balle)")
    enc.add_argument("--quality", type=_quality, help="quality level (balle: 1..4, default 3; c3: 1..4, default 2)")
    enc.add_argument("--lambda", dest="rd_lambda", type=_lambda, metavar="L",
                     help="c3 only: rate-distortion weight, loss MSE (RGB in [0, 1]) + λ·bpp (overrides the "
                          "quality's λ)")
    enc.add_argument("--steps", type=_positive, help="c3 only: optimisation steps in total (default 2000)")
    enc.add_argument("--json", action="store_true", help="print the report as JSON")
    enc.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output if it exists")
    enc.set_defaults(handler=_cmd_image_encode)

    dec = isub.add_parser("decode", help="decode a .nvc image to PNG", description="Decode a .nvc image to PNG.")
    dec.add_argument("input", help=".nvc image file")
    dec.add_argument("-o", "--output", required=True, help="output .png")
    dec.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    dec.add_argument("--ref", help="reference image: print the PSNR of the decoded image against it")
    dec.add_argument("--json", action="store_true", help="print the report as JSON")
    dec.add_argument("-y", "--overwrite", action="store_true", help="overwrite the output if it exists")
    dec.set_defaults(handler=_cmd_image_decode)

    info = isub.add_parser("info", help="describe a .nvc image", description="Summarise a .nvc image file.")
    info.add_argument("input")
    info.add_argument("--json", action="store_true")
    info.set_defaults(handler=_cmd_image_info)

    codecs = isub.add_parser("codecs", help="list the installed image codecs and their quality levels")
    codecs.set_defaults(handler=_cmd_image_codecs)

    tr = sub.add_parser("train-intra", help="train the shipped weights of a learned image codec",
                        description="Train an image codec's models (one per quality) with its own recipe. "
                                    "Reproducible: fixed seed, data from offline packages (see docs/intra.md).")
    tr.add_argument("codec", help="image codec plugin: balle or evc")
    tr.add_argument("--steps", type=_positive, help="training steps in total (default: the recipe's)")
    tr.add_argument("--lambda", dest="lambdas", type=_lambda, nargs="+", metavar="L",
                    help="rate-distortion weights, one per quality (loss bpp + λ·MSE on 0..255)")
    tr.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default: auto)")
    tr.add_argument("--out", help="output directory for the weights (default: intra-weights/CODEC)")
    tr.add_argument("--init", metavar="DIR", help="start from the weights in DIR instead of a random init")
    tr.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(handler=_cmd_train_intra)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _cmd_image_encode(args) -> int:
    from .image import encode_image_file

    _check_output(args.output, args.overwrite, [args.input])
    r = encode_image_file(args.input, args.output, args.codec, args.quality, rd_lambda=args.rd_lambda,
                          steps=args.steps)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['output']}: {r['width']}x{r['height']} {r['codec']} q{r['quality']}, {r['file_bytes']} B, "
              f"bpp {r['bpp']:.4f} in {r['time_s']:.2f} s")
    return 0


def _cmd_image_decode(args) -> int:
    from .image import decode_image_file

    _check_output(args.output, args.overwrite, [args.input] + ([args.ref] if args.ref else []))
    r = decode_image_file(args.input, args.output, device=args.device, reference=args.ref)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        line = (f"{r['output']}: {r['width']}x{r['height']} {r['codec']} q{r['quality']} decoded in "
                f"{r['time_s']:.2f} s, bpp {r['bpp']:.4f}")
        if "psnr_rgb" in r:
            line += f", PSNR {r['psnr_rgb']:.2f} dB RGB vs {args.ref}"
        print(line)
    return 0


def _cmd_image_info(args) -> int:
    from .image import inspect_image_file

    r = inspect_image_file(args.input)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(", ".join(f"{k} {v}" for k, v in r.items()))
    return 0


def _cmd_image_codecs(args) -> int:
    from ..plugins import available_image_codecs, load_image_codec

    for name in available_image_codecs():
        codec = load_image_codec(name)
        print(f"{name}: qualities {', '.join(map(str, codec.qualities))} (default {codec.default_quality})")
    return 0


def _cmd_train_intra(args) -> int:
    from ..plugins import load_image_codec

    codec = load_image_codec(args.codec)
    train = getattr(codec, "train", None)
    if train is None:
        raise ConfigError(f"image codec {args.codec!r} has no training recipe")
    out = args.out or os.path.join("intra-weights", args.codec)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out {out} is not a directory")
    kwargs = {"init": args.init} if args.init else {}
    if args.init and not os.path.isdir(args.init):
        raise ConfigError(f"--init {args.init} is not a directory")
    record = train(out, steps=args.steps or None, lambdas=tuple(args.lambdas) if args.lambdas else None,
                   device=args.device, progress=not args.quiet, **kwargs)
    print(f"{args.codec}: weights in {out} ({record.get('time_s', 0):.0f} s)")
    return 0
