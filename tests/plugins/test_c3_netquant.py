"""C3 network quantization: the u8 weight-scale codes, and the per-tensor step search lowering the real RD cost."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nvc_c3 import netquant
from nvc_c3.codec import fit_segment
from nvc_c3.model import PatchModel
from nvc_c3.presets import IMAGE_PRESET, with_steps


def test_scale_codes_are_exact_monotone_and_nearest():
    values = [netquant.scale_value(c) for c in range(256)]
    assert values[0] == 2.0**-5 and values[255] == 1984.0 and values[16] == 2 * values[0]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert all(v == float(np.float64(m) * 2.0**e) for v, (m, e) in zip(values, ((16 + c % 16, c // 16 - 9)
                                                                                 for c in range(256))))
    rng = np.random.default_rng(0)
    for b in (0.01, 0.2, 1.0, 3.7, 14.5, 236.25, 1e5):
        q = np.round(rng.laplace(0, b, 4000)).astype(np.int64)
        code = netquant.scale_code(q)
        target = min(max(np.abs(q).mean(), values[0]), values[-1])
        assert abs(np.log2(values[code] / target)) <= min(abs(np.log2(v / target)) for v in values) + 1e-12


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.arange(24), torch.arange(32), indexing="ij")
    img = torch.stack([(x * 7 + y * 3) % 256, (x * y) % 256, (128 + 60 * torch.sin(x / 3.0)).long()], -1)
    frames = img[None].to(torch.int32)
    preset = with_steps(dataclasses.replace(IMAGE_PRESET, c3=dataclasses.replace(IMAGE_PRESET.c3, rd_lambda=4e-3)),
                        80)
    seg, _ = fit_segment(frames, 255, preset)
    return seg.patches[0], frames[0].float() / 255, preset


def _rd_cost(model, target, preset, code) -> float:
    net = netquant.load_network(PatchModel(model.cfg, (1, *target.shape[:2]), model.windows),
                                {r.name: r for r in code.records})
    mse = float(F.mse_loss(netquant.render_patch(net, code.grids)[0], target))
    bits = code.estimate_bits + netquant.network_bits(code.records) + netquant.TENSOR_HEADER_BITS * len(code.records)
    return mse + preset.c3.rd_lambda * bits / target[..., 0].numel()


def test_per_tensor_search_never_costs_more_than_the_group_search(trained):
    model, target, preset = trained
    group_only = dataclasses.replace(preset, c3=dataclasses.replace(preset.c3, refine_exponents=False,
                                                                    weight_deadzones=()))
    coarse = netquant.quantize_patch(model, target[None], group_only)
    fine = netquant.quantize_patch(model, target[None], preset)
    assert len({e for e, _ in coarse.steps.values()}) <= 4 and all(dz == 0 for _, dz in coarse.steps.values())
    assert fine.steps != coarse.steps  # the refinement moved something on this picture
    assert _rd_cost(model, target, preset, fine) < _rd_cost(model, target, preset, coarse)
    for rec in fine.records:  # every record is what its step says: q = dead-zone rounding of w · 2^k
        exp, dz = fine.steps[rec.name]
        w = model.network_parameters()[rec.name].detach().double() * 2.0**exp
        assert np.array_equal(rec.quant.q, (torch.sign(w) * torch.floor(w.abs() + 0.5 - dz)).long().numpy())
        assert netquant.record_exponent(rec) == exp
