"""Running a fuzz campaign from the parent: workers dispatched case by case, the watchdog (hang, memory), the
summary, findings and the command line. What runs inside a worker is :mod:`.worker`."""


from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .common import _PAGE, DEFAULT_MEM_MB, DEFAULT_TIMEOUT_S, FAILURES, FAMILIES, INPUT_FACTOR, OUTCOMES
from .mutate import generate
from .streams import load_seeds, seed_paths
from .worker import run_case, worker_main

# ---------------------------------------------------------------------------------------------------------------
# the parent: dispatch, watchdog, summary
# ---------------------------------------------------------------------------------------------------------------
def _rss_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _crash_site(tb: str) -> str:
    """file:line of the innermost frame inside this repository (nvc_pipe/ or plugins/), for deduplication."""
    if "Traceback (most recent call last)" not in tb:  # a faulthandler dump: innermost first; use the last one
        tb = tb[tb.rfind("(most recent call first)"):]
        sites = re.findall(r'File "([^"]+)", line (\d+)', tb)
    else:
        sites = re.findall(r'File "([^"]+)", line (\d+)', tb)[::-1]
    for path, line in sites:
        m = re.search(r"(nvc_pipe/.*|plugins/.*|nvc_hinerv/.*)", path)
        if m and "fuzz.py" not in path:
            return f"{m.group(1)}:{line}"
    return f"{os.path.basename(sites[0][0])}:{sites[0][1]}" if sites else "?"


@dataclass
class Result:
    index: int
    outcome: str
    detail: str
    tb: str
    size: int
    family: str
    seed: str
    recipe: str
    seconds: float
    mem: int = 0  # peak RSS growth, bytes
    data: bytes = b""
    suffix: str = ".bin"
    sink: bool = False


@dataclass
class Summary:
    cases: int = 0
    seconds: float = 0.0
    by_family: dict = field(default_factory=dict)  # family -> outcome -> count
    failures: list = field(default_factory=list)  # Result
    errors: dict = field(default_factory=dict)  # normalized clean-error message -> count
    slowest: float = 0.0
    max_mem: int = 0
    family_seconds: dict = field(default_factory=dict)  # family -> summed case seconds
    biggest: list = field(default_factory=list)  # (mem, index, family, recipe) of the 5 largest passing cases

    def add(self, r: Result) -> None:
        self.cases += 1
        row = self.by_family.setdefault(r.family, dict.fromkeys(OUTCOMES + ("genfail",), 0))
        row[r.outcome] = row.get(r.outcome, 0) + 1
        self.slowest = max(self.slowest, r.seconds)
        self.family_seconds[r.family] = self.family_seconds.get(r.family, 0.0) + r.seconds
        if r.outcome in ("ok", "error"):
            self.max_mem = max(self.max_mem, r.mem)
            self.biggest = sorted(self.biggest + [(r.mem, r.index, r.family, r.recipe[:100])], reverse=True)[:5]
        if r.outcome == "error":
            key = re.sub(r"\d+", "N", r.detail)[:110]
            self.errors[key] = self.errors.get(key, 0) + 1
        if r.outcome in FAILURES + ("genfail",):
            self.failures.append(r)

    def totals(self) -> dict:
        t = dict.fromkeys(OUTCOMES + ("genfail",), 0)
        for row in self.by_family.values():
            for k, v in row.items():
                t[k] += v
        return t


def _signature(r: Result) -> str:
    if r.outcome == "crash":
        return f"crash {r.detail.split(':')[0]} @ {_crash_site(r.tb)}"
    site = _crash_site(r.tb) if r.tb else "?"
    return f"{r.outcome} [{r.family}] @ {site}"


class _Worker:
    def __init__(self, ctx, paths, seed_value, tmp_root, timeout) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, args=(child, paths, seed_value, tmp_root, timeout),
                                daemon=True)
        self.proc.start()
        child.close()
        self.ready = False
        self.tb_path = ""
        self.index: int | None = None
        self.case: tuple | None = None  # (family, seed, recipe, suffix, data, sink) of the case in flight
        self.t0 = 0.0
        self.rss0 = 0
        self.peak = 0

    def send(self, index: int) -> None:
        self.index, self.case, self.t0 = index, None, time.perf_counter()
        self.rss0 = self.peak = _rss_of(self.proc.pid)
        self.conn.send(index)

    def stack(self) -> str:
        try:
            with open(self.tb_path) as f:
                return f.read()
        except OSError:
            return ""

    def kill(self, dump: bool) -> str:
        text = ""
        if dump and self.proc.is_alive():
            try:
                os.kill(self.proc.pid, signal.SIGUSR1)
                time.sleep(0.2)
            except OSError:
                pass
            text = self.stack()
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(5)
        self.conn.close()
        return text


def fuzz(cases: int, seed_value: int = 0, corpus: str | None = None, workers: int | None = None,
         timeout: float = DEFAULT_TIMEOUT_S, mem_mb: int = DEFAULT_MEM_MB, findings: str | None = None,
         start: int = 0, log=print, verbose: bool = False) -> tuple[Summary, str]:
    """Run `cases` cases; return the summary and the findings directory."""
    import multiprocessing as mp
    from multiprocessing.connection import wait

    t_start = time.perf_counter()
    paths, _tmp_seeds = seed_paths(corpus)
    seeds = load_seeds(paths)
    max_input = 3 * max(len(s.data) for s in seeds) + 4096
    kill_bound = mem_mb * 2**20 + INPUT_FACTOR * max_input
    if findings is None:
        findings = os.path.join(corpus, "findings") if corpus else tempfile.mkdtemp(prefix="nvc-fuzz-findings-")
    tmp_root = tempfile.mkdtemp(prefix="nvc-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    ctx = mp.get_context("spawn")
    n_workers = workers or min(2, os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, cases)) if cases else 0
    summary = Summary()
    todo = list(range(start, start + cases))[::-1]
    pool = [_Worker(ctx, paths, seed_value, tmp_root, timeout) for _ in range(n_workers)]
    last_report = time.perf_counter()
    log(f"nvc fuzz: {cases} cases, seed {seed_value}, {n_workers} worker(s), timeout {timeout:g} s, "
        f"memory bound {mem_mb} MiB + {INPUT_FACTOR} x input; seeds: {', '.join(s.name for s in seeds)}")

    def finish(w: _Worker, r: Result) -> None:
        summary.add(r)
        if r.outcome in FAILURES + ("genfail",):
            _save_finding(findings, r, seed_value)
            log(f"  case {r.index} [{r.family}] {r.outcome.upper()}: {r.detail[:200]}\n    recipe: {r.recipe}")
        w.index = None

    try:
        while todo or any(w.index is not None for w in pool):
            for w in pool:
                if w.ready and w.index is None and todo:
                    w.send(todo.pop())
            conns = [w.conn for w in pool]
            for conn in wait(conns, timeout=0.01):
                w = next(x for x in pool if x.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    msg = None
                if msg is None:  # the worker died
                    code = w.proc.exitcode if not w.proc.is_alive() else None
                    w.proc.join(1)
                    code = w.proc.exitcode if code is None else code
                    if w.index is not None:
                        r = _in_flight(w, "crash", f"worker died (exit code {code})", time.perf_counter() - w.t0)
                        finish(w, r)
                    elif not w.ready:
                        raise RuntimeError(f"fuzz worker failed to start (exit code {code})")
                    pool[pool.index(w)] = _Worker(ctx, paths, seed_value, tmp_root, timeout)
                    continue
                if msg[0] == "ready":
                    w.ready, w.tb_path = True, msg[1]
                    continue
                if msg[0] == "case":
                    w.case = msg[2:]
                    continue
                _, index, outcome, detail, tb, maxrss, secs = msg
                r = _in_flight(w, outcome, detail, secs)
                r.tb = tb
                r.mem = max(0, max(w.peak, maxrss) - w.rss0)
                size = r.size
                if r.outcome in ("ok", "error") and r.mem > mem_mb * 2**20 + INPUT_FACTOR * size:
                    r.outcome = "oom"
                    r.detail = (f"resident memory grew by {r.mem / 2**20:.0f} MiB for a {size}-byte input "
                                f"(bound {mem_mb} MiB + {INPUT_FACTOR} x input)")
                finish(w, r)
            now = time.perf_counter()
            for i, w in enumerate(pool):
                if w.index is None:
                    continue
                rss = _rss_of(w.proc.pid)
                w.peak = max(w.peak, rss)
                over_mem = rss - w.rss0 > kill_bound
                if now - w.t0 > timeout or over_mem:
                    stack = w.kill(dump=True)
                    if over_mem:
                        r = _in_flight(w, "oom", f"resident memory grew past {(rss - w.rss0) / 2**20:.0f} MiB "
                                                 "(killed)", now - w.t0)
                    else:
                        r = _in_flight(w, "hang", f"no result after {timeout:g} s (killed)", now - w.t0)
                    r.tb = stack
                    r.mem = max(0, w.peak - w.rss0)
                    finish(w, r)
                    pool[i] = _Worker(ctx, paths, seed_value, tmp_root, timeout)
            if verbose and now - last_report > 10:
                last_report = now
                t = summary.totals()
                log(f"  ... {summary.cases}/{cases} cases, " + ", ".join(f"{k} {v}" for k, v in t.items() if v))
    finally:
        for w in pool:
            if w.proc.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
        for w in pool:
            w.proc.join(2)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(2)
        shutil.rmtree(tmp_root, ignore_errors=True)
        if _tmp_seeds:
            shutil.rmtree(_tmp_seeds, ignore_errors=True)
    summary.seconds = time.perf_counter() - t_start
    return summary, findings


def _in_flight(w: _Worker, outcome: str, detail: str, seconds: float) -> Result:
    """A Result for the case a worker was running (its bytes came in the "case" message)."""
    if w.case is None:  # the worker stopped before it had generated the case: the generator is at fault
        return Result(w.index, "genfail", f"while generating: {outcome}: {detail}", "", 0, "?", "?", "?", seconds)
    family, seed, recipe, suffix, data, sink = w.case
    return Result(w.index, outcome, detail, "", len(data), family, seed, recipe, seconds, 0, data, suffix, sink)


def _save_finding(directory: str, r: Result, seed_value: int) -> None:
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"{r.outcome}-s{seed_value}-c{r.index}")
    if r.data:
        with open(base + r.suffix, "wb") as f:
            f.write(r.data)
    with open(base + ".txt", "w") as f:
        f.write(f"outcome: {r.outcome}\nfamily: {r.family}\nseed stream: {r.seed}\nrecipe: {r.recipe}\n"
                f"detail: {r.detail}\nthrough decode_file: {r.sink}\n"
                f"replay: python -m nvc_pipe.fuzz --replay {base + r.suffix}\n"
                f"   or: python -m nvc_pipe.fuzz --seed {seed_value} --case {r.index} --corpus <the corpus>\n\n{r.tb}")


def format_summary(s: Summary, findings: str, seed_value: int, verbose: bool = False) -> str:
    lines = []
    cols = OUTCOMES
    lines.append(f"{'family':<14}{'cases':>7}" + "".join(f"{c:>8}" for c in cols) + f"{'ms/case':>9}")
    for fam in FAMILIES:
        row = s.by_family.get(fam)
        if not row:
            continue
        n = sum(row.values())
        ms = 1000 * s.family_seconds.get(fam, 0.0) / max(n, 1)
        lines.append(f"{fam:<14}{n:>7}" + "".join(f"{row[c]:>8}" for c in cols) + f"{ms:>9.0f}")
    t = s.totals()
    lines.append(f"{'total':<14}{s.cases:>7}" + "".join(f"{t[c]:>8}" for c in cols))
    if t.get("genfail"):
        lines.append(f"(generator failures, not counted as decoder failures: {t['genfail']})")
    lines.append(f"{s.cases} cases in {s.seconds:.1f} s ({s.cases / max(s.seconds, 1e-9):.0f} cases/s); slowest case "
                 f"{s.slowest:.2f} s; largest RSS growth of a passing case {s.max_mem / 2**20:.1f} MiB")
    if verbose:
        for mem, index, fam, recipe in s.biggest:
            lines.append(f"  RSS +{mem / 2**20:.1f} MiB: case {index} [{fam}] {recipe}")
    sigs: dict[str, list[Result]] = {}
    for r in s.failures:
        sigs.setdefault(_signature(r), []).append(r)
    if sigs:
        lines.append(f"{len(sigs)} distinct failure signature(s); inputs saved in {findings}:")
        for sig, rs in sorted(sigs.items(), key=lambda kv: -len(kv[1])):
            r = rs[0]
            lines.append(f"  {sig}  x{len(rs)}")
            lines.append(f"    e.g. case {r.index} ({r.seed}): {r.recipe[:220]}")
            lines.append(f"    {r.detail[:220]}")
            lines.append(f"    replay: python -m nvc_pipe.fuzz --seed {seed_value} --case {r.index}")
    return "\n".join(lines)


def _replay(path: str) -> int:
    """Decode one file in-process (no watchdog), print the outcome and any traceback."""
    import torch

    torch.set_num_threads(1)
    outdir = tempfile.mkdtemp(prefix="nvc-fuzz-replay-")
    try:
        t0 = time.perf_counter()
        outcome, detail, tb = run_case(path, True, False, outdir)
        print(f"{path}: {outcome} in {time.perf_counter() - t0:.2f} s {detail}")
        if tb:
            print(tb)
        outcome2, detail2, tb2 = run_case(path, False, True, outdir)
        if outcome2 != outcome:
            print(f"  through decode_file: {outcome2} {detail2}\n{tb2}")
        return 1 if outcome in FAILURES or outcome2 in FAILURES else 0
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nvc_pipe.fuzz",
                                description="Mutation fuzzer for the NVC decode path (nvc_pipe/fuzz/__init__.py).")
    p.add_argument("--cases", type=int, default=1000, help="number of cases (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="run seed: case i of seed S is always the same input")
    p.add_argument("--start", type=int, default=0, help="first case index (default 0)")
    p.add_argument("--corpus", help="directory of seed streams (*.nvc, *.mkv); made there when empty. Default: "
                                    "made afresh in a temporary directory")
    p.add_argument("--findings", help="where failing inputs go (default CORPUS/findings or a temp dir)")
    p.add_argument("--workers", type=int, help="worker processes (default min(2, CPUs))")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per case before 'hang'")
    p.add_argument("--mem-mb", type=int, default=DEFAULT_MEM_MB,
                   help=f"MiB of RSS growth allowed per case, plus {INPUT_FACTOR} x the input size")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--case", type=int, help="generate and run only this case, in-process, with a traceback")
    p.add_argument("--dump", metavar="FILE", help="with --case: write the case's bytes to FILE")
    p.add_argument("--replay", metavar="FILE", help="decode one saved input in-process and report")
    p.add_argument("-v", "--verbose", action="store_true", help="progress every 10 s")
    args = p.parse_args(argv)
    if args.replay:
        return _replay(args.replay)
    if args.case is not None:
        paths, tmp = seed_paths(args.corpus)
        try:
            seeds = load_seeds(paths)
            with tempfile.TemporaryDirectory() as d:
                c = generate(args.seed, args.case, seeds, d)
                print(f"case {c.index}: family {c.family}, seed stream {c.seed}, {len(c.data)} bytes, "
                      f"sink {c.sink}\n  recipe: {c.recipe}")
                path = args.dump or os.path.join(d, "case" + c.suffix)
                with open(path, "wb") as f:
                    f.write(c.data)
                if args.dump:
                    print(f"  written to {args.dump}")
                import torch

                torch.set_num_threads(1)
                outdir = os.path.join(d, "out")
                os.makedirs(outdir)
                t0 = time.perf_counter()
                outcome, detail, tb = run_case(path, c.inspect, c.sink, outdir)
                print(f"  {outcome} in {time.perf_counter() - t0:.2f} s: {detail}")
                if tb:
                    print(tb)
                return 1 if outcome in FAILURES else 0
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
    summary, findings = fuzz(args.cases, args.seed, args.corpus, args.workers, args.timeout, args.mem_mb,
                             args.findings, args.start, verbose=args.verbose)
    print(format_summary(summary, findings, args.seed, args.verbose))
    failed = sum(summary.totals()[k] for k in FAILURES)
    if args.json:
        sigs: dict[str, int] = {}
        for r in summary.failures:
            sigs[_signature(r)] = sigs.get(_signature(r), 0) + 1
        with open(args.json, "w") as f:
            json.dump({"cases": summary.cases, "seconds": round(summary.seconds, 2), "seed": args.seed,
                       "totals": summary.totals(), "by_family": summary.by_family, "signatures": sigs,
                       "failures": [{"index": r.index, "outcome": r.outcome, "family": r.family, "recipe": r.recipe,
                                     "detail": r.detail} for r in summary.failures],
                       "errors": dict(sorted(summary.errors.items(), key=lambda kv: -kv[1])),
                       "findings": findings}, f, indent=1)
    if not failed and not summary.failures and not args.corpus and findings and os.path.isdir(findings):
        shutil.rmtree(findings, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
