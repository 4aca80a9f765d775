"""Post-training quantization of one patch: latent symbols, power-of-two weight steps by a costed search, and the
exact coder parameters the integer ARM gives (what the encoder codes with and the decoder recomputes).

Network weights are held as `nvc_pipe.bitstream.tensors.TensorRecord`s (integers q, one scale 2^−k per tensor).
The step is a power of two because the integer ARM shifts by k (arm.py); synthesis weights use the same scheme.
They are coded as zero-mean quantized Laplace symbols with one scale per tensor (b ≈ mean |q|, sent as a u8 code), as
C3 costs them: the shared categorical blocks of tensors.py carry a histogram per tensor, which for C3's networks
of a few hundred to a few thousand parameters costs more than the weights themselves (measured: 725 parameters,
2119 bytes with histograms against about 500 with Laplace). Each tensor's step (exponent, rounding dead zone) is
chosen by a search (`quantize_patch`: per group, then per tensor; C3 grid-searches two float steps) minimising
the real cost

    MSE(clip(x̂_q)) + λ · (latent bits under the integer ARM + weight bits + tensor headers) / pixels.

Latent symbols are round(2^k·g_k / q_step), clamped to ±255 (the latent alphabet). Information content is
reported under the coder's model: the Laplace mass with constriction's leaky floor (each of the n alphabet bins
keeps at least 2^−24).
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from nvc_pipe.bitstream.tensors import QuantizedTensor, TensorRecord
from nvc_pipe.errors import BitstreamError

from .arm import (SYMBOL_MAX, IntArm, IntLayer, all_contexts, coarse_inputs, coder_params, decode_permutation,
                  int_arm_forward, wavefront_slope)
from .model import PatchModel, grid_order
from .presets import Preset
from .quantizer import laplace_bits

MAX_EXP = 24  # fp16 holds 2^−24 exactly (smallest subnormal)
WEIGHT_MAX = (1 << 15) - 1  # weight alphabet −32767..32767
TENSOR_HEADER_BITS = 16  # exponent u8 + Laplace scale code u8
CODER_FLOOR = 2.0**-24  # constriction's leaky quantizer: smallest probability of a bin
CHUNK = 1 << 16  # positions per integer-ARM batch at encode time
GROUPS = ("arm_weight", "arm_bias", "synthesis_weight", "synthesis_bias")


@dataclass
class PatchCode:
    """Everything the payload needs for one patch, plus the encoder's own measurements."""

    records: list[TensorRecord]
    grids: list[torch.Tensor]  # int64 symbols per grid (T_k, H_k, W_k), CPU
    symbols: np.ndarray  # int32, all grids in decode order
    means: np.ndarray  # float64, decode order
    scales: np.ndarray
    estimate_bits: float  # Σ −log2 P under the exact coder parameters (coder's model, no 16-bit cap)
    crc: int  # CRC-32 of `symbols` as little-endian int16
    steps: dict[str, tuple[int, float]]  # per tensor: (exponent k, rounding dead zone)
    latent_search: dict | None = None  # latent_rdo.refine_latents' summary when the latents were searched


def _symbol_bits(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray, alphabet: int) -> torch.Tensor:
    bits = laplace_bits(torch.from_numpy(symbols.astype(np.float64)), torch.from_numpy(means),
                        torch.from_numpy(scales), max_bits=200.0)
    p = torch.exp2(-bits) * (1 - alphabet * CODER_FLOOR) + CODER_FLOOR
    return -torch.log2(p)


def position_bits(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray, alphabet: int) -> np.ndarray:
    """−log2 P of each symbol under the coder's model (`information_bits` is their sum)."""
    return _symbol_bits(symbols, means, scales, alphabet).numpy()


def information_bits(symbols: np.ndarray, means: np.ndarray, scales: np.ndarray, alphabet: int) -> float:
    """Σ −log2 P under the coder's model: Laplace mass, leaky floor 2^−24 per bin over `alphabet` bins."""
    return float(_symbol_bits(symbols, means, scales, alphabet).sum())


def scale_value(code: int) -> float:
    """The Laplace scale a u8 code stands for: (16 + low nibble) · 2^(high nibble − 9), exact in float64, so every
    machine has the same coder parameters (0.03125 … 1984, steps of 1/16 … 1/31)."""
    return float((16 + (code & 15)) * 2.0 ** ((code >> 4) - 9))


SCALE_VALUES = np.array([scale_value(c) for c in range(256)])


def scale_code(q: np.ndarray) -> int:
    """u8 code of a tensor's Laplace scale: the value nearest (in log) to the ML estimate mean |q|, clamped."""
    b = float(np.abs(q).mean()) if q.size else 0.0
    return int(np.argmin(np.abs(np.log2(SCALE_VALUES) - math.log2(min(max(b, SCALE_VALUES[0]), SCALE_VALUES[-1])))))


def weight_scale(q: np.ndarray) -> float:
    """Laplace scale of a tensor's integers as sent (`scale_value(scale_code(q))`)."""
    return scale_value(scale_code(q))


def network_bits(records: list[TensorRecord]) -> float:
    """Information content of the weights under their per-tensor Laplace models (tensor headers not included)."""
    q = np.concatenate([r.quant.q.reshape(-1) for r in records])
    b = np.concatenate([np.full(r.quant.q.size, weight_scale(r.quant.q)) for r in records])
    return information_bits(q, np.zeros(q.size), b, 2 * WEIGHT_MAX + 1)


def group_of(name: str, ndim: int) -> str:
    return ("arm_" if name.startswith("arms.") else "synthesis_") + ("weight" if ndim > 1 else "bias")


def pow2_record(name: str, x: torch.Tensor, exp: int, deadzone: float = 0.0) -> TensorRecord | None:
    """x quantized to integers · 2^−exp as a kind-1 record; None if an integer needs more than 16 bits.
    `deadzone` d rounds magnitudes with fraction below 0.5 + d down (d = 0: round to nearest)."""
    v = x.detach().double().cpu() * 2.0**exp
    q = (torch.sign(v) * torch.floor(v.abs() + 0.5 - deadzone)).to(torch.int64).numpy()
    if q.size and int(np.abs(q).max()) > WEIGHT_MAX:
        return None
    scale = np.full((1,) * x.ndim, 2.0**-exp, dtype=np.float16)
    return TensorRecord(name, tuple(x.shape), quant=QuantizedTensor(q, scale, -1, 16))


def record_exponent(rec: TensorRecord) -> int:
    """k of a record whose single scale is 2^−k, 0 ≤ k ≤ 24; BitstreamError otherwise (the integer ARM needs it)."""
    if rec.quant is None or rec.quant.scale.size != 1:
        raise BitstreamError(f"corrupt C3 payload: {rec.name} must be a quantized tensor with one scale")
    mant, e = np.frexp(float(rec.quant.scale.reshape(-1)[0]))
    if mant != 0.5 or not 0 <= 1 - e <= MAX_EXP:
        raise BitstreamError(f"corrupt C3 payload: {rec.name} scale is not a power of two in 2^-24..1")
    return int(1 - e)


def _int_layer(records: dict[str, TensorRecord], name: str) -> IntLayer:
    w, b = records[f"{name}.weight"], records[f"{name}.bias"]
    return IntLayer(w.quant.q.astype(np.int64).reshape(w.shape), record_exponent(w),
                    b.quant.q.astype(np.int64).reshape(-1), record_exponent(b))


def int_layers(records: dict[str, TensorRecord], prefix: str) -> list[IntLayer]:
    """The integer MLP layers of the ARM whose records start with `prefix` ("arms.0.")."""
    layers, i = [], 0
    while f"{prefix}layers.{i}.weight" in records:
        layers.append(_int_layer(records, f"{prefix}layers.{i}"))
        i += 1
    return layers


def int_arm(records: dict[str, TensorRecord], cfg, k: int) -> IntArm:
    """The integer ARM of grid k: MLP layers, residual flag and linear branch from the config."""
    prefix = arm_prefix(cfg, k)
    linear = _int_layer(records, prefix + "linear") if f"{prefix}linear.weight" in records else None
    return IntArm(int_layers(records, prefix), cfg.arm_residual, linear, cfg.activation)


def arm_prefix(cfg, k: int) -> str:
    """Record-name prefix of grid k's ARM."""
    return f"arms.{k if cfg.arm_per_grid else 0}."


def quantized_symbols(model: PatchModel) -> list[torch.Tensor]:
    with torch.no_grad():
        return [torch.round(model.unquantized_symbols(k)).clamp(-SYMBOL_MAX, SYMBOL_MAX).to(torch.int64).cpu()
                for k in range(len(model.latents))]


def grid_context_matrix(model: PatchModel, k: int, symbols: torch.Tensor,
                        coarser: torch.Tensor | None = None, positions: torch.Tensor | None = None) -> np.ndarray:
    """(positions, inputs) int64 ARM inputs of every position of grid k, raster order (`coarser`: grid k + 1), or
    of the flat raster indices `positions`; they depend on the symbols only, so a search over the ARM's weights
    gathers them once."""
    a = model.arm(k)
    ctx = all_contexts(symbols, a.offsets, positions)
    if a.coarse:
        ctx = torch.cat([ctx, coarse_inputs(coarser, tuple(symbols.shape), a.coarse, positions)], dim=1)
    return ctx.numpy()


def grid_coder_params(layers: IntArm, ctx: np.ndarray):
    """(means, scales) of the positions whose ARM inputs are the rows of `ctx`, from the integer ARM."""
    mus, raws = zip(*(int_arm_forward(layers, ctx[i : i + CHUNK]) for i in range(0, ctx.shape[0], CHUNK)))
    return coder_params(np.concatenate(mus), np.concatenate(raws))


def latent_code(model: PatchModel, records: dict[str, TensorRecord], symbols: list[torch.Tensor]):
    """(symbols, means, scales) in decode order and the exact information content in bits."""
    out_s, out_m, out_b = [], [], []
    for k in grid_order(model.cfg):
        s = symbols[k]
        coarser = symbols[k + 1] if k + 1 < len(symbols) else None
        means, scales = grid_coder_params(int_arm(records, model.cfg, k), grid_context_matrix(model, k, s, coarser))
        perm = decode_permutation(tuple(s.shape), wavefront_slope(model.arm(k).offsets))
        out_s.append(s.reshape(-1).numpy()[perm])
        out_m.append(means[perm])
        out_b.append(scales[perm])
    syms, means, scales = (np.concatenate(v) for v in (out_s, out_m, out_b))
    return syms.astype(np.int32), means, scales, information_bits(syms, means, scales, 2 * SYMBOL_MAX + 1)


def symbols_crc(symbols: np.ndarray) -> int:
    return zlib.crc32(symbols.astype("<i2").tobytes())


def load_network(model: PatchModel, records: dict[str, TensorRecord]) -> PatchModel:
    """Copy the records' decoded values (q · 2^−k, exact in float32) into the model's network parameters."""
    with torch.no_grad():
        for name, p in model.network_parameters().items():
            p.copy_(torch.from_numpy(records[name].values()).reshape(p.shape).to(p.device))
    return model


def render_patch(model: PatchModel, symbols: list[torch.Tensor]) -> torch.Tensor:
    """Decoder's reconstruction of a patch from integer symbols: (T, H, W, 3) in [0, 1]."""
    dev = next(model.parameters()).device
    with torch.no_grad():
        return model.render([s.to(dev, torch.float32) for s in symbols]).clamp(0, 1)


def _records(model: PatchModel, steps: dict[str, tuple[int, float]]) -> list[TensorRecord] | None:
    """The network's records at per-tensor (exponent, dead zone) `steps`; None if one overflows 16 bits."""
    out = []
    for name, p in model.network_parameters().items():
        rec = pow2_record(name, p, *steps[name])
        if rec is None:
            return None
        out.append(rec)
    return out


def quantize_patch(model: PatchModel, target: torch.Tensor, preset: Preset) -> PatchCode:
    """Choose every tensor's weight step (exponent, rounding dead zone) by the costed search; return the code.

    1. one exponent per group (ARM weights, ARM biases, synthesis weights, synthesis biases), greedily from the
       preset's lists, round to nearest (Cool-Chic's module-wise search, with power-of-two steps);
    2. `c3.refine_exponents`: each tensor's own exponent moves by ±1 while that lowers the cost (coordinate
       descent, up to 3 passes; the exponent is sent per tensor anyway);
    3. `c3.weight_deadzones`: each tensor keeps the dead zone (round-to-nearest shifted towards zero) that costs
       least, a per-tensor stand-in for RDOQ;
    4. `c3.latent_rdo_passes`: the latents' greedy ±1 search under those weights (latent_rdo.py).
    Nothing here changes the format: the decoder reads integers and one exponent per tensor."""
    c3 = preset.c3
    symbols = quantized_symbols(model)
    pixels = target[..., 0].numel()
    dev = target.device
    params = model.network_parameters()
    groups = {n: group_of(n, p.ndim) for n, p in params.items()}
    syn_names = [n for n in params if not n.startswith("arms.")]
    grid_arms = [[n for n in params if n.startswith(arm_prefix(model.cfg, k))] for k in range(len(symbols))]
    contexts = [grid_context_matrix(model, k, symbols[k], symbols[k + 1] if k + 1 < len(symbols) else None)
                .astype(np.int16) for k in range(len(symbols))]  # symbols are within ±255: a quarter of int64
    flat = [g.reshape(-1).numpy() for g in symbols]
    probe = copy.deepcopy(model)  # the decoder with quantized synthesis/upsampling weights
    probe_params = {n: p for n, p in probe.network_parameters().items() if not n.startswith("arms.")}
    floats = [s.to(dev, torch.float32) for s in symbols]
    mse_cache: dict[tuple, float] = {}
    rate_cache: dict[tuple, float] = {}
    net_cache: dict[tuple, float] = {}

    def cost(steps: dict[str, tuple[int, float]]) -> float:
        records = _records(model, steps)
        if records is None:
            return math.inf
        by_name = {r.name: r for r in records}
        syn_key = tuple(steps[n] for n in syn_names)
        if syn_key not in mse_cache:
            with torch.no_grad():
                for n, p in probe_params.items():
                    p.copy_(torch.from_numpy(by_name[n].values()).reshape(p.shape))
                mse_cache[syn_key] = float(F.mse_loss(probe.render(floats).clamp(0, 1), target))
        bits = 0.0
        for k, names in enumerate(grid_arms):  # a grid's rate depends on its own ARM only (per-grid ARMs)
            key = (k, *(steps[n] for n in names))
            if key not in rate_cache:
                means, scales = grid_coder_params(int_arm(by_name, model.cfg, k), contexts[k])
                rate_cache[key] = information_bits(flat[k], means, scales, 2 * SYMBOL_MAX + 1)
            bits += rate_cache[key]
        for r in records:
            net_cache.setdefault((r.name, steps[r.name]), network_bits([r]))
        bits += sum(net_cache[(n, st)] for n, st in steps.items())
        return mse_cache[syn_key] + c3.rd_lambda * (bits + TENSOR_HEADER_BITS * len(records)) / pixels

    start = {"arm_weight": 8, "arm_bias": 10, "synthesis_weight": 10, "synthesis_bias": 12}
    steps = {n: (start[g], 0.0) for n, g in groups.items()}
    choices = {"arm_weight": c3.arm_weight_exps, "arm_bias": c3.arm_bias_exps,
               "synthesis_weight": c3.synthesis_weight_exps, "synthesis_bias": c3.synthesis_bias_exps}
    for group in GROUPS:
        members = [n for n, g in groups.items() if g == group]
        best_cost, best_e = min((cost({**steps, **{n: (e, 0.0) for n in members}}), e) for e in choices[group])
        if math.isfinite(best_cost):
            steps.update({n: (best_e, 0.0) for n in members})
    best = cost(steps)
    for _ in range(3 if c3.refine_exponents and math.isfinite(best) else 0):
        moved = False
        for name in params:
            for delta in (-1, 1):
                while 0 <= steps[name][0] + delta <= MAX_EXP:
                    trial = {**steps, name: (steps[name][0] + delta, 0.0)}
                    c = cost(trial)
                    if c >= best:
                        break
                    best, steps, moved = c, trial, True
        if not moved:
            break
    for name in params if math.isfinite(best) else ():
        exp = steps[name][0]
        for dz in c3.weight_deadzones:
            c = cost({**steps, name: (exp, dz)})
            if c < best:
                best, steps = c, {**steps, name: (exp, dz)}
    records = _records(model, steps)
    while records is None and min(e for e, _ in steps.values()) > 0:  # every candidate overflowed 16 bits
        steps = {n: (max(0, e - 2), 0.0) for n, (e, _) in steps.items()}
        records = _records(model, steps)
    if records is None:
        raise RuntimeError("C3 network weights too large to quantize to 16 bits")
    search = None
    if c3.latent_rdo_passes:
        from .latent_rdo import refine_latents  # (latent_rdo prices with this module's coder functions)

        symbols, search = refine_latents(model, symbols, target, c3.rd_lambda, c3.latent_rdo_passes, records)
    syms, means, scales, bits = latent_code(model, {r.name: r for r in records}, symbols)
    return PatchCode(records, symbols, syms, means, scales, bits, symbols_crc(syms), steps, search)
