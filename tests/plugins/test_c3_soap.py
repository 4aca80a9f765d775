"""SOAP (plugins/nvc_c3/soap.py): Adam where it does not precondition, an orthogonal basis that tracks the
gradient statistics, and faster progress than Adam on an ill-conditioned matrix problem."""

import sys, pathlib; sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "plugins"))  # noqa: E401,E702

import torch

from nvc_c3.soap import Soap


def _problem(seed=0):
    """min ‖W A − B‖² with A's rows scaled over 1.5 decades along a random rotation (ill-conditioned off the axes,
    where Adam's diagonal scaling cannot help)."""
    g = torch.Generator().manual_seed(seed)
    rot = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))[0]
    a = rot @ (torch.randn(8, 64, generator=g, dtype=torch.float64)
               * torch.logspace(0, 1.5, 8, dtype=torch.float64)[:, None])
    b = torch.randn(6, 8, generator=g, dtype=torch.float64) @ a
    return a, b


def _train(make_opt, steps):
    a, b = _problem()
    w = torch.nn.Parameter(torch.zeros(6, 8, dtype=torch.float64))
    bias = torch.nn.Parameter(torch.zeros(6, dtype=torch.float64))
    opt = make_opt([w, bias])
    for _ in range(steps):
        loss = ((w @ a + bias[:, None] - b) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float(((w @ a + bias[:, None] - b) ** 2).mean()), opt, w


def test_without_preconditioning_it_is_adam():
    soap_loss, _, w_soap = _train(lambda p: Soap(p, lr=1e-2, betas=(0.9, 0.999), precondition=False), 50)
    adam_loss, _, w_adam = _train(lambda p: torch.optim.Adam(p, lr=1e-2), 50)
    assert torch.allclose(w_soap, w_adam, rtol=1e-9, atol=1e-12) and abs(soap_loss - adam_loss) < 1e-9 * adam_loss


def test_basis_stays_orthogonal_and_beats_adam_on_an_ill_conditioned_problem():
    soap_loss, opt, w = _train(lambda p: Soap(p, lr=1e-2, every=5), 400)
    adam_loss, _, _ = _train(lambda p: torch.optim.Adam(p, lr=1e-2), 400)  # what trained C3's networks before
    for q in (opt.state[w][f"Q{i}"] for i in range(w.ndim)):
        assert torch.allclose(q.T @ q, torch.eye(q.shape[0], dtype=q.dtype), atol=1e-8)
    assert "Q0" not in opt.state[opt.param_groups[0]["params"][1]]  # a bias: plain Adam
    assert all(isinstance(v, torch.Tensor) for v in opt.state[w].values())  # step checkpoints keep tensors only
    assert soap_loss < 0.01 * adam_loss, (soap_loss, adam_loss)  # measured: 0.0067 against 15.5
