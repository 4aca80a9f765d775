"""Shipped EVC weights: export after training, load for coding (npz, fp16, `allow_pickle=False`).

Files in `plugins/nvc_evc/weights/` (format of `nvc_pipe.intra.weights`: `config` JSON + `param.*` fp16 + extras):

* `evc_entropy.npz` — the shared `EntropyModel` (hyperprior, fusion, spatial prior, z density, q_basic, q_scale)
  and `tables.*`: the integer z tables (offset 0) exported once from the fp16 density;
* `evc_L.npz`, `evc_M.npz`, `evc_S.npz` — encoder `enc.*` and decoder `dec.*` of each size;
* `evc_gauss.npz` — the Gaussian residual tables of `tables.py` (`lengths`, concatenated `freqs` uint16), so a
  decoder does not spend ~15 s rebuilding them; a test rebuilds some and compares.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nvc_pipe.errors import ConfigError
from nvc_pipe.intra.factorized import EntropyTables, quantize_pmf
from nvc_pipe.intra.weights import load_model_arrays, save_model

from .coding import GaussTables
from .model import EVC, EntropyModel, EVCConfig, BitEstimator
from . import tables

WEIGHTS = Path(__file__).parent / "weights"
SIZES = ("L", "M", "S")
Z_TAIL = 1e-9


class Transforms(nn.Module):
    def __init__(self, model: EVC) -> None:
        super().__init__()
        self.enc, self.dec = model.enc, model.dec


@torch.no_grad()
def export_z_tables(density: BitEstimator, precision: int = 16, max_half: int = 255) -> EntropyTables:
    """Integer tables of ẑ = round(z) (offset 0) from the density, in float64 on the CPU, once."""
    d = density.double().cpu()
    n = d.h.shape[1]
    grid = torch.arange(-max_half - 1, max_half + 1, dtype=torch.float64) + 0.5  # bin edges
    cdf = torch.sigmoid(d.logits(grid.view(1, 1, -1).expand(n, 1, -1)))[:, 0].numpy()  # (n, 2·max_half + 2)
    los, rows = [], []
    for c in range(n):
        inside = np.nonzero((cdf[c, 1:] > Z_TAIL / 2) & (cdf[c, :-1] < 1 - Z_TAIL / 2))[0]
        a, b = (int(inside[0]), int(inside[-1])) if inside.size else (max_half, max_half)
        pmf = np.maximum(np.diff(cdf[c, a:b + 2]), 0.0)
        escape = max(cdf[c, a] + 1.0 - cdf[c, b + 1], 0.0)
        rows.append(quantize_pmf(np.append(pmf, escape), 1 << precision))
        los.append(a - max_half)
    lengths = np.array([r.size for r in rows], dtype=np.int32)
    freqs = np.zeros((n, int(lengths.max())), dtype=np.int32)
    for c, r in enumerate(rows):
        freqs[c, : r.size] = r
    density.float()
    return EntropyTables(np.zeros(n, np.float16), np.array(los, np.int32), freqs, lengths, precision)


def save_weights(out: Path, models: dict, info: dict) -> None:
    """Write evc_entropy.npz (from the models' shared entropy model) and evc_<size>.npz for each given size."""
    out.mkdir(parents=True, exist_ok=True)
    em = next(iter(models.values())).entropy
    em.half().float()  # the shipped values, so the z tables match what a loader sees
    save_model(out / "evc_entropy.npz", em, {"n": em.n, "info": info}, export_z_tables(em.z_density).to_arrays())
    for size, m in models.items():
        wcfg = {"enc": list(m.cfg.enc), "dec": list(m.cfg.dec), "n": m.cfg.n}
        save_model(out / f"evc_{size}.npz", Transforms(m), wcfg, {})


def save_gauss(out: Path) -> None:
    freqs, lengths, _ = tables.all_tables()
    flat = np.concatenate([freqs[k, : lengths[k]] for k in range(len(lengths))]).astype(np.uint16)
    np.savez(out / "evc_gauss.npz", lengths=lengths.astype(np.int32), freqs=flat,
             sha256=np.array(tables.tables_sha256()))


def export_all(work: Path, out: Path, info: dict | None = None) -> None:
    """Write the shipped files from a training work dir (base_LL.pt, MM.pt, SS.pt)."""
    base = EVC(EVCConfig.small("LL"))
    base.load_state_dict(torch.load(work / "base_LL.pt", weights_only=True))
    info = dict(info or {})
    for f in ("base.json", "decay.json"):
        if (work / f).exists():
            info[f[:-5]] = json.loads((work / f).read_text())
    models = {"L": base}
    for size in ("M", "S"):
        if (work / f"{size * 2}.pt").exists():
            m = EVC(EVCConfig.small(size * 2))
            m.load_state_dict(torch.load(work / f"{size * 2}.pt", weights_only=True))
            m.entropy = base.entropy
            models[size] = m
    save_weights(out, models, info)
    save_gauss(out)


@lru_cache(maxsize=4)
def load_gauss(directory: str = str(WEIGHTS)) -> GaussTables:
    path = Path(directory) / "evc_gauss.npz"
    if not path.exists():
        freqs, lengths, half = tables.all_tables()
        return GaussTables(freqs, lengths, half)
    with np.load(path, allow_pickle=False) as z:
        lengths, flat = z["lengths"].astype(np.int64), z["freqs"].astype(np.int64)
    if lengths.shape != (tables.N_TABLES,) or flat.size != lengths.sum():
        raise ConfigError(f"cannot load {path}: inconsistent Gaussian tables")
    freqs = np.zeros((lengths.size, int(lengths.max())), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    for k in range(lengths.size):
        freqs[k, : lengths[k]] = flat[starts[k]: starts[k + 1]]
    return GaussTables(freqs, lengths, (lengths - 1) // 2)


@lru_cache(maxsize=4)
def load_entropy(directory: str = str(WEIGHTS)) -> tuple[EntropyModel, EntropyTables]:
    cfg, state, rest = load_model_arrays(Path(directory) / "evc_entropy.npz")
    em = EntropyModel(int(cfg["n"]))
    em.load_state_dict(state)
    return em.eval(), EntropyTables.from_arrays(rest)


@lru_cache(maxsize=8)
def load_size(size: str, directory: str = str(WEIGHTS)) -> EVC:
    """The EVC model of one size (encoder and decoder of that size, the shared entropy model)."""
    if size not in SIZES:
        raise ConfigError(f"unknown EVC size {size!r} (L, M or S)")
    em, _ = load_entropy(directory)
    cfg, state, _ = load_model_arrays(Path(directory) / f"evc_{size}.npz")
    m = EVC(EVCConfig(tuple(cfg["enc"]), tuple(cfg["dec"]), int(cfg["n"])), entropy=em)
    Transforms(m).load_state_dict(state)
    return m.eval()


def weights_bytes(directory: Path = WEIGHTS) -> int:
    return sum(p.stat().st_size for p in directory.glob("*.npz"))

