"""Greedy rate-distortion search over a patch's integer latents, after its network weights are quantized.

Training ends with the latents rounded to the nearest integer; the coder then pays for them under the integer
ARM and the decoder renders them with the quantized networks. Nearest is not the best integer: this search
moves single symbols by ±1 where that lowers the real cost

    MSE(clip(render(ŷ))) + λ · (bits of ŷ under the integer ARM) / pixels

exactly as the coder and the decoder will see it (the encoder's side only; the stream format is unchanged).

Exact and batched. A symbol of grid k changes (a) the pixels its upsampled, synthesised contribution reaches,
(b) the rate of the positions of grid k whose ARM context reads it and (c) with a coarse context, the rate of
the positions of grid k − 1 that read it. Those three regions are boxes around it: (a) measured once per grid on
a copy of the decoder with |weights| and no biases (its support is the decoder's structural support), (b) and (c)
from the context offsets. On a lattice whose pitch exceeds every box, the boxes of different symbols are
disjoint, so one render and one pass of the integer ARM price every symbol of a lattice phase at once: each
symbol's change in cost is the sum of the changed maps over its own boxes. A phase tries every symbol one step
towards zero (zeros: +1), keeps those that lower the cost, then tries the other direction.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch

from .arm import SYMBOL_MAX, scale_from_raw
from .model import PatchModel, grid_shapes
from .netquant import grid_coder_params, grid_context_matrix, int_arm, load_network, position_bits
from .quantizer import laplace_bits

Box = tuple[tuple[int, int], ...]  # per axis (t, y, x): (lo, hi) offsets, inclusive


def _support_probe(probe: PatchModel) -> PatchModel:
    """The decoder with every weight replaced by its magnitude and every bias by zero: from all-zero symbols it
    renders exactly 0, and a positive symbol lights exactly the pixels some path of nonzero weights reaches."""
    out = copy.deepcopy(probe)
    with torch.no_grad():
        for name, p in out.network_parameters().items():
            p.copy_(torch.zeros_like(p) if name.endswith("bias") else p.abs())
    return out


def pixel_box(support: PatchModel, k: int) -> Box:
    """Pixel offsets (lo, hi), relative to (t, y, x) · 2^k, that a symbol of grid k can change, per axis; None on
    an axis where that reach may be clipped by the patch border or the upsampling is not exactly ×2 per level
    (the search then takes one symbol per phase along that axis). The learned upsampling and the synthesis are
    translation-invariant in y and x whatever the grid sizes, so there the reach is measured on a larger canvas
    when the patch is too small to hold it."""
    full = list(support.shape)
    for _ in range(4):
        shapes = grid_shapes(tuple(full), support.cfg.num_grids)

        def lit(pos: tuple[int, int, int]) -> torch.Tensor:
            grids = [torch.zeros(s) for s in shapes]
            grids[k][pos] = 1.0
            with torch.no_grad():
                return torch.nonzero(support.render(grids).abs().sum(-1) > 0)

        last = tuple(n - 1 for n in shapes[k])
        lo_pts, hi_pts = lit(last), lit((0, 0, 0))
        box, grow = [], False
        for a in range(3):
            lo = int(lo_pts[:, a].min()) - last[a] * 2**k if len(lo_pts) else 0
            hi = int(hi_pts[:, a].max()) if len(hi_pts) else 0
            exact = full[a] == shapes[k][a] * 2**k or (a > 0 and support.cfg.upsampling == "learned")
            clipped = (len(hi_pts) and hi >= full[a] - 1) or (len(lo_pts) and int(lo_pts[:, a].min()) <= 0)
            if shapes[k][a] > 1 or full[a] != support.shape[a]:
                if clipped and a > 0 and support.cfg.upsampling == "learned":
                    grow = True
                    full[a] *= 4
                box.append(None if clipped or not exact else (lo, hi))
            else:
                box.append((lo, hi))
        if not grow:
            break
    return tuple(box)


def _axis_labels(n: int, start: int, pitch: int, unit: int, lo: int, hi: int, count: int) -> np.ndarray:
    """For each of n coordinates, the index j of the lattice symbol (start + j·pitch) whose box
    [q·unit + lo, q·unit + hi] covers it, or −1."""
    out = np.full(n, -1, dtype=np.int64)
    for j in range(count):
        q = start + j * pitch
        a, b = max(0, q * unit + lo), min(n - 1, q * unit + hi)
        if a <= b:
            out[a : b + 1] = j
    return out


def _labels(shape, starts, pitches, unit: int, box: Box, counts) -> np.ndarray:
    """Flat candidate index (or −1) of every element of a map of `shape` (the boxes are disjoint)."""
    lab = [_axis_labels(n, s, p, unit, lo, hi, c) for n, s, p, (lo, hi), c in zip(shape, starts, pitches, box, counts)]
    t, y, x = np.meshgrid(*lab, indexing="ij")
    flat = (t * counts[1] + y) * counts[2] + x
    return np.where((t >= 0) & (y >= 0) & (x >= 0), flat, -1).reshape(-1)


def _flat_inside(p: np.ndarray, shape) -> torch.Tensor:
    """Sorted unique flat raster indices of the rows of p (n, 3) that lie inside a grid of `shape`."""
    ok = np.all((p >= 0) & (p < np.array(shape)), axis=1)
    t, y, x = p[ok].T
    return torch.from_numpy(np.unique((t * shape[1] + y) * shape[2] + x))


def readers(q: np.ndarray, offsets, shape) -> torch.Tensor:
    """Positions of a grid of `shape` whose rate depends on the symbols at q (n, 3): q itself and every q − o."""
    o = np.array([(0, 0, 0), *offsets], dtype=np.int64)
    return _flat_inside((q[:, None, :] - o[None]).reshape(-1, 3), shape)


def finer_readers(q: np.ndarray, coarse, shape) -> torch.Tensor:
    """Positions p of the next finer grid (of `shape`) whose coarse inputs (p_t//2, p_y//2 + dy, p_x//2 + dx)
    read q (n, 3)."""
    base = np.array([(0, -dy, -dx) for dy, dx in coarse], dtype=np.int64)
    corners = np.array([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.int64)
    p = 2 * (q[:, None, None, :] + base[None, :, None, :]) + corners[None, None]
    return _flat_inside(p.reshape(-1, 3), shape)


def grid_lattice(model: PatchModel, support: PatchModel, shapes: list[tuple[int, int, int]], k: int):
    """The three boxes of a symbol of grid k (pixels, grid k, grid k − 1 or absent) and the lattice pitch per
    axis that keeps the boxes of different symbols of one phase disjoint."""
    offsets, finer = model.arm(k).offsets, (model.arm(k - 1).coarse if k > 0 else ())
    pbox = pixel_box(support, k)
    gbox = tuple((min(-o[a] for o in offsets), max(-o[a] for o in offsets)) for a in range(3))  # p = q − o
    fbox = ((0, 1), *((-2 * max(d[a] for d in finer), -2 * min(d[a] for d in finer) + 1) for a in (0, 1))) \
        if finer else None  # p//2 + d = q
    pitches = []
    for a in range(3):
        need = shapes[k][a] if pbox[a] is None else max(gbox[a][1] - gbox[a][0] + 1,
                                                        math.ceil((pbox[a][1] - pbox[a][0] + 1) / 2**k))
        if fbox:
            need = max(need, math.ceil((fbox[a][1] - fbox[a][0] + 1) / 2))
        pitches.append(max(1, min(need, shapes[k][a])))
    boxes = [tuple(b if b is not None else (-(10**9), 10**9) for b in pbox), gbox] + ([fbox] if fbox else [])
    return boxes, pitches


def refine_latents(model: PatchModel, symbols: list[torch.Tensor], target: torch.Tensor, rd_lambda: float,
                   passes: int, records=None, max_bits: float = 16.0) -> tuple[list[torch.Tensor], dict]:
    """`passes` sweeps of the search over every grid (coarsest first); the new int64 symbols (CPU) and a summary
    (cost before/after, symbols moved, seconds). The cost never rises: a move is kept only if it lowers it.

    With `records` (the quantized networks) a symbol is priced as coded: the decoder's render and the integer
    ARM's exact coder parameters. Without, as trained: the float networks, the float ARM, rates capped at
    `max_bits` per symbol (the training loss; the search before the final phase)."""
    t0 = time.perf_counter()
    dev = target.device
    if records is not None:
        by_name = {r.name: r for r in records}
        probe = load_network(copy.deepcopy(model), by_name)
        arms = [int_arm(by_name, model.cfg, k) for k in range(len(symbols))]
    else:
        probe = model
    support = _support_probe(probe).cpu()
    syms = [s.detach().to("cpu", torch.int64).clone() for s in symbols]
    shapes = [tuple(s.shape) for s in syms]
    pixels = target[..., 0].numel()
    alphabet = 2 * SYMBOL_MAX + 1

    def feature(grids: list[torch.Tensor], k: int) -> torch.Tensor:
        with torch.no_grad():
            return probe.grid_feature(k, grids[k].to(dev, torch.float32), shapes)

    def err_map(feats: list[torch.Tensor]) -> np.ndarray:
        """Per-pixel share of the MSE of the render from per-grid features (`feature`)."""
        with torch.no_grad():
            r = probe.synthesis(torch.stack(feats, dim=-1)).clamp(0, 1)
            return (((r - target) ** 2).sum(-1) / (3 * pixels)).double().cpu().numpy()

    def bits_map(grids: list[torch.Tensor], k: int, positions: torch.Tensor | None = None,
                 base: np.ndarray | None = None) -> np.ndarray:
        """Per-position bits of grid k; as coded, with `positions`: `base` with only those positions priced again
        (every other position reads the same inputs, so it keeps its bits exactly)."""
        if records is not None and positions is not None:
            ctx = grid_context_matrix(model, k, grids[k], grids[k + 1] if k + 1 < len(grids) else None, positions)
            means, scales = grid_coder_params(arms[k], ctx)
            out = base.copy().reshape(-1)
            out[positions.numpy()] = position_bits(grids[k].reshape(-1)[positions].numpy(), means, scales, alphabet)
            return out.reshape(shapes[k])
        if records is None:
            s = grids[k].to(dev, torch.float32)
            coarser = grids[k + 1].to(dev, torch.float32) if k + 1 < len(grids) else None
            with torch.no_grad():
                mu, raw = model.arm(k).forward_grid(s, coarser)
                return laplace_bits(s, mu, scale_from_raw(raw), max_bits).double().cpu().numpy()
        ctx = grid_context_matrix(model, k, grids[k], grids[k + 1] if k + 1 < len(grids) else None)
        means, scales = grid_coder_params(arms[k], ctx)
        return position_bits(grids[k].reshape(-1).numpy(), means, scales, alphabet).reshape(shapes[k])

    def cost(e, b) -> float:
        return float(e.sum() + rd_lambda * sum(m.sum() for m in b) / pixels)

    feats = [feature(syms, k) for k in range(len(syms))]
    err = err_map(feats)
    bits = [bits_map(syms, k) for k in range(len(syms))]
    before, moved = cost(err, bits), 0
    lattices = [grid_lattice(model, support, shapes, k) for k in range(len(syms))]
    for _ in range(passes):
        for k in range(len(syms) - 1, -1, -1):
            boxes, pitches = lattices[k]
            offsets, finer = model.arm(k).offsets, (model.arm(k - 1).coarse if k > 0 else ())
            touched = [k] + ([k - 1] if finer else [])
            map_shapes = [err.shape, shapes[k]] + ([shapes[k - 1]] if finer else [])
            for start in np.ndindex(*pitches):
                axes = [np.arange(s, n, p) for s, n, p in zip(start, shapes[k], pitches)]
                counts = [len(a) for a in axes]
                idx = tuple(torch.from_numpy(i) for i in np.ix_(*axes))
                q = np.stack([g.reshape(-1) for g in np.meshgrid(*axes, indexing="ij")], axis=1)
                labels = [_labels(shape, start, pitches, unit, box, counts)
                          for shape, unit, box in zip(map_shapes, (2**k, 1, 2), boxes)]
                who = {k: readers(q, offsets, shapes[k])}
                if finer:
                    who[k - 1] = finer_readers(q, finer, shapes[k - 1])
                for direction in (-1, 1):  # towards zero (zeros: +1), then away from it (zeros: −1)
                    cur = syms[k][idx].numpy()
                    new = np.clip(cur + direction * np.where(cur != 0, np.sign(cur), -1), -SYMBOL_MAX, SYMBOL_MAX)
                    trial = list(syms)
                    trial[k] = syms[k].clone()
                    trial[k][idx] = torch.from_numpy(new)
                    maps = [(err_map(feats[:k] + [feature(trial, k)] + feats[k + 1 :]), err, 1.0)]
                    maps += [(bits_map(trial, j, who[j], bits[j]), bits[j], rd_lambda / pixels) for j in touched]
                    delta = np.zeros(q.shape[0])  # each symbol's change of cost: the changed maps over its boxes
                    for (m2, m1, w), lab in zip(maps, labels):
                        ok = lab >= 0
                        delta += w * np.bincount(lab[ok], weights=(m2 - m1).reshape(-1)[ok], minlength=q.shape[0])
                    keep = (delta < 0) & (new != cur).reshape(-1)
                    if not keep.any():
                        continue
                    moved += int(keep.sum())
                    syms[k][idx] = torch.from_numpy(np.where(keep.reshape(counts), new, cur))
                    feats[k] = feature(syms, k)
                    updated = []
                    for (m2, m1, _), lab in zip(maps, labels):  # the kept symbols' boxes take the trial's values
                        inside = np.zeros(m1.size, dtype=bool)
                        inside[lab >= 0] = keep[lab[lab >= 0]]
                        updated.append(np.where(inside.reshape(m1.shape), m2, m1))
                    err = updated[0]
                    for j, m in zip(touched, updated[1:]):
                        bits[j] = m
    tracked = cost(err, bits)  # the maps as updated move by move
    after = cost(err_map([feature(syms, k) for k in range(len(syms))]),
                 [bits_map(syms, k) for k in range(len(syms))])  # priced afresh
    if after > before:  # cannot happen while every box holds its symbol's reach; never return a worse code
        syms, after, moved = [s.detach().to("cpu", torch.int64).clone() for s in symbols], before, 0
    return syms, {"cost_before": before, "cost_after": after, "cost_tracked": tracked, "symbols_moved": moved,
                  "seconds": round(time.perf_counter() - t0, 2)}
