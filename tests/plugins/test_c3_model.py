"""C3 model: strict config, patch layout for any video size, latent grids, synthesis init, MACs per pixel."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import json

import pytest
import torch

from nvc_c3 import PRESETS, codec
from nvc_c3.model import C3Config, PatchModel, grid_shapes, macs_per_pixel, patch_boxes, upsample
from nvc_c3.presets import patch_size_for_lambda
from nvc_pipe.errors import BitstreamError
from nvc_pipe.plugins import VideoCodec
from nvc_pipe.stages.overfit import TrainConfig


def test_plugin_contract():
    assert isinstance(codec, VideoCodec)
    assert codec.name == "c3" and codec.default_preset == "c3-fast" and "c3-tiny" in codec.presets
    for name, preset in codec.presets.items():
        assert isinstance(preset.train, TrainConfig) and preset.description, name
        assert preset.train.prune_epochs == 0 and preset.train.qat_epochs == 0
    assert [s.name for s in codec.stages(PRESETS["c3-tiny"])] == ["frames", "overfit", "quantize", "entropy"]


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_json(name):
    cfg = PRESETS[name].model
    d = json.loads(json.dumps(codec.config_to_dict(PRESETS[name])))
    assert codec.config_from_dict(d) == cfg


@pytest.mark.parametrize("change", [
    {"extra": 1}, {"num_grids": None}, {"num_grids": "5"}, {"num_grids": True}, {"q_step": "0.3"},
    {"synthesis_widths": [12, 1.5]}, {"synthesis_widths": []}, {"per_frame_conv": 1}, {"context": "magic"},
    {"num_grids": 0}, {"patch_frames": -1}, {"q_step": float("nan")}, {"context_size": 65}, {"arm_linear": 0},
    {"context": "learned", "arm_per_grid": False},
])
def test_config_from_dict_is_strict(change):
    d = codec.config_to_dict(PRESETS["c3-fast"])
    for k, v in change.items():
        if v is None:
            del d[k]
        else:
            d[k] = v
    with pytest.raises(BitstreamError):
        codec.config_from_dict(d)


@pytest.mark.parametrize("size", [(8, 32, 32), (7, 33, 50), (1, 1, 1), (31, 181, 241), (60, 1080, 1920)])
def test_patches_tile_any_video_size(size):
    t, h, w = size
    cfg = C3Config(patch_frames=30, patch_height=180, patch_width=240)
    boxes = patch_boxes(cfg, t, h, w)
    cover = torch.zeros(t, h, w, dtype=torch.int32) if t * h * w < 10**6 else None
    for t0, y0, x0, pt, ph, pw in boxes:
        assert 1 <= pt <= 30 and 1 <= ph <= 180 and 1 <= pw <= 240
        if cover is not None:
            cover[t0 : t0 + pt, y0 : y0 + ph, x0 : x0 + pw] += 1
    if cover is not None:
        assert bool((cover == 1).all())
    # near-equal parts: no slivers at the edges
    for axis in (3, 4, 5):
        sizes = {b[axis] for b in boxes}
        assert max(sizes) - min(sizes) <= 1
    if size == (60, 1080, 1920):
        assert len(boxes) == 2 * 6 * 8 and {b[3:] for b in boxes} == {(30, 180, 240)}


def test_patch_size_follows_lambda():
    assert patch_size_for_lambda(2e-3) == (75, 270, 320)
    assert patch_size_for_lambda(5e-4) == (60, 180, 240)
    assert patch_size_for_lambda(1e-4) == (30, 180, 240)


def test_latent_grids_halve_time_and_space():
    assert grid_shapes((30, 180, 240), 5) == [(30, 180, 240), (15, 90, 120), (8, 45, 60), (4, 23, 30), (2, 12, 15)]
    model = PatchModel(C3Config(num_grids=3, patch_frames=8), (5, 9, 11))
    assert [tuple(g.shape) for g in model.latents] == [(5, 9, 11), (3, 5, 6), (2, 3, 3)]
    assert all(float(g.detach().abs().sum()) == 0 for g in model.latents)
    # fixed gains 2^k: the symbol of grid k is 2^k · g / q_step
    with torch.no_grad():
        model.latents[2].fill_(0.3)
    assert torch.allclose(model.unquantized_symbols(2), torch.full((2, 3, 3), 4.0))
    model.set_latent_gain(16.0)  # Cool-Chic's one encoder gain for every grid (encoder-side only)
    assert torch.allclose(model.unquantized_symbols(2), torch.full((2, 3, 3), 4.8))
    model.set_latent_gain(0.0)
    assert torch.allclose(model.unquantized_symbols(2), torch.full((2, 3, 3), 4.0))


def test_linear_synthesis_branch_adds_a_linear_map_of_the_latents():
    cfg = C3Config(num_grids=2, synthesis_linear=True)
    model = PatchModel(cfg, (1, 4, 5))
    names = [n for n in model.network_parameters() if n.startswith("synthesis.")]
    assert names[-1] == "synthesis.linear.weight"  # after the MLP and the residual convs (docs/bitstream.md §8.3)
    feats = torch.randn(1, 4, 5, 2)
    plain = PatchModel(C3Config(num_grids=2), (1, 4, 5))
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if "linear" not in k})
    with torch.no_grad():
        diff = model.synthesis(feats) - plain.synthesis(feats)
    assert torch.allclose(diff, feats @ model.synthesis.linear.weight.T, atol=1e-6)


def test_trilinear_upsampling_is_parameter_free_and_exact_on_constants():
    g = torch.full((2, 3, 4), 1.5)
    assert torch.equal(upsample(g, (4, 6, 8)), torch.full((4, 6, 8), 1.5))
    ramp = torch.arange(4.0).view(1, 1, 4).expand(2, 3, 4)
    up = upsample(ramp, (2, 3, 8))
    assert torch.allclose(up[0, 0], torch.tensor([0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0]))  # half-pixel centres


@pytest.mark.parametrize("per_frame", [True, False])
def test_residual_convs_start_as_identity(per_frame):
    model = PatchModel(C3Config(num_grids=2, per_frame_conv=per_frame), (3, 5, 6))
    feats = torch.randn(3, 5, 6, 2)
    h = feats
    for i, layer in enumerate(model.synthesis.mlp):
        h = layer(h)
        if i < len(model.synthesis.mlp) - 1:
            h = torch.nn.functional.gelu(h)
    assert torch.allclose(model.synthesis(feats), h)


def test_macs_per_pixel_match_c3():
    """C3's own counts (reference notes §1.7), per-frame residual convs: 4094 / 1790 / 2010 MACs per pixel."""
    for name, ref in (("c3-mid-nocond", 4094), ("c3-high", 1790), ("c3-mid-learned", 2010)):
        cfg = PRESETS[name].model
        boxes = patch_boxes(cfg, cfg.patch_frames, cfg.patch_height, cfg.patch_width)
        assert macs_per_pixel(cfg, boxes) == pytest.approx(ref, rel=0.005), name
    cfg = PRESETS["c3-fast"].model
    assert macs_per_pixel(cfg, patch_boxes(cfg, 16, 144, 256)) < 1000


def test_image_decoder_stays_within_its_mac_budget_and_counts_the_coarse_inputs():
    """The default image operating point keeps ≤ 1.1k MAC/px (issue #14); the coarse context costs N·(w1 + 2) MACs
    per latent of every grid (shared ARM with a linear branch)."""
    from dataclasses import replace

    from nvc_c3.presets import IMAGE_PRESET

    cfg = IMAGE_PRESET.model
    boxes = patch_boxes(cfg, 1, 144, 256)
    assert cfg.coarse_context == 9 and macs_per_pixel(cfg, boxes) <= 1100
    latents = sum(a * b * c for a, b, c in grid_shapes((1, 144, 256), cfg.num_grids))
    extra = macs_per_pixel(cfg, boxes) - macs_per_pixel(replace(cfg, coarse_context=0), boxes)
    assert extra == pytest.approx(9 * (cfg.arm_widths[0] + 2) * latents / (144 * 256))


def test_learned_upsampling_starts_as_bicubic_and_learns():
    import torch.nn.functional as F

    from nvc_c3.model import LearnedUpsampling

    up = LearnedUpsampling(2)
    fine, coarse = torch.zeros(1, 10, 14), torch.randn(1, 5, 7)
    out = up([fine, coarse])
    assert out.shape == (1, 10, 14, 2) and torch.equal(out[..., 0], fine)
    ref = F.interpolate(coarse[None], size=(10, 14), mode="bicubic", align_corners=False)[0]
    assert torch.allclose(out[..., 1], ref, atol=1e-5)
    out[..., 1].sum().backward()
    assert up.taps.grad is not None and up.taps.grad.abs().sum() > 0
    # odd sizes (ceil grids) crop the ×2 result; a 3-D grid is also linear ×2 in time
    grids = [torch.zeros(4, 9, 11), torch.zeros(2, 5, 6), torch.zeros(1, 3, 3)]
    assert LearnedUpsampling(3)(grids).shape == (4, 9, 11, 3)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_network_shapes_match_the_model_and_leave_the_rng_alone(name):
    """The decoder's record shapes come from a one-pixel-a-frame model: they must equal the real patch's."""
    from nvc_c3.payload import network_shapes

    cfg = PRESETS[name].model
    for shape in [(1, 16, 16), (2, 9, 7), (8, 40, 48), (17, 5, 70)]:
        real = [(n, tuple(p.shape)) for n, p in PatchModel(cfg, shape).network_parameters().items()]
        torch.manual_seed(0)
        assert network_shapes(cfg, shape) == real
        drawn = torch.rand(2)
        torch.manual_seed(0)
        assert torch.equal(torch.rand(2), drawn)
