"""``nvc eval``: run codecs over a dataset and write results, tables and RD plots.

The main CLI registers it with :func:`add_parser`; ``python -m nvc_pipe.eval.cli ...`` runs it standalone.

    nvc eval --dataset uvg --root /data/UVG --codecs hinerv:uvg-s,x265:veryslow,x264:medium --out results/
    nvc eval --dataset mcl-jcv --root /data/MCL-JCV --codecs x265:medium --crf 22,27,32,37 --frames 8 --crop 256x256
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nvc_pipe.cliargs import add_executor_options
from nvc_pipe.errors import ConfigError, NvcError

from .datasets import parse_fps, parse_size
from .sequences import DATASETS

HELP = "evaluate codecs on UVG / MCL-JCV / Bunny / a directory: RD points, BD-rates, plots"


def _add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(DATASETS)}")
    p.add_argument("--root", help="directory holding the dataset's files (bunny: optional; dir: dir or one file)")
    p.add_argument("--codecs", required=True,
                   help="comma-separated specs: x264:medium, x265:veryslow, svtav1:8, hinerv:uvg-s, "
                        "hinerv:uvg-s+uvg-m+uvg-l (one curve over presets), c3:c3-fast")
    p.add_argument("--out", default="results", help="output directory (results.json/.csv/.md, plots/, cache/)")
    p.add_argument("--sequences", help="comma-separated sequence names to keep (default: all)")
    p.add_argument("--frames", type=int, help="use only the first N frames (quick runs)")
    p.add_argument("--crop", help="centre crop WxH (even numbers; quick runs)")
    p.add_argument("--size", help="declare the WxH of raw files instead of the dataset's (downscaled copies, "
                                  "tests); file names are still matched as the dataset's")
    p.add_argument("--fps", help="declare the frame rate of raw files")
    p.add_argument("--crf", action="append", metavar="LIST",
                   help="anchor CRFs: '22,27,32,37' for every anchor, or 'x265=20,25,30' for one (repeatable); "
                        "defaults x264/x265 22,27,32,37, svtav1 30,38,46,54")
    p.add_argument("--epochs",
                   help="plugin codecs: sweep these epoch counts (overrides epochs=N), one curve per preset")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bitrate", metavar="LIST",
                      help="plugin codecs: one RD point per target bitrate, e.g. 100k,300k,1M (one curve per preset)")
    rate.add_argument("--bpp", metavar="LIST", help="plugin codecs: one RD point per target bpp, e.g. 0.05,0.1,0.2")
    rate.add_argument("--quality", metavar="LIST", help="plugin codecs: one RD point per quality, e.g. 22,28,34")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                   help="plugin codecs: extra config override (VALUE parsed as JSON when possible; repeatable)")
    p.add_argument("--device", default="auto", help="device for plugin codecs (auto, cpu, cuda, cuda:1)")
    add_executor_options(p)
    p.add_argument("--anchor-backend", default="auto", choices=("auto", "cli", "pyav"),
                   help="run anchors with the ffmpeg program (cli) or PyAV's libraries (pyav); auto: cli if found")
    p.add_argument("--anchor", help="curve the BD-rates are computed against (default: the first anchor given)")
    p.add_argument("--bd-method", default="pchip", choices=("pchip", "cubic"))
    p.add_argument("--published", default="auto", choices=("auto", "always", "never"),
                   help="published HiNeRV/C3 curves on the plots: auto = full runs only")
    p.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--keep-streams", action="store_true", help="keep anchor bitstreams under out/streams/")
    p.add_argument("--quiet", action="store_true", help="no progress bars, no summary")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``eval`` on the main CLI's subparsers; the handler is ``args.func`` (= :func:`run`)."""
    p = subparsers.add_parser("eval", help=HELP, description=HELP)
    _add_arguments(p)
    p.set_defaults(func=run, handler=run)
    return p


def _parse_set(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except ValueError:
            out[k.strip()] = v
    return out


def config_from_args(args: argparse.Namespace):
    from .runner import EvalConfig, parse_codecs, parse_crf_options, parse_int_list, parse_targets

    crf = parse_crf_options(args.crf)
    epochs = parse_int_list(args.epochs, "epochs") if args.epochs else None
    kinds = [k for k in ("bitrate", "bpp", "quality") if getattr(args, k, None)]
    if kinds and epochs:
        raise ConfigError(f"give --epochs or --{kinds[0]}, not both")
    targets = (kinds[0], parse_targets(kinds[0], getattr(args, kinds[0]))) if kinds else None
    curves = parse_codecs(args.codecs, crf, epochs, targets)
    if args.ray_address and args.executor != "ray":
        raise ConfigError("--ray-address needs --executor ray")
    if args.frames is not None and args.frames <= 0:
        raise ConfigError(f"--frames must be positive, got {args.frames}")
    return EvalConfig(
        dataset=args.dataset, codecs=curves, out=Path(args.out), root=Path(args.root) if args.root else None,
        sequences=[s for s in args.sequences.split(",") if s.strip()] if args.sequences else None,
        frames=args.frames, crop=parse_size(args.crop) if args.crop else None,
        size=parse_size(args.size) if args.size else None, fps=parse_fps(args.fps) if args.fps else None,
        anchor_backend=args.anchor_backend, anchor=args.anchor, device=args.device,
        overrides=_parse_set(args.set), ms_ssim=not args.no_ms_ssim, keep_streams=args.keep_streams,
        progress=not args.quiet and sys.stderr.isatty(), plots=not args.no_plots, published=args.published,
        bd_method=args.bd_method, executor=args.executor, ray_address=args.ray_address,
    )


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; raises :class:`NvcError` on user errors (the caller prints one line)."""
    from .runner import run_eval

    cfg = config_from_args(args)
    res = run_eval(cfg)
    if not args.quiet:
        print(f"eval {cfg.dataset}: {len(res.points)} points ({res.computed} computed, {res.cached} cached)")
        bd = res.report["bd"]
        for row in bd["rows"]:
            v = row["average"]["bd_rate_rgb"]
            print(f"  BD-rate {row['curve']} vs {bd['anchor']}: " + ("n/a" if v is None else f"{v:+.2f} %"))
        for k, v in res.paths.items():
            if not k.startswith("plot"):
                print(f"  {k}: {v}")
        n_plots = sum(1 for k in res.paths if k.startswith("plot"))
        if n_plots:
            print(f"  plots: {n_plots} PNG under {Path(cfg.out) / 'plots'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="nvc eval", description=HELP)
    _add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except NvcError as e:
        print(f"nvc eval: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nvc eval: interrupted (finished points are cached; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
