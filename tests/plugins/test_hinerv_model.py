import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import json

import pytest
import torch

from nvc_hinerv.configs import PRESETS, HiNeRVConfig
from nvc_hinerv.model import _time_lerp, build_model, grid_parameters, prunable_parameters

OFFICIAL = {  # hinerv.md §1.7: (params, width, height, frames)
    "bunny-xxs": (766_691, 1280, 720, 132),
    "bunny-xs": (1_585_666, 1280, 720, 132),
    "bunny-s": (3_249_819, 1280, 720, 132),
    "uvg-s": (3_188_933, 1920, 1080, 600),
    "uvg-m": (6_489_553, 1920, 1080, 600),
    "uvg-l": (12_818_953, 1920, 1080, 600),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_parameter_counts(name):
    params, w, h, t = OFFICIAL[name]
    with torch.device("meta"):
        model = build_model(PRESETS[name], t, h, w)
    assert model.num_parameters() == params


def test_cpu_presets_are_small():
    assert 40_000 <= build_model(PRESETS["fast"], 48, 144, 256).num_parameters() <= 80_000
    assert build_model(PRESETS["tiny"], 4, 32, 32).num_parameters() <= 5_000


def _perturbed(cfg, t, h, w, seed=0):
    torch.manual_seed(seed)
    model = build_model(cfg, t, h, w)
    with torch.no_grad():
        for p in model.parameters():  # grids are ~1e-3 and biases 0 at init: make every path matter
            p.add_(torch.randn_like(p) * 0.3)
    return model


ODD = HiNeRVConfig(channels=8, scales=(3, 2), depths=(2, 1), exps=(2.0, 1.0), kernel_size=5, stem_kernel_size=5,
                   base_grid_frames=3, base_grid_channels=1, local_grid_channels=2)


@pytest.mark.parametrize("cfg,t,h,w,sizes", [
    (PRESETS["tiny"], 4, 48, 64, [(4, 4), (8, 12), (16, 8), (48, 64)]),
    (ODD, 5, 36, 48, [(6, 6), (12, 18), (36, 48)]),
])
def test_patch_equals_frame(cfg, t, h, w, sizes):
    model = _perturbed(cfg, t, h, w)
    f = cfg.factor
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        frames = model(torch.arange(t))
        assert frames.shape == (t, h, w, 3) and frames.std() > 0.02
        for ph, pw in sizes:
            n = 6
            tt = torch.randint(0, t, (n,), generator=gen)
            ys = torch.randint(0, (h - ph) // f + 1, (n,), generator=gen) * f
            xs = torch.randint(0, (w - pw) // f + 1, (n,), generator=gen) * f
            ys[:3] = torch.tensor([0, h - ph, 0])  # corners: top-left, bottom-right, top-right
            xs[:3] = torch.tensor([0, w - pw, w - pw])
            out = model(tt, torch.stack([ys, xs], 1), (ph, pw))
            ref = torch.stack([frames[tt[i], ys[i]:ys[i] + ph, xs[i]:xs[i] + pw] for i in range(n)])
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_output_range_and_gradients():
    model = build_model(PRESETS["tiny"], 4, 32, 32)
    out = model(torch.tensor([0, 3]), torch.tensor([[0, 4], [28, 28]]), (4, 4))
    assert out.shape == (2, 4, 4, 3) and out.dtype == torch.float32
    assert ((out >= 0) & (out <= 1)).all()
    out.square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_time_lerp_half_pixel_border_clamp():
    i0, i1, w = _time_lerp(torch.arange(4), frames=4, steps=2)  # src = (t + 0.5) / 2 - 0.5
    assert i0.tolist() == [0, 0, 0, 1] and i1.tolist() == [1, 1, 1, 1]
    assert w.flatten().tolist() == [0.0, 0.25, 0.75, 0.0]


def test_size_errors():
    with pytest.raises(ValueError, match="multiple"):
        build_model(PRESETS["tiny"], 4, 30, 32)
    model = build_model(PRESETS["tiny"], 4, 32, 32)
    with pytest.raises(ValueError):
        model(torch.tensor([0]), torch.tensor([[0, 0]]), (6, 4))
    with pytest.raises(ValueError):
        model(torch.tensor([0]), torch.tensor([[0, 0]]), (36, 4))
    with pytest.raises(ValueError):
        model(torch.tensor([0]), torch.tensor([[0, 0]]))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trip(name):
    cfg = PRESETS[name]
    d = json.loads(json.dumps(cfg.to_dict()))
    assert HiNeRVConfig.from_dict(d) == cfg


def test_config_rejects_bad_input():
    d = PRESETS["tiny"].to_dict()
    with pytest.raises(ValueError, match="bogus"):
        HiNeRVConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ValueError, match="channels"):
        HiNeRVConfig.from_dict({**d, "channels": "16"})
    with pytest.raises(ValueError, match="scales"):
        HiNeRVConfig.from_dict({**d, "scales": [2, 2.5]})
    with pytest.raises(ValueError):
        HiNeRVConfig.from_dict({**d, "depths": [1]})  # length mismatch
    with pytest.raises(ValueError):
        HiNeRVConfig.from_dict({**d, "kernel_size": 4})


def test_prunable_and_grid_parameters():
    model = build_model(PRESETS["tiny"], 4, 32, 32)
    named = dict(model.named_parameters())
    prun, grids = prunable_parameters(model), grid_parameters(model)
    for name, p in prun + grids:
        assert named[name] is p
    prun_ids, grid_ids = {id(p) for _, p in prun}, {id(p) for _, p in grids}
    assert not prun_ids & grid_ids
    assert all(p.ndim > 1 for _, p in prun)  # no biases
    assert not any(".enc." in n for n, _ in prun)  # F_enc is not prunable
    expected = 1 + sum(3 * len(st.blocks) for st in model.stages) + 1
    assert len(prun) == expected
    assert len(grids) == model.cfg.base_grid_levels + len(model.stages) * model.cfg.local_grid_levels
    assert sum(p.numel() for _, p in grids) == sum(p.numel() for n, p in named.items() if "base" in n or "grids" in n)
