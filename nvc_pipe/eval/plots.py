"""RD plots (matplotlib, Agg backend, PNG): RGB PSNR against bpp, one figure for the dataset average and one per
sequence. Measured curves are solid with markers; published reference curves (HiNeRV, C3) dashed, drawn when the
run is a full one (no crop / frame limit / size override) or when asked for with ``published="always"``.
"""

from __future__ import annotations

import re
from pathlib import Path

from nvc_pipe.media.atomic import atomic_output

from .published import AVERAGE

_MARKERS = "osD^vP*Xh<>"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def plot_rd(curves: list[dict], path: str | Path, title: str, reference: list[dict] | None = None,
            metric: str = "psnr_rgb", ylabel: str = "PSNR RGB (dB)") -> Path:
    """Draw RD curves into a PNG.

    Args:
        curves: ``[{"label": str, "bpp": [...], "y": [...]}, ...]`` measured curves (solid).
        reference: same shape, published curves (dashed).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    try:
        for i, c in enumerate(curves):
            pts = sorted((b, y) for b, y in zip(c["bpp"], c["y"]) if b is not None and y is not None)
            if not pts:
                continue
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="-", marker=_MARKERS[i % len(_MARKERS)],
                    markersize=5, label=c["label"])
        for c in reference or []:
            pts = sorted(zip(c["bpp"], c["y"]))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle="--", marker=".", alpha=0.8,
                    label=f"{c['label']} (published)")
        ax.set_xlabel("bpp")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(str(path)) as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)
    return path


def plot_report(rep: dict, out_dir: str | Path, published: str | None = None) -> list[Path]:
    """One PNG for the average over sequences and one per sequence; returns the paths written."""
    out_dir = Path(out_dir)
    cfg = rep["config"]
    mode = published or cfg.get("published", "auto")
    show_pub = mode == "always" or (mode == "auto" and cfg.get("full_run"))
    ds = rep["dataset"]
    note = ""
    if not cfg.get("full_run"):
        parts = [f"frames={cfg['frames'] or 'all'}"]
        parts += [f"{k}={cfg[k]}" for k in ("crop", "size_override") if cfg.get(k)]
        note = f" (partial: {', '.join(parts)})"

    def reference(seq):
        if not show_pub:
            return []
        return [{"label": p["method"], "bpp": p["bpp"], "y": p["psnr_rgb"]}
                for p in rep["published"] if p["sequence"].lower() == seq.lower()]

    paths = []
    avg = [{"label": label, "bpp": [r["bpp"] for r in rows], "y": [r["psnr_rgb"] for r in rows]}
           for label, rows in rep["average"].items() if rows]
    paths.append(plot_rd(avg, out_dir / f"rd_{_safe(ds)}_average.png",
                         f"{ds}: average over {len(cfg['sequences'])} sequence(s){note}", reference(AVERAGE)))
    for seq in cfg["sequences"]:
        curves = []
        for c in rep["curves"]:
            pts = [p for p in rep["points"] if p["sequence"] == seq and p["curve"] == c["label"]]
            if pts:
                curves.append({"label": c["label"], "bpp": [p["bpp"] for p in pts],
                               "y": [p["psnr_rgb"] for p in pts]})
        paths.append(plot_rd(curves, out_dir / f"rd_{_safe(ds)}_{_safe(seq)}.png", f"{ds} / {seq}{note}",
                             reference(seq)))
    return paths
