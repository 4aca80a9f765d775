"""Argument types and checks shared by the `nvc` subcommands' parsers (`cli.py`, `intra/cli.py`, `eval/cli.py`).

Each type turns one command-line word into a value or an `argparse.ArgumentTypeError` (a one-line usage error);
`check_output` refuses an output that exists, is an input or sits in a missing directory, before any work.
This module imports no subcommand, so the command modules import it and not each other.
"""

from __future__ import annotations

import argparse
import os
from fractions import Fraction

from .errors import ConfigError


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (expected WxH, e.g. 1920x1080)") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}")
    return w, h


def fps(text: str) -> Fraction:
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"invalid frame rate {text!r} (e.g. 25, 30000/1001)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid frame rate {text!r}")
    return value


def time(text: str) -> Fraction:
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


def at_least_one(text: str) -> int:
    v = positive(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {v}")
    return v


def positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {v}")
    return v


def bitrate(text: str) -> float:
    from .rate import parse_bitrate

    try:
        return parse_bitrate(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> float:
    from .rate import parse_duration

    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def interval(text: str) -> float:
    """--checkpoint-every: a duration as --time-limit takes it, or 0 (off)."""
    from .rate import parse_duration

    if text.strip() in ("0", "0s", "off"):
        return 0.0
    try:
        return parse_duration(text)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30s or 5m, or 0 (off), got {text!r}") from None


def float_arg(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def int_arg(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def option(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    return k, v


def add_executor_options(p: argparse.ArgumentParser) -> None:
    """`--executor` and `--ray-address` (shared by `nvc encode` and `nvc eval`)."""
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the jobs (segments, RD points) run: this process (default) or Ray tasks")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to use with --executor ray (default: RAY_ADDRESS, else a local Ray)")


def check_output(path: str, overwrite: bool, inputs: list[str]) -> None:
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
