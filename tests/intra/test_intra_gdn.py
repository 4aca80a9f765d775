"""GDN/IGDN: the reparameterisation keeps β ≥ 1e-6 and γ ≥ 0; IGDN inverts GDN near the initialisation."""

import torch

from nvc_pipe.intra.gdn import BETA_MIN, GDN, IGDN


def test_positivity_survives_negative_updates():
    torch.manual_seed(0)
    gdn = GDN(8)
    opt = torch.optim.SGD(gdn.parameters(), lr=10.0)
    for _ in range(3):
        beta, gamma = gdn.effective()
        opt.zero_grad()
        (beta.sum() + gamma.sum()).backward()  # gradients push both towards -inf
        opt.step()
    beta, gamma = gdn.effective()
    assert (gdn.beta < 0).all()  # the raw parameters did go negative...
    assert (beta >= BETA_MIN * (1 - 1e-6)).all() and (gamma >= 0).all()  # ...the effective values did not
    x = torch.randn(2, 8, 5, 5)
    assert torch.isfinite(gdn(x)).all()


def test_bound_lets_parameters_recover():
    gdn = GDN(4)
    with torch.no_grad():
        gdn.beta.fill_(-1.0)
    beta, _ = gdn.effective()
    (-beta.sum()).backward()  # a gradient that raises β must reach the raw parameter
    assert (gdn.beta.grad < 0).all()


def test_igdn_inverts_gdn_at_init():
    torch.manual_seed(0)
    x = 0.1 * torch.randn(2, 16, 8, 8)
    y = IGDN(16)(GDN(16)(x))
    assert torch.allclose(y, x, atol=2e-4, rtol=0)
    assert not torch.allclose(GDN(16)(x), x, atol=1e-6)  # GDN itself is not the identity
