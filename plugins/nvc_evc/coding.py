"""EVC latent coding: z with integer factorized tables, then y in two checkerboard steps, plus a symbol CRC.

Encoder and decoder share `_Step` logic; every value that decides a probability comes from `fixedpoint.IntPrior`
(integers) and `tables` (integers), so both sides pick the same tables on any machine. Symbols are coded with the
shared `nvc_pipe.entropy.encode_tables` (constriction range coder, one block per table group call):

    z block:    `nvc_pipe.intra.factorized.encode_latents` of ẑ = round(z) (tables with offset 0, escapes)
    step 1:     residuals r = round(y/q_step − μ) at the step-1 positions (channel half 0 on mask0, half 1 on
                mask1, C-order), each coded as bin r + B_k under Gaussian table k = sigma_index(log σ)
    step 2:     the complementary positions, with (log σ, μ) from the integer spatial prior over step 1
    symbol_crc: CRC-32 of ẑ, step-1 r, step-2 r as little-endian int32, in that order

Residuals beyond ±B_k are clipped by the encoder (it then reconstructs with the clipped value, so encoder and
decoder agree). A decoder whose probabilities differ from the encoder's (corruption, a different prior) decodes
other symbols: the CRC turns that into `BitstreamError("... entropy model desync ...")` and no image.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

from nvc_pipe import entropy
from nvc_pipe.bitstream.fields import ByteReader, ByteWriter
from nvc_pipe.errors import BitstreamError
from nvc_pipe.intra.factorized import EntropyTables, decode_latents, encode_latents

from .fixedpoint import FRAC, ONE, IntPrior, y_hat_fixed
from .model import checkerboard
from .tables import sigma_index


@dataclass
class GaussTables:
    freqs: np.ndarray  # (K, max_len) int64
    lengths: np.ndarray  # (K,)
    half: np.ndarray  # (K,) B_k


@dataclass
class Latents:
    """What both sides know after coding: integer symbols and the fixed-point latent (units 2^−F·q_step)."""

    z: np.ndarray  # (N, h/4, w/4) int64
    r: torch.Tensor  # (1, N, h, w) float64 integer residuals
    y_fixed: torch.Tensor  # (1, N, h, w) (r + μ)·2^F
    q_step: torch.Tensor  # (1, N, h, w) q_step·2^F
    crc: int

    def y_hat(self) -> torch.Tensor:
        """ŷ / (q_basic·q_scale), float32: the same float64 operations on both sides."""
        return (self.y_fixed / ONE * (self.q_step / ONE)).float()


def symbol_crc(z: np.ndarray, r1: np.ndarray, r2: np.ndarray) -> int:
    crc = zlib.crc32(np.asarray(z, dtype="<i4").tobytes())
    crc = zlib.crc32(np.asarray(r1, dtype="<i4").tobytes(), crc)
    return zlib.crc32(np.asarray(r2, dtype="<i4").tobytes(), crc)


def _code_step(r: torch.Tensor, idx: torch.Tensor, sel: torch.Tensor, g: GaussTables) -> tuple[bytes, np.ndarray]:
    k = idx[sel].cpu().numpy()
    vals = r[sel].cpu().numpy().astype(np.int64)
    return entropy.encode_tables(vals + g.half[k], k, g.freqs, g.lengths), vals


def _decode_step(data: bytes, idx: torch.Tensor, sel: torch.Tensor, g: GaussTables) -> np.ndarray:
    k = idx[sel].cpu().numpy()
    return entropy.decode_tables(data, k, g.freqs, g.lengths) - g.half[k]


def _clip(r: torch.Tensor, idx: torch.Tensor, g: GaussTables) -> torch.Tensor:
    b = torch.as_tensor(g.half, dtype=torch.float64, device=r.device)[idx]
    return torch.maximum(torch.minimum(r, b), -b)


def encode(y: torch.Tensor, z: torch.Tensor, prior: IntPrior, z_tables: EntropyTables,
           g: GaussTables) -> tuple[bytes, Latents]:
    """y = enc(x)/(q_basic·q_scale) (1, N, h, w) and z = hyper_enc(y) (float, encoder side) → blocks, latents."""
    zq = torch.round(z[0]).double().cpu().numpy().astype(np.int64)
    q_step, log_sigma, mu = prior.fuse(zq[None])
    dev = q_step.device
    yq = y.to(device=dev, dtype=torch.float64) / (q_step / ONE)
    sel1 = checkerboard(prior.n, y.shape[2], y.shape[3], dev).bool()
    idx1 = sigma_index(log_sigma, FRAC)
    r1 = _clip(torch.round(yq - mu / ONE), idx1, g) * sel1
    y1 = y_hat_fixed(r1, mu, q_step) * sel1
    log_sigma2, mu2 = prior.spatial(y1, mu, log_sigma, q_step)
    idx2 = sigma_index(log_sigma2, FRAC)
    r2 = _clip(torch.round(yq - mu2 / ONE), idx2, g) * ~sel1
    w = ByteWriter()
    zw = ByteWriter()
    encode_latents(zq, z_tables, zw)
    w.blob(zw.getvalue(), "z block")
    block1, v1 = _code_step(r1, idx1, sel1, g)
    block2, v2 = _code_step(r2, idx2, ~sel1, g)
    w.blob(block1, "step-1 block")
    w.blob(block2, "step-2 block")
    crc = symbol_crc(zq, v1, v2)
    y_fixed = torch.where(sel1, r1 * ONE + mu, r2 * ONE + mu2)
    return w.getvalue(), Latents(zq, torch.where(sel1, r1, r2), y_fixed, q_step, crc)


def decode(r: ByteReader, shape: tuple[int, int, int], prior: IntPrior, z_tables: EntropyTables,
           g: GaussTables, crc: int) -> Latents:
    """Inverse of `encode` for a latent of shape (N, h, w) (h, w multiples of 4); checks the symbol CRC."""
    n, h, w = shape
    zr = ByteReader(r.blob("z block"), "z block")
    zq = decode_latents(zr, z_tables, (n, h // 4, w // 4))
    if np.abs(zq).max(initial=0) > 1 << 20:
        raise BitstreamError("corrupt stream: hyper-latent out of range")
    block1, block2 = r.blob("step-1 block"), r.blob("step-2 block")
    q_step, log_sigma, mu = prior.fuse(zq[None])
    dev = q_step.device
    sel1 = checkerboard(n, h, w, dev).bool()
    idx1 = sigma_index(log_sigma, FRAC)
    v1 = _decode_step(block1, idx1, sel1, g)
    r1 = torch.zeros(1, n, h, w, dtype=torch.float64, device=dev)
    r1[sel1] = torch.as_tensor(v1, dtype=torch.float64, device=dev)
    y1 = y_hat_fixed(r1, mu, q_step) * sel1
    log_sigma2, mu2 = prior.spatial(y1, mu, log_sigma, q_step)
    idx2 = sigma_index(log_sigma2, FRAC)
    v2 = _decode_step(block2, idx2, ~sel1, g)
    r2 = torch.zeros_like(r1)
    r2[~sel1] = torch.as_tensor(v2, dtype=torch.float64, device=dev)
    got = symbol_crc(zq, v1, v2)
    if got != crc:
        raise BitstreamError(f"corrupt stream: entropy model desync (symbol CRC {got:08x}, stream says {crc:08x})")
    y_fixed = torch.where(sel1, r1 * ONE + mu, r2 * ONE + mu2)
    return Latents(zq, torch.where(sel1, r1, r2), y_fixed, q_step, crc)

