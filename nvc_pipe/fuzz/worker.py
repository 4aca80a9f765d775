"""One fuzz case in a worker process: decode it through the public API, check the decoder's invariants, classify
the outcome; the worker's loop (warm-up, generate case i, report it to the parent before and after running it).

The parent's side (dispatch, watchdog, summary, findings, command line) is :mod:`.harness`.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import traceback

from .mutate import generate
from .streams import load_seeds


class InvariantError(AssertionError):
    """The decoder returned something impossible, or left a file behind."""


def _classify(exc: BaseException) -> tuple[str, str]:
    from ..errors import NvcError

    if isinstance(exc, NvcError):
        msg = str(exc)
        if not msg.strip() or "\n" in msg:
            return "crash", f"{type(exc).__name__} with a bad message: {msg[:300]!r}"
        return "error", f"{type(exc).__name__}: {msg}"
    first = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first[:300]}"
    if isinstance(exc, MemoryError) or "not enough memory" in str(exc) or "can't allocate memory" in str(exc):
        return "oom", text
    return "crash", text


def _decode_case(path: str, inspect: bool, sink: bool, outdir: str) -> None:
    import torch

    from .. import api
    from ..container import info_from_header
    from ..errors import NvcError

    if sink:
        out = os.path.join(outdir, "out.y4m")
        try:
            api.decode_file(path, out, device="cpu")
        except NvcError:
            left = os.listdir(outdir)
            if left:
                raise InvariantError(f"decode failed but left {left} behind") from None
            raise
        if not os.path.exists(out):
            raise InvariantError("decode_file succeeded without writing its output")
        os.unlink(out)
    else:
        seq, aus, _ = api.read_stream(path)
        n = 0
        dtype = info_from_header(seq).rgb_dtype
        for frame, _pts in api.iter_decoded(seq, aus, torch.device("cpu")):
            if frame.shape != (seq.height, seq.width, 3) or frame.dtype != dtype:
                raise InvariantError(f"frame {n} is {frame.shape} {frame.dtype} for a "
                                     f"{seq.width}x{seq.height} {seq.pix_fmt} stream")
            n += 1
        if n != seq.frame_count:
            raise InvariantError(f"decoded {n} frames, the header declares {seq.frame_count}")
    if inspect:
        try:
            api.inspect_file(path)
        except NvcError:
            pass


def run_case(path: str, inspect: bool, sink: bool, outdir: str) -> tuple[str, str, str]:
    """(outcome, one-line detail, traceback or '') of decoding the file at `path`."""
    try:
        _decode_case(path, inspect, sink, outdir)
        return "ok", "", ""
    except BaseException as exc:  # noqa: BLE001 - a fuzzer classifies everything (pyo3 panics are BaseExceptions)
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome, detail = _classify(exc)
        tb = traceback.format_exc() if outcome != "error" else ""
        return outcome, detail, tb
    finally:
        for name in os.listdir(outdir):
            try:
                os.unlink(os.path.join(outdir, name))
            except OSError:
                pass


def _maxrss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_main(conn, paths: list[str], seed_value: int, tmp_root: str, timeout: float) -> None:
    import faulthandler
    import warnings

    import torch

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    seeds = load_seeds(paths)
    workdir = tempfile.mkdtemp(prefix="w", dir=tmp_root)
    outdir = os.path.join(workdir, "out")
    os.makedirs(outdir)
    tb_path = os.path.join(workdir, "stack.txt")
    tb_file = open(tb_path, "w+")  # noqa: SIM115 - lives as long as the worker
    faulthandler.register(signal.SIGUSR1, file=tb_file, all_threads=False)
    # warm-up: one good decode of every seed through both paths (lazy imports, first-call allocations)
    for s in seeds:
        p = os.path.join(workdir, "seed" + (".nvc" if s.container == "nvc" else ".mkv"))
        with open(p, "wb") as f:
            f.write(s.data)
        run_case(p, True, False, outdir)
        run_case(p, False, True, outdir)
        os.unlink(p)
    generate(seed_value, 0, seeds, workdir)
    conn.send(("ready", tb_path))
    while True:
        index = conn.recv()
        if index is None:
            break
        tb_file.seek(0)
        tb_file.truncate()
        faulthandler.dump_traceback_later(max(timeout * 0.8, 0.1), file=tb_file)
        max0 = _maxrss()
        t0 = time.perf_counter()
        try:
            case = generate(seed_value, index, seeds, workdir)
        except Exception as exc:  # noqa: BLE001 - a generator bug must not look like a decoder crash
            faulthandler.cancel_dump_traceback_later()
            conn.send(("result", index, "genfail", f"{type(exc).__name__}: {exc}", traceback.format_exc(), 0, 0.0))
            continue
        # the parent keeps the input before it runs: a hang, an oom kill or a dead worker still has its bytes
        conn.send(("case", index, case.family, case.seed, case.recipe, case.suffix, case.data, case.sink))
        path = os.path.join(workdir, "case" + case.suffix)
        with open(path, "wb") as f:
            f.write(case.data)
        outcome, detail, tb = run_case(path, case.inspect, case.sink, outdir)
        os.unlink(path)
        elapsed = time.perf_counter() - t0
        faulthandler.cancel_dump_traceback_later()
        max1 = _maxrss()
        conn.send(("result", index, outcome, detail, tb, max1 if max1 > max0 else 0, elapsed))
