"""C3 quantization proxies: soft-rounding limits, its inverse, Kumaraswamy range and mode, Laplace rate."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import math

import pytest
import torch

from nvc_c3 import quantizer as qz


def _values():
    torch.manual_seed(0)
    y = torch.randn(4000, dtype=torch.float64) * 4
    return y[(y - torch.floor(y) - 0.5).abs() > 1e-3]  # away from the half-integers where rounding flips


def test_soft_round_tends_to_rounding_as_temperature_vanishes():
    y = _values()
    assert torch.allclose(qz.soft_round(y, 1e-4), torch.round(y), atol=1e-6)
    # and the error shrinks monotonically with T
    errs = [float((qz.soft_round(y, t) - torch.round(y)).abs().max()) for t in (0.5, 0.2, 0.05, 0.01)]
    assert errs == sorted(errs, reverse=True)


def test_soft_round_tends_to_identity_for_large_temperature():
    y = _values()
    assert torch.allclose(qz.soft_round(y, 1e4), y, atol=1e-6)


def test_soft_round_inverse_and_conditional_mean():
    y = _values()
    for t in (0.1, 0.3, 1.0):
        assert torch.allclose(qz.soft_round_inverse(qz.soft_round(y, t), t), y, atol=1e-6)
    # with no noise and T → 0 the stage-1 proxy is plain rounding
    u = torch.zeros_like(y) + 0.2
    assert torch.allclose(qz.soft_round_conditional_mean(qz.soft_round(y, 1e-3) + u, 1e-3), torch.round(y), atol=2e-3)


@pytest.mark.parametrize("a", [1.0, 1.75, 2.0, 3.0])
def test_kumaraswamy_noise_range(a):
    u = qz.kumaraswamy_noise((200_000,), a, torch.Generator().manual_seed(1))
    assert float(u.min()) > -0.5 and float(u.max()) < 0.5
    assert float(u.min()) < -0.45 and float(u.max()) > 0.45  # and it covers the whole interval


@pytest.mark.parametrize("a", [1.75, 2.0, 3.0])
def test_kumaraswamy_mode_is_centre(a):
    b = qz.kumaraswamy_b(a)
    assert ((a - 1) / (a * b - 1)) ** (1 / a) == pytest.approx(0.5)  # analytic mode of Kumaraswamy(a, b)
    u = qz.kumaraswamy_noise((400_000,), a, torch.Generator().manual_seed(2))
    hist = torch.histc(u, bins=20, min=-0.5, max=0.5)
    assert int(hist.argmax()) in (9, 10)  # the bins either side of 0
    assert float(hist[9] + hist[10]) > 1.5 * float(hist[0] + hist[19])  # peaked at 0, lighter at the ends


def test_kumaraswamy_a1_is_uniform():
    assert qz.kumaraswamy_b(1.0) == 1.0
    u = qz.kumaraswamy_noise((200_000,), 1.0, torch.Generator().manual_seed(3))
    hist = torch.histc(u, bins=10, min=-0.5, max=0.5) / u.numel()
    assert torch.allclose(hist, torch.full_like(hist, 0.1), atol=0.005)


def test_ste_round_forward_is_round_and_gradient_flows_through_soft_round():
    y = torch.tensor([0.2, 0.49, 1.7, -2.3], requires_grad=True)
    out = qz.ste_round(y, 0.3)
    assert torch.equal(out.detach(), torch.round(y.detach()))
    out.sum().backward()
    y2 = y.detach().clone().requires_grad_(True)
    qz.soft_round(y2, 0.3).sum().backward()
    assert torch.allclose(y.grad, y2.grad)


def test_laplace_bits_match_the_cdf_and_sum_to_one():
    mean = torch.tensor(0.3, dtype=torch.float64)
    for b in (0.02, 0.5, 3.0):
        k = torch.arange(-200, 201, dtype=torch.float64)
        bits = qz.laplace_bits(k, mean, torch.tensor(b, dtype=torch.float64), max_bits=1000)
        p = torch.exp2(-bits)
        def cdf(x):
            return torch.where(x < mean, 0.5 * torch.exp((x - mean) / b), 1 - 0.5 * torch.exp(-(x - mean) / b))

        ref = cdf(k + 0.5) - cdf(k - 0.5)
        big = ref > 1e-12
        assert torch.allclose(p[big], ref[big], rtol=1e-9)
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-9)
    # the cap: at most 16 bits by default, and it is finite far in the tail
    far = qz.laplace_bits(torch.tensor([50.0]), torch.tensor([0.0]), torch.tensor([0.01]))
    assert float(far) == 16.0
    tail = qz.laplace_bits(torch.tensor([50.0]), torch.tensor([0.0]), torch.tensor([0.01]), max_bits=1e9)
    assert math.isfinite(float(tail)) and float(tail) > 5000
