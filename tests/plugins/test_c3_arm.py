"""C3 ARM: contexts, causality of the probabilities, the wavefront decode order, and the integer ARM."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import hashlib

import numpy as np
import pytest
import torch

from nvc_c3 import arm
from nvc_c3.netquant import int_layers, pow2_record

SHAPE = (3, 6, 7)


pytestmark = pytest.mark.usefixtures("one_thread")


def _arm(offsets, widths=(6, 5), seed=0):
    torch.manual_seed(seed)
    a = arm.Arm(offsets, widths)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.3)  # biases start at 0: make every path matter
    return a


def _int_layers(a, w_exp=10, b_exp=12):
    recs = {n: pow2_record(n, p, w_exp if p.ndim > 1 else b_exp) for n, p in a.named_parameters()}
    return int_layers(recs, "")


def _symbols(seed=1):
    return torch.randint(-4, 5, SHAPE, generator=torch.Generator().manual_seed(seed))


CONTEXTS = {"full": arm.full_context(), "learned": arm.learned_context((-2, 1)),
            "learned-far": arm.learned_context((-9, 5))}


def test_context_sizes():
    full = arm.full_context()
    assert len(full) == 121 and len(set(full)) == 121
    assert sum(o[0] == -1 for o in full) == 81 and sum(o[0] == 0 for o in full) == 40
    assert len(arm.learned_context((3, -4))) == 16 + 24 and len(arm.learned_context(None)) == 24
    for offsets in CONTEXTS.values():
        arm.check_causal(offsets)
    with pytest.raises(ValueError):
        arm.check_causal(((0, 0, 0),))
    with pytest.raises(ValueError):
        arm.check_causal(((0, 0, 1),))


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_wavefront_order_is_causal(name):
    """Every in-grid context position of a latent is decoded strictly before it (so a step decodes in one batch)."""
    offsets = CONTEXTS[name]
    t, h, w = (3, 9, 11)
    perm = arm.decode_permutation((t, h, w), arm.wavefront_slope(offsets))
    assert sorted(perm.tolist()) == list(range(t * h * w))
    rank = np.empty_like(perm)
    rank[perm] = np.arange(perm.size)
    for ti in range(t):
        for y in range(h):
            for x in range(w):
                for dt, dy, dx in offsets:
                    tt, yy, xx = ti + dt, y + dy, x + dx
                    if 0 <= tt and 0 <= yy < h and 0 <= xx < w:
                        assert rank[(tt * h + yy) * w + xx] < rank[(ti * h + y) * w + x]
    # positions of one wavefront step never see each other
    for ys, xs in arm.wavefront_steps(h, w, arm.wavefront_slope(offsets)):
        step = set(zip(ys.tolist(), xs.tolist()))
        for y, x in step:
            assert not any((y + dy, x + dx) in step for dt, dy, dx in offsets if dt == 0)


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_changing_a_future_latent_never_changes_a_past_probability(name):
    offsets = CONTEXTS[name]
    a = _arm(offsets)
    layers = _int_layers(a)
    sym = _symbols()
    rank = np.empty(sym.numel(), dtype=np.int64)
    perm = arm.decode_permutation(SHAPE, arm.wavefront_slope(offsets))
    rank[perm] = np.arange(perm.size)

    def params(s):
        mu_i, raw_i = arm.int_arm_forward(layers, arm.all_contexts(s, offsets).numpy())
        with torch.no_grad():
            mu_f, raw_f = a.forward_grid(s.float())
        return torch.from_numpy(mu_i), torch.from_numpy(raw_i), mu_f.reshape(-1), raw_f.reshape(-1)

    base = params(sym)
    changed_later, positions = 0, list(range(0, sym.numel(), 5)) + [sym.numel() - 1]
    for p in positions:
        s2 = sym.clone().view(-1)
        s2[p] += 7
        new = params(s2.view(SHAPE))
        past = torch.from_numpy(rank <= rank[p])  # its own probability included: a symbol never conditions itself
        for b, n in zip(base, new):
            assert torch.equal(b[past], n[past]), f"position {p} changed an earlier probability"
        changed_later += int((base[0] != new[0]).any())
    assert changed_later > len(positions) // 2  # the context is really used


@pytest.mark.parametrize("name", sorted(CONTEXTS))
def test_masked_convolution_equals_gathered_contexts(name):
    a = _arm(CONTEXTS[name])
    s = torch.randn(SHAPE)
    with torch.no_grad():
        mu_c, raw_c = a.forward_grid(s)
        mu_g, raw_g = a.forward_contexts(arm.all_contexts(s, a.offsets))
    assert torch.allclose(mu_c.reshape(-1), mu_g, atol=1e-5) and torch.allclose(raw_c.reshape(-1), raw_g, atol=1e-5)


def test_integer_arm_tracks_the_float_arm():
    a = _arm(arm.full_context())
    s = _symbols()
    ctx = arm.all_contexts(s, a.offsets)
    mu_i, raw_i = arm.int_arm_forward(_int_layers(a, 12, 14), ctx.numpy())
    with torch.no_grad():
        mu_f, raw_f = a.forward_contexts(ctx.float())
    assert np.abs(mu_i / 256 - mu_f.double().numpy()).max() < 0.05
    assert np.abs(raw_i / 256 - raw_f.double().numpy()).max() < 0.05


def test_integer_arm_is_batch_invariant():
    a = _arm(arm.full_context())
    layers = _int_layers(a)
    ctx = arm.all_contexts(_symbols(), a.offsets).numpy()
    mu, raw = arm.int_arm_forward(layers, ctx)
    idx = np.random.default_rng(0).permutation(ctx.shape[0])[:17]
    mu2, raw2 = arm.int_arm_forward(layers, ctx[idx])
    assert np.array_equal(mu[idx], mu2) and np.array_equal(raw[idx], raw2)
    one = [arm.int_arm_forward(layers, ctx[i : i + 1]) for i in range(5)]
    assert np.array_equal(np.concatenate([m for m, _ in one]), mu[:5])


def _py_rshift(v: int, s: int) -> int:
    return v * (1 << -s) if s <= 0 else (v + (1 << (s - 1))) >> s  # Python ints: exact, floor shift


def _py_gelu(x: int) -> int:
    z = _py_rshift(x * arm.INV_SQRT2_Q16, 16)
    c = min(abs(z), arm.ERF_B_Q8) - arm.ERF_B_Q8
    sign = (z > 0) - (z < 0)
    erf = sign * (_py_rshift(arm.ERF_A_Q16 * c * c, 16) + 65536)
    return _py_rshift(x * (65536 + erf), 17)


def test_integer_arm_matches_an_arbitrary_precision_reference_at_the_extremes():
    """The spec (docs/bitstream.md §8) in Python big integers: no int64 overflow, same rounding."""
    c, w1 = 121, 4
    rng = np.random.default_rng(3)
    big = lambda *shape: rng.integers(-32767, 32768, shape, dtype=np.int64)  # noqa: E731
    layers = [arm.IntLayer(big(w1, c), 0, big(w1), 24), arm.IntLayer(big(2, w1), 24, big(2), 0)]
    ctx = rng.integers(-255, 256, (6, c), dtype=np.int64)
    ctx[0] = 255
    ctx[1] = -255
    mu, raw = arm.int_arm_forward(layers, ctx)
    for n in range(ctx.shape[0]):
        a = [int(v) * 256 for v in ctx[n]]
        for i, layer in enumerate(layers):
            if i:
                a = [_py_gelu(v) for v in a]
            wq, bq = layer.weight.tolist(), layer.bias.tolist()
            out = []
            for o in range(len(bq)):
                acc = sum(wv * av for wv, av in zip(wq[o], a)) + _py_rshift(bq[o], layer.b_exp - 8 - layer.w_exp)
                v = _py_rshift(acc, layer.w_exp)
                out.append(max(-arm.ACT_MAX, min(arm.ACT_MAX, v)) if i < len(layers) - 1 else v)
            a = out
        assert (int(mu[n]), int(raw[n])) == (a[0], a[1])


def test_integer_gelu_tracks_the_float_one():
    x = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    xi = np.round(x.numpy() * 256).astype(np.int64)
    assert np.abs(arm.int_gelu(xi) / 256 - arm.gelu_poly(torch.from_numpy(xi / 256)).numpy()).max() < 2**-7
    assert (arm.gelu_poly(x) - torch.nn.functional.gelu(x)).abs().max() < 0.02  # I-BERT approximation error


def test_scale_table_is_pinned():
    """The coder's scales: exp(−v/512) through `decimal`, the same bytes on every machine (golden hash)."""
    t = arm.scale_table()
    assert t.size == arm.RAW_MAX_Q8 - arm.RAW_MIN_Q8 + 1
    assert t[-arm.RAW_MIN_Q8] == 1.0 and t[-arm.RAW_MIN_Q8 - 512] == np.e
    assert np.all(np.diff(t) < 0) and t.max() < 150.01 and t.min() > 0.000999
    digest = hashlib.sha256(t.astype("<f8").tobytes()).hexdigest()
    assert digest == "45b4d64168a189590c26dd80064d502e859f4ef6fb3ff16e15f0d61f41c497fe"


def test_coder_params_are_dyadic_and_clamped():
    mu = np.array([0, 1, -1, 10**9, -(10**9), 77])
    raw = np.array([0, -(10**9), 10**9, 5, -5, -2048])
    means, scales = arm.coder_params(mu, raw)
    assert means.tolist() == [0.0, 1 / 256, -1 / 256, 255.0, -255.0, 77 / 256]
    assert scales[0] == np.float64(arm.scale_table()[2048 - arm.RAW_MIN_Q8])  # raw 0 → exp(−4): C3's initial scale
    assert scales[1] == arm.scale_table()[0] and scales[2] == arm.scale_table()[-1]
    assert scales[5] == 1.0


def _cool_arm(seed=0):
    """Cool-Chic-like ARM: 8 nearest current-frame offsets, two residual 8-wide layers, a linear branch."""
    from nvc_c3.model import nearest_current

    offsets = nearest_current(tuple(o for o in arm.full_context() if o[0] == 0), 8)
    torch.manual_seed(seed)
    a = arm.Arm(offsets, (8, 8), residual=True, linear=True)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return a


def test_nearest_current_context():
    from nvc_c3.model import nearest_current

    cur = tuple(o for o in arm.full_context() if o[0] == 0)
    near = nearest_current(cur, 4)
    assert set(near) == {(0, 0, -1), (0, -1, 0), (0, -1, -1), (0, -1, 1)} and list(near) == sorted(near)
    full = nearest_current(arm.full_context(), 5)  # previous frame: the co-located value and its 4 neighbours
    assert {o for o in full if o[0] == -1} == {(-1, 0, 0), (-1, -1, 0), (-1, 0, -1), (-1, 0, 1), (-1, 1, 0)}
    assert len(full) == 10 and list(full) == sorted(full)


def test_residual_linear_arm_grid_equals_contexts_and_integer_tracks_float():
    a = _cool_arm()
    s = _symbols()
    ctx = arm.all_contexts(s, a.offsets)
    with torch.no_grad():
        mu_c, raw_c = a.forward_grid(s.float())
        mu_f, raw_f = a.forward_contexts(ctx.float())
    assert torch.allclose(mu_c.reshape(-1), mu_f, atol=1e-4) and torch.allclose(raw_c.reshape(-1), raw_f, atol=1e-4)
    recs = {n: pow2_record(n, p, 12 if p.ndim > 1 else 14) for n, p in a.named_parameters()}
    from nvc_c3.netquant import _int_layer

    net = arm.IntArm(int_layers(recs, ""), True, _int_layer(recs, "linear"))
    mu_i, raw_i = arm.int_arm_forward(net, ctx.numpy())
    assert np.abs(mu_i / 256 - mu_f.double().numpy()).max() < 0.05
    assert np.abs(raw_i / 256 - raw_f.double().numpy()).max() < 0.05
    # without its branch or residuals the integer net is a different function: both paths really count
    assert np.abs(arm.int_arm_forward(arm.IntArm(net.layers, True), ctx.numpy())[0] - mu_i).max() > 64
    assert np.abs(arm.int_arm_forward(arm.IntArm(net.layers, False, net.linear), ctx.numpy())[0] - mu_i).max() > 64


def test_one_frame_grids_have_no_previous_frame_inputs():
    from nvc_c3.model import C3Config, PatchModel

    cfg = C3Config(num_grids=3, arm_widths=(2,), patch_frames=0, patch_height=0, patch_width=0)
    image = PatchModel(cfg, (1, 8, 8))
    assert all(o[0] == 0 for a in image.arms for o in a.offsets) and len(image.arms[0].offsets) == 40
    video = PatchModel(cfg, (2, 8, 8))  # grid 0 has 2 latent frames, grids 1-2 have one
    assert [len(a.offsets) for a in video.arms] == [121, 40, 40]


def test_coarse_context_reads_the_colocated_coarser_symbols_and_integer_tracks_float():
    from nvc_c3.model import C3Config, coarse_offsets, grid_order

    cfg = C3Config(num_grids=3, arm_per_grid=False, coarse_context=9)
    coarse = coarse_offsets(cfg, 0)
    assert coarse == tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) and grid_order(cfg) == [2, 1, 0]
    assert coarse_offsets(C3Config(num_grids=3, coarse_context=5), 2) == ()  # per-grid ARM: none at the top
    assert coarse_offsets(C3Config(num_grids=3, arm_per_grid=False, coarse_context=1), 0) == ((0, 0),)
    torch.manual_seed(0)
    a = arm.Arm(arm.full_context(), (6, 6), True, True, "relu", coarse)
    with torch.no_grad():
        for p in a.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    s = _symbols()  # (3, 6, 7); its coarser grid is (2, 3, 4)
    c = torch.randint(-4, 5, (2, 3, 4), generator=torch.Generator().manual_seed(5))
    ctx = torch.cat([arm.all_contexts(s, a.offsets), arm.coarse_inputs(c, SHAPE, coarse)], dim=1)
    want = torch.zeros(3, 3, dtype=torch.int64)  # (t 2, y 5, x 6) → co-located (1, 2, 3); zeros outside
    want[:2, :2] = c[1, 1:3, 2:4]
    assert torch.equal(ctx[6 * 7 * 2 + 7 * 5 + 6, -9:], want.reshape(-1))
    with torch.no_grad():
        mu_c, raw_c = a.forward_grid(s.float(), c.float())
        mu_f, raw_f = a.forward_contexts(ctx.float())
        mu_0, _ = a.forward_grid(s.float())
    assert torch.allclose(mu_c.reshape(-1), mu_f, atol=1e-4) and torch.allclose(raw_c.reshape(-1), raw_f, atol=1e-4)
    assert (mu_0 - mu_c).abs().max() > 0.1  # the coarse inputs really count
    recs = {n: pow2_record(n, p, 12 if p.ndim > 1 else 14) for n, p in a.named_parameters()}
    from nvc_c3.netquant import _int_layer

    net = arm.IntArm(int_layers(recs, ""), True, _int_layer(recs, "linear"), "relu")
    mu_i, raw_i = arm.int_arm_forward(net, ctx.numpy())
    assert np.abs(mu_i / 256 - mu_f.double().numpy()).max() < 0.05
    assert np.abs(raw_i / 256 - raw_f.double().numpy()).max() < 0.05
