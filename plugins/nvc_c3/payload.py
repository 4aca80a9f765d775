"""C3 access-unit payload: byte layout, latent range coding, and the causal wavefront latent decoder.

    payload = patch_count:varint  network{patch_count}  latent_crc:u32{patch_count}  weight_crc:u32
              weights:blob  latents:blob
    network = [window_dy:i8 window_dx:i8]{3 if context = "learned"}  (exponent:u8 scale_code:u8){tensors}
    weights = one quantized-Laplace block (alphabet −32767..32767, mean 0, scale `netquant.scale_value(code)`):
              every patch's tensors in parameter order, each in C order; a value is q · 2^−exponent
    latents = one quantized-Laplace block (alphabet −255..255): every patch in order, each patch's grids
              in `model.grid_order` (0..K−1, or K−1..0 with a coarse context), each grid in wavefront decode
              order (arm.py), parameters from the integer ARM

The decoder rebuilds each patch's integer ARM from its records, decodes its latents step by step (one batch per
wavefront step, so parameters only depend on decoded symbols), and compares their CRC-32 with the one the encoder
wrote: a mismatch is an entropy-model desync and raises `BitstreamError` instead of rendering garbage. The
decoded weight integers carry one CRC-32 per payload (`weight_crc`, little-endian int16 in block order).
Normative description: docs/bitstream.md §8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from nvc_pipe import entropy
from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.bitstream.tensors import QuantizedTensor, TensorRecord
from nvc_pipe.errors import BitstreamError

from . import arm
from .model import C3Config, PatchModel, coarse_offsets, grid_contexts, grid_order, grid_shapes, num_windows
from .netquant import (MAX_EXP, WEIGHT_MAX, PatchCode, int_arm, network_bits, record_exponent, scale_code,
                       scale_value, symbols_crc)


MAX_WINDOW = 64  # |dy|, |dx| of a learned window
MAX_PATCH_PIXELS = 1 << 28


@dataclass
class PatchNetwork:
    windows: list[tuple[int, int]]
    records: dict[str, TensorRecord]


def write_payload(codes: list[PatchCode], windows: list[list[tuple[int, int]]]) -> tuple[bytes, dict]:
    """Serialise the patches; returns the payload and its section sizes (bits)."""
    w = ByteWriter()
    w.varint(len(codes), "patch count")
    q, b = [], []
    for code, win in zip(codes, windows):
        for dy, dx in win:
            w.i8(dy, "window dy")
            w.i8(dx, "window dx")
        for rec in code.records:
            code = scale_code(rec.quant.q)
            w.u8(record_exponent(rec), "weight exponent")
            w.u8(code, "weight scale code")
            q.append(rec.quant.q.reshape(-1))
            b.append(np.full(rec.quant.q.size, scale_value(code)))
    header_bits = 8 * len(w)
    for code in codes:
        w.u32(code.crc, "latent crc")
    q = np.concatenate(q)
    w.u32(symbols_crc(q), "weight crc")
    weights = entropy.encode_laplace(q, np.zeros(q.size), np.concatenate(b), -WEIGHT_MAX, WEIGHT_MAX)
    symbols, means, scales = (np.concatenate([getattr(c, f) for c in codes]) for f in ("symbols", "means", "scales"))
    latents = entropy.encode_laplace(symbols, means, scales, -arm.SYMBOL_MAX, arm.SYMBOL_MAX)
    w.blob(weights, "weight block")
    w.blob(latents, "latent block")
    stats = {"header_bits": header_bits, "weight_coded_bits": 8 * len(weights),
             "weight_estimate_bits": round(sum(network_bits(c.records) for c in codes), 1),
             "latent_coded_bits": 8 * len(latents),
             "latent_estimate_bits": round(sum(c.estimate_bits for c in codes), 1), "payload_bits": 8 * len(w)}
    return w.getvalue(), stats


def network_shapes(cfg: C3Config, shape: tuple[int, int, int]) -> list[tuple[str, tuple[int, ...]]]:
    """Ordered (name, shape) of a patch's network parameters: what its weights must be.

    They depend on the patch's frame count only (the ARM contexts), so the model is built over one pixel a frame,
    on the CPU, with the caller's RNG state restored (building on the meta device would import TorchDynamo: ~2 s
    of every decode)."""
    with torch.random.fork_rng(devices=[]):
        model = PatchModel(cfg, (shape[0], 1, 1))
    return [(n, tuple(p.shape)) for n, p in model.network_parameters().items()]


def read_payload(payload: bytes, cfg: C3Config, boxes: list[tuple[int, ...]]) -> tuple[list[PatchNetwork], list[int],
                                                                                           bytes]:
    """Parse networks, CRCs and the latent block; every count and shape follows from `cfg` and `boxes`."""
    r = ByteReader(payload, "C3 payload")
    count = r.varint("patch count", limit=len(boxes))
    if count != len(boxes):
        raise BitstreamError(f"corrupt C3 payload: {count} patches where the segment has {len(boxes)}")
    headers = []
    for *_, pt, ph, pw in boxes:
        if pt * ph * pw > MAX_PATCH_PIXELS:
            raise BitstreamError("corrupt C3 payload: implausibly large patch")
        windows = []
        for _ in range(num_windows(cfg)):
            dy, dx = r.i8("window dy"), r.i8("window dx")
            if max(abs(dy), abs(dx)) > MAX_WINDOW:
                raise BitstreamError("corrupt C3 payload: learned window out of range")
            windows.append((dy, dx))
        tensors = []
        for name, shape in network_shapes(cfg, (pt, ph, pw)):
            exp = r.u8("weight exponent")
            scale = scale_value(r.u8("weight scale code"))  # every code is a valid scale
            if exp > MAX_EXP:
                raise BitstreamError(f"corrupt C3 payload: {name} has weight exponent {exp} (at most {MAX_EXP})")
            tensors.append((name, shape, exp, scale))
        headers.append((windows, tensors))
    crcs = [r.u32("latent crc") for _ in boxes]
    weight_crc = r.u32("weight crc")
    weight_words = r.blob("weight block")
    latents = r.blob("latent block")
    r.expect_end()
    sizes = [math.prod(shape) for _, tensors in headers for _, shape, _, _ in tensors]
    scales = np.concatenate([np.full(n, t[3]) for n, t in zip(sizes, (t for _, ts in headers for t in ts))])
    q = entropy.decode_laplace(weight_words, np.zeros(scales.size), scales, -WEIGHT_MAX, WEIGHT_MAX)
    if symbols_crc(q) != weight_crc:
        raise BitstreamError("corrupt C3 payload: decoded network weights fail their CRC-32")
    networks, pos = [], 0
    for windows, tensors in headers:
        records = {}
        for name, shape, exp, _ in tensors:
            n = math.prod(shape)
            scale = np.full((1,) * len(shape), 2.0**-exp, dtype=np.float16)
            records[name] = TensorRecord(name, shape, quant=QuantizedTensor(q[pos : pos + n].reshape(shape), scale, -1,
                                                                            16))
            pos += n
        networks.append(PatchNetwork(windows, records))
    return networks, crcs, latents


def decode_grid(layers: arm.IntArm, offsets: arm.Offsets, shape: tuple[int, int, int],
                stream: entropy.LaplaceDecoder, coarse: np.ndarray | None = None) -> torch.Tensor:
    """Decode one grid's symbols (T, H, W) int64: frames in order, one integer-ARM batch per wavefront step.
    `coarse`: the (T·H·W, P) coarse inputs (`arm.coarse_inputs`, raster order), appended to each context."""
    t, h, w = shape
    pad = arm.context_pad(offsets)
    hp, wp = h + 2 * pad, w + 2 * pad
    vol = np.zeros((t + 1) * hp * wp, dtype=np.int64)  # zero frame first, zero border: the ARM's padding
    offs = arm.flat_offsets(offsets, hp, wp).numpy()
    # flat index of each step's positions in the first latent frame; frame ti adds ti·hp·wp
    wave = arm.wavefront_steps(h, w, arm.wavefront_slope(offsets))
    steps = [(ys + pad + hp) * wp + xs + pad for ys, xs in wave]
    rasters = [ys * w + xs for ys, xs in wave]
    for ti in range(t):
        for first, raster in zip(steps, rasters):
            centres = first + ti * hp * wp
            ctx = vol[centres[:, None] + offs]
            if coarse is not None:
                ctx = np.concatenate([ctx, coarse[raster + ti * h * w]], axis=1)
            mu, raw = arm.int_arm_forward(layers, ctx)
            vol[centres] = stream.decode(*arm.coder_params(mu, raw))
    return torch.from_numpy(vol.reshape(t + 1, hp, wp)[1:, pad : pad + h, pad : pad + w].copy())


def decode_patch_latents(cfg: C3Config, net: PatchNetwork, shape: tuple[int, int, int], crc: int,
                         stream: entropy.LaplaceDecoder, index: int) -> list[torch.Tensor]:
    """All grids of one patch; BitstreamError on a coder failure or a CRC mismatch (entropy-model desync)."""
    contexts = grid_contexts(cfg, net.windows, shape)
    shapes = grid_shapes(shape, cfg.num_grids)
    grids: list = [None] * cfg.num_grids
    ordered = []
    try:
        for k in grid_order(cfg):
            gshape, offsets = shapes[k], coarse_offsets(cfg, k)
            coarse = arm.coarse_inputs(grids[k + 1] if k + 1 < cfg.num_grids else None, gshape, offsets).numpy() \
                if offsets else None
            g = decode_grid(int_arm(net.records, cfg, k), contexts[k], gshape, stream, coarse)
            grids[k] = g
            perm = arm.decode_permutation(gshape, arm.wavefront_slope(contexts[k]))
            ordered.append(g.reshape(-1).numpy()[perm])
    except BitstreamError as exc:
        raise BitstreamError(f"C3 patch {index}: entropy model desync or corrupt latents ({exc})") from None
    if symbols_crc(np.concatenate(ordered)) != crc:
        raise BitstreamError(f"C3 patch {index}: entropy model desync (decoded latents fail their CRC-32; the stream "
                             "is corrupt or this decoder's probabilities differ from the encoder's)")
    return grids

