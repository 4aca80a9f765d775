"""Rate-control benchmark: `nvc encode --bitrate` on several clips and both codecs; requested vs achieved rate.

Each run is the real CLI (`nvc encode IN -o OUT.mkv -c CODEC -b:v RATE --json`, one thread), so the achieved
bitrate is the byte size of the elementary stream `nvc decode` reads × 8 / duration. Results are appended to a
JSON file as they finish (a rerun skips finished rows); `--table` prints the markdown table of docs/ratecontrol.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ratecontrol.py --out out/ratecontrol.json \\
        --run c64=out/clips/c64x64x8.mp4:hinerv:150k,500k,1.5M --steps 300
        # CODEC/PRESET picks a preset: --run c176=out/clips/c176x144x24.mp4:c3/c3-fast-cool:150k --steps 900
    .venv/bin/python benchmarks/ratecontrol.py --out out/ratecontrol.json --table
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from nvc_pipe.media.atomic import write_atomic

ROOT = Path(__file__).resolve().parents[1]
NVC = [sys.executable, "-m", "nvc_pipe.cli"] if not (ROOT / ".venv/bin/nvc").exists() else [str(ROOT / ".venv/bin/nvc")]


def _load(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def _save(path: Path, rows: list[dict]) -> None:
    write_atomic(path, json.dumps(rows, indent=1))


def run_one(clip: str, path: str, codec: str, rate: str, steps: int | None, work: Path) -> dict:
    out = work / f"{clip}-{codec.replace('/', '-')}-{rate}.mkv"
    option = [] if rate == "default" else ["-crf", rate[1:]] if rate.startswith("q") else ["-b:v", rate]
    name, _, preset = codec.partition("/")  # CODEC or CODEC/PRESET
    cmd = NVC + ["encode", path, "-o", str(out), "-y", "-c", name, *option, "--json"]
    if preset:
        cmd += ["-p", preset]
    if steps:
        cmd += ["--steps", str(steps)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, env=env)
    seconds = time.perf_counter() - t0
    row = {"clip": clip, "codec": codec, "requested": rate, "command": " ".join(cmd[len(NVC):]),
           "wall_s": round(seconds, 1), "rc": res.returncode}
    if res.returncode != 0:
        row["error"] = res.stderr.decode(errors="replace").strip().splitlines()[-1:]
        return row
    rep = json.loads(res.stdout)
    aimed = rep["target"]["bitrate_bps"]
    row.update({"frames": rep["frames"], "size": f"{rep['width']}x{rep['height']}", "fps": rep["fps"],
                "requested_bps": aimed, "target": rep["target"], "achieved_bps": rep["bitrate_bps"], "bpp": rep["bpp"],
                "stream_bytes": rep["stream_bytes"], "psnr_rgb": rep["psnr_rgb"], "encode_s": rep["time_s"],
                "error_pct": round(100 * (rep["bitrate_bps"] / aimed - 1), 2),
                "plan": rep["plan"]["summary"], "segments": [{k: s.get(k) for k in ("rate", "rate_correction")}
                                                             for s in rep["segments"]]})
    out.unlink(missing_ok=True)
    return row


def checks(rows: list[dict]) -> str:
    """Per clip and codec: targets within ±10 %, and whether PSNR rises with the achieved rate."""
    out = []
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        if not r.get("rc"):
            req = r["requested"]
            kind = "quality" if req.startswith("q") else "default" if req == "default" else "bitrate"
            groups.setdefault((r["clip"], r["codec"], kind), []).append(r)
    for (clip, codec, kind), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["achieved_bps"])
        within = sum(abs(r["error_pct"]) <= 10 for r in rs)
        psnr = [r["psnr_rgb"] for r in rs]
        mono = all(b >= a for a, b in zip(psnr, psnr[1:]))
        out.append(f"- {clip} {codec} {kind}: {within}/{len(rs)} within ±10 %"
                   + (f"; PSNR {'rises' if mono else 'does NOT rise'} with rate" if len(rs) > 1 else ""))
    return "\n".join(out)


def table(rows: list[dict]) -> str:
    lines = ["| clip | codec | requested | achieved | error | bpp | PSNR RGB (dB) | encode s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("rc"):
            lines.append(f"| {r['clip']} | {r['codec']} | {r['requested']} | exit {r['rc']}: "
                         f"{' '.join(r.get('error', []))} | | | | |")
            continue
        asked = (f"{r['requested_bps'] / 1000:.0f} kb/s" if r["requested"][0].isdigit()
                 else f"{r['requested']} → {r['requested_bps'] / 1000:.1f} kb/s")
        lines.append(f"| {r['clip']} {r['size']}x{r['frames']} | {r['codec']} | {asked} "
                     f"| {r['achieved_bps'] / 1000:.1f} kb/s | {r['error_pct']:+.1f} % | {r['bpp']:.4f} "
                     f"| {r['psnr_rgb']:.2f} | {r['encode_s']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--run", action="append", default=[], metavar="NAME=PATH:CODEC[/PRESET]:RATE,RATE,...",
                    help="RATE: a bitrate (500k), qN for -crf N, or 'default' for no rate option")
    ap.add_argument("--steps", type=int, help="--steps for every encode (default: from the clip)")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--merge", type=Path, nargs="*", default=[], help="more result files for --table")
    args = ap.parse_args()
    rows = _load(args.out)
    work = args.out.parent / "ratecontrol-streams"
    work.mkdir(parents=True, exist_ok=True)
    for spec in args.run:
        name, rest = spec.split("=", 1)
        path, codec, rates = rest.rsplit(":", 2)
        for rate in rates.split(","):
            if any(r["clip"] == name and r["codec"] == codec and r["requested"] == rate and r.get("rc") == 0
                   for r in rows):
                continue
            row = run_one(name, path, codec, rate, args.steps, work)
            rows = [r for r in rows if not (r["clip"] == name and r["codec"] == codec and r["requested"] == rate)]
            rows.append(row)
            _save(args.out, rows)
            print(json.dumps({k: row.get(k) for k in ("clip", "codec", "requested", "achieved_bps", "error_pct",
                                                      "psnr_rgb", "encode_s", "rc", "error")}), flush=True)
    if args.table:
        for extra in args.merge:
            rows += _load(extra)
        print(table(rows))
        print()
        print(checks(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
