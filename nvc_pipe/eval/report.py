"""Results of a sweep: the report dict, and its JSON, CSV and markdown files (plus the RD plots).

``results.json`` holds everything (configuration, sequences, every point with its exact command, per-curve
averages over the sequences, BD-rates, the published reference curves); ``results.csv`` one row per measured
point; ``results.md`` the tables a human reads. Averages follow HiNeRV/C3: the plain mean over sequences of the
per-sequence bpp and PSNR, for points every sequence has.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

from nvc_pipe.errors import OutputError
from nvc_pipe.media.atomic import write_atomic

from .bdrate import bd_psnr, bd_rate
from .published import AVERAGE, published_curves

CSV_FIELDS = ("dataset", "sequence", "curve", "codec", "setting", "param", "value", "frames", "width", "height",
              "stream_bytes", "bpp", "psnr_rgb", "psnr_y", "psnr_u", "psnr_v", "psnr_yuv611", "ms_ssim",
              "encode_s", "decode_s", "backend", "command")
_AVG_FIELDS = ("bpp", "psnr_rgb", "psnr_yuv611", "psnr_y", "ms_ssim", "encode_s", "decode_s")


def _mean(vals):
    vals = [v for v in vals if isinstance(v, (int, float)) and v is not None]
    return sum(vals) / len(vals) if vals else None


def _clean(x):
    """JSON-safe: NaN/inf -> None."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _bd_pair(anchor_pts, test_pts, metric, method):
    """(BD-rate %, BD-PSNR dB) of test vs anchor on ``metric``; None where undefined."""
    def xs(pts, k):
        return [p[k] for p in pts if p.get(k) is not None and p.get("bpp")]
    ra, qa = xs(anchor_pts, "bpp"), xs(anchor_pts, metric)
    rt, qt = xs(test_pts, "bpp"), xs(test_pts, metric)
    if len(ra) < 2 or len(rt) < 2 or len(ra) != len(qa) or len(rt) != len(qt):
        return None, None
    try:
        return _clean(bd_rate(ra, qa, rt, qt, method)), _clean(bd_psnr(ra, qa, rt, qt, method))
    except ValueError:
        return None, None


def _pick_anchor(curves, wanted: str | None) -> str | None:
    labels = [c.label for c in curves]
    if wanted:
        if wanted in labels:
            return wanted
        for c in curves:  # "x265" -> the first x265 curve
            if c.codec == wanted or c.label.startswith(wanted + ":"):
                return c.label
        return None
    for c in curves:
        if c.is_anchor:
            return c.label
    return labels[0] if labels else None


def _backend_name(cfg) -> str:
    if not any(c.is_anchor for c in cfg.codecs):
        return "-"
    from .baselines import backend_version, resolve_backend

    return backend_version(resolve_backend(cfg.anchor_backend))


def build_report(points: list[dict], cfg, sources) -> dict:
    seq_names = [s.name for s in sources]
    full_run = all(s.crop is None and s.declared is not None and s.frames == s.declared.frames
                   and (s.width, s.height) == (s.declared.width, s.declared.height) for s in sources) \
        and cfg.size is None
    by_curve: dict[str, dict[str, list[dict]]] = {}
    for p in points:
        by_curve.setdefault(p["curve"], {}).setdefault(p["sequence"], []).append(p)

    average: dict[str, list[dict]] = {}
    for c in cfg.codecs:
        rows = []
        for pt in c.points:
            per_seq = [p for s in seq_names for p in by_curve.get(c.label, {}).get(s, [])
                       if p["param"] == pt.param and p["value"] == pt.value]
            if len(per_seq) != len(seq_names):
                continue
            row = {"param": pt.param, "value": pt.value, "setting": pt.setting, "sequences": len(per_seq)}
            for k in _AVG_FIELDS:
                row[k] = _mean([p.get(k) for p in per_seq])
            rows.append(row)
        average[c.label] = rows

    anchor = _pick_anchor(cfg.codecs, cfg.anchor)
    bd_rows = []
    if anchor:
        for c in cfg.codecs:
            if c.label == anchor:
                continue
            row = {"curve": c.label, "anchor": anchor}
            for seq in seq_names + [AVERAGE]:
                if seq == AVERAGE:
                    a_pts, t_pts = average.get(anchor, []), average.get(c.label, [])
                else:
                    a_pts, t_pts = by_curve.get(anchor, {}).get(seq, []), by_curve.get(c.label, {}).get(seq, [])
                rate, dpsnr = _bd_pair(a_pts, t_pts, "psnr_rgb", cfg.bd_method)
                rate_yuv, dpsnr_yuv = _bd_pair(a_pts, t_pts, "psnr_yuv611", cfg.bd_method)
                row[seq] = {"bd_rate_rgb": rate, "bd_psnr_rgb": dpsnr, "bd_rate_yuv611": rate_yuv,
                            "bd_psnr_yuv611": dpsnr_yuv}
            bd_rows.append(row)

    published = []
    if cfg.published != "never":
        for seq in [AVERAGE] + seq_names:
            published += [pc.as_dict() for pc in published_curves(sources[0].dataset, seq)] if sources else []
    bd_published = []
    if full_run and cfg.published != "never" and sources:
        for pc in published_curves(sources[0].dataset, AVERAGE):
            for c in cfg.codecs:
                rate, dpsnr = _bd_pair([{"bpp": b, "psnr_rgb": q} for b, q in zip(pc.bpp, pc.psnr)],
                                       average.get(c.label, []), "psnr_rgb", cfg.bd_method)
                bd_published.append({"curve": c.label, "published": pc.method, "bd_rate_rgb": rate,
                                     "bd_psnr_rgb": dpsnr})

    misses = [{"sequence": p["sequence"], "curve": p["curve"], "point": f"{p['param']}={p['value']}", "warning": w}
              for p in points for w in (p.get("codec_report") or {}).get("warnings", [])]
    return {
        "tool": "nvc eval",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset": sources[0].dataset if sources else cfg.dataset,
        "config": {
            "root": str(cfg.root) if cfg.root else None, "sequences": seq_names, "frames": cfg.frames,
            "crop": f"{cfg.crop[0]}x{cfg.crop[1]}" if cfg.crop else None,
            "size_override": f"{cfg.size[0]}x{cfg.size[1]}" if cfg.size else None,
            "anchor_backend": _backend_name(cfg), "device": cfg.device, "overrides": cfg.overrides,
            "ms_ssim": cfg.ms_ssim, "bd_method": cfg.bd_method, "full_run": full_run,
            "published": cfg.published,
        },
        "sources": [s.describe() for s in sources],
        "curves": [{"label": c.label, "codec": c.codec, "anchor": c.is_anchor,
                    "points": [{"param": p.param, "value": p.value, "setting": p.setting} for p in c.points]}
                   for c in cfg.codecs],
        "points": points,
        "rate_misses": misses,  # points whose stream missed its rate target by > 10 % (kept as coded)
        "average": average,
        "bd": {"anchor": anchor, "method": cfg.bd_method, "metric": "psnr_rgb (and psnr_yuv611)",
               "convention": "negative BD-rate = fewer bits than the anchor", "rows": bd_rows},
        "published": published,
        "bd_vs_published": bd_published if full_run else
        "skipped: only meaningful for a full run (no --crop/--frames/--size)",
    }


# ---- writers -------------------------------------------------------------------------------------------------

def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, text)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e}") from e


def _json_default(o):
    return str(o)


def _sanitize(o):
    if isinstance(o, float):
        return _clean(o)
    if isinstance(o, dict):
        return {k: _sanitize(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    return o


def to_json(rep: dict) -> str:
    return json.dumps(_sanitize(rep), indent=2, default=_json_default)


def to_csv(rep: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for p in rep["points"]:
        w.writerow({k: p.get(k) for k in CSV_FIELDS})
    return buf.getvalue()


def _f(x, nd=4):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def _pct(x):
    return "–" if x is None else f"{x:+.2f} %"


def _db(x):
    return "–" if x is None else f"{x:+.3f} dB"


def to_markdown(rep: dict) -> str:
    cfg = rep["config"]
    L = [f"# nvc eval: {rep['dataset']}", ""]
    L.append(f"- sequences: {', '.join(cfg['sequences'])}")
    L.append(f"- frames: {cfg['frames'] or 'all'}; crop: {cfg['crop'] or 'none'}"
             + (f"; size override (test/downscaled copies): {cfg['size_override']}" if cfg["size_override"] else ""))
    L.append(f"- anchors via: {cfg['anchor_backend']}; BD method: {cfg['bd_method']}; created {rep['created']}")
    if not cfg["full_run"]:
        L.append("- partial run (crop / frame limit / size override): not comparable with published numbers")
    L += ["", f"## Average over {len(cfg['sequences'])} sequence(s)", "",
          "| codec | point | bpp | PSNR RGB (dB) | PSNR YUV 6:1:1 (dB) | MS-SSIM | encode s | decode s |",
          "|---|---|---|---|---|---|---|---|"]
    for label, rows in rep["average"].items():
        for r in rows:
            L.append(f"| {label} | {r['param']}={r['value']} | {_f(r['bpp'], 5)} | {_f(r['psnr_rgb'], 2)} | "
                     f"{_f(r['psnr_yuv611'], 2)} | {_f(r['ms_ssim'], 4)} | {_f(r['encode_s'], 2)} | "
                     f"{_f(r['decode_s'], 2)} |")
    bd = rep["bd"]
    if bd["rows"]:
        seqs = cfg["sequences"]
        L += ["", f"## BD-rate vs {bd['anchor']} (PSNR RGB, {bd['method']}; negative = fewer bits)", "",
              "| codec | average | " + " | ".join(seqs) + " |", "|---|---|" + "---|" * len(seqs)]
        for row in bd["rows"]:
            cells = [_pct(row[AVERAGE]["bd_rate_rgb"])] + [_pct(row[s]["bd_rate_rgb"]) for s in seqs]
            L.append(f"| {row['curve']} | " + " | ".join(cells) + " |")
        L += ["", f"BD-PSNR vs {bd['anchor']} (RGB) and BD-rate on PSNR YUV 6:1:1, average curves:", "",
              "| codec | BD-PSNR RGB | BD-rate YUV 6:1:1 | BD-PSNR YUV 6:1:1 |", "|---|---|---|---|"]
        for row in bd["rows"]:
            a = row[AVERAGE]
            L.append(f"| {row['curve']} | {_db(a['bd_psnr_rgb'])} | {_pct(a['bd_rate_yuv611'])} | "
                     f"{_db(a['bd_psnr_yuv611'])} |")
    if isinstance(rep["bd_vs_published"], list) and rep["bd_vs_published"]:
        L += ["", "## BD-rate vs published curves (average, PSNR RGB)", "", "| codec | published | BD-rate | BD-PSNR |",
              "|---|---|---|---|"]
        for r in rep["bd_vs_published"]:
            L.append(f"| {r['curve']} | {r['published']} | {_pct(r['bd_rate_rgb'])} | {_db(r['bd_psnr_rgb'])} |")
    if rep.get("rate_misses"):
        L += ["", "## Rate targets missed by more than 10 % (the streams were kept as coded)", "",
              "| sequence | codec | point | encoder's warning |", "|---|---|---|---|"]
        L += [f"| {m['sequence']} | {m['curve']} | {m['point']} | {m['warning']} |" for m in rep["rate_misses"]]
    L += ["", "## Per sequence", "",
          "| sequence | codec | point | bytes | bpp | PSNR RGB | PSNR Y | PSNR YUV 6:1:1 | MS-SSIM | enc s | dec s |",
          "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in rep["points"]:
        L.append(f"| {p['sequence']} | {p['curve']} | {p['param']}={p['value']} | {p['stream_bytes']} | "
                 f"{_f(p['bpp'], 5)} | {_f(p['psnr_rgb'], 2)} | {_f(p['psnr_y'], 2)} | {_f(p['psnr_yuv611'], 2)} | "
                 f"{_f(p.get('ms_ssim'), 4)} | {_f(p['encode_s'], 2)} | {_f(p['decode_s'], 2)} |")
    L += ["", "## Commands (first sequence; every point's command is in results.json / results.csv)", ""]
    first = cfg["sequences"][0] if cfg["sequences"] else None
    for p in rep["points"]:
        if p["sequence"] == first:
            L.append(f"- {p['curve']} {p['param']}={p['value']} ({p['backend']}): `{p['command']}`")
    if rep["published"]:
        L += ["", "## Published reference curves (dashed on the plots)", ""]
        seen = set()
        for pc in rep["published"]:
            if (pc["method"], pc["source"]) not in seen:
                seen.add((pc["method"], pc["source"]))
                L.append(f"- {pc['method']}: {pc['source']}")
    L.append("")
    return "\n".join(L)


def write_all(rep: dict, out: str | Path, plots: bool = True) -> dict[str, str]:
    out = Path(out)
    paths = {"json": out / "results.json", "csv": out / "results.csv", "markdown": out / "results.md"}
    _atomic_write(paths["json"], to_json(rep))
    _atomic_write(paths["csv"], to_csv(rep))
    _atomic_write(paths["markdown"], to_markdown(rep))
    result = {k: str(v) for k, v in paths.items()}
    if plots:
        from .plots import plot_report

        for i, p in enumerate(plot_report(rep, out / "plots")):
            result[f"plot{i}"] = str(p)
    return result
