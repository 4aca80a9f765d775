"""SOAP (Vyas et al., arXiv 2409.11321): Adam run in the eigenbasis of a Shampoo preconditioner, for C3's network
weights (Cool-Chic 5 trains its networks with it; latents stay on Adam). Encoder only: nothing here reaches the
stream.

For a weight of shape (d_0, …, d_n) (every d_i ≤ `max_dim`), each axis i keeps L_i = EMA_β2(G_(i) G_(i)ᵀ) of the
gradient's mode-i unfolding and an orthogonal basis Q_i of it. A step rotates the gradient into the basis
(G' = G ×_i Q_iᵀ), runs Adam's second moment there (the first moment is kept in the parameter's own space and
rotated the same way), and rotates the Adam direction back. Every `every` steps Q_i is refreshed by one power
iteration and a QR decomposition (eigenvalue order kept, the second moment permuted with it), from a full
eigendecomposition at the first step. Tensors with fewer than two axes, or in a group with `precondition=False`,
take plain Adam steps. `weight_decay` is decoupled (AdamW-style).

Every per-parameter state entry is a tensor (step, m, v, L0…, Q0…), so step checkpoints save and restore it like
Adam's (nvc_pipe/checkpoint_step.py keeps tensors only).
"""

from __future__ import annotations

import torch


def _rotate(x: torch.Tensor, bases: list[torch.Tensor], back: bool = False) -> torch.Tensor:
    """x ×_i Q_iᵀ over every axis (or ×_i Q_i with `back`)."""
    for axis, q in enumerate(bases):
        x = _mode(x, axis, q if back else q.T)
    return x


def _mode(x: torch.Tensor, axis: int, m: torch.Tensor) -> torch.Tensor:
    """Mode-`axis` product: m applied to that axis of x."""
    return torch.movedim(torch.tensordot(m, torch.movedim(x, axis, 0), dims=([1], [0])), 0, axis)


def _gram(g: torch.Tensor, axis: int) -> torch.Tensor:
    u = torch.movedim(g, axis, 0).reshape(g.shape[axis], -1)
    return u @ u.T


class Soap(torch.optim.Optimizer):
    def __init__(self, groups, lr: float = 1e-2, betas: tuple[float, float] = (0.95, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.0, every: int = 10, max_dim: int = 256, precondition: bool = True):
        super().__init__(groups, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, every=every,
                                      max_dim=max_dim, precondition=precondition))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                st = self.state[p]
                soap = group["precondition"] and p.ndim >= 2 and max(p.shape) <= group["max_dim"]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.int64)
                    st["m"] = torch.zeros_like(p)
                    st["v"] = torch.zeros_like(p)
                    if soap:
                        for i in range(p.ndim):
                            st[f"L{i}"] = (1 - b2) * _gram(g, i)
                            st[f"Q{i}"] = torch.linalg.eigh(st[f"L{i}"].double())[1].flip(1).to(p.dtype)
                t = int(st["step"]) + 1
                st["step"].fill_(t)
                bases = [st[f"Q{i}"] for i in range(p.ndim)] if soap else []
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                if soap:
                    if t > 1:
                        for i in range(p.ndim):
                            st[f"L{i}"].mul_(b2).add_(_gram(g, i), alpha=1 - b2)
                    gr, mr = _rotate(g, bases), _rotate(st["m"], bases)
                else:
                    gr, mr = g, st["m"]
                st["v"].mul_(b2).addcmul_(gr, gr, value=1 - b2)
                direction = mr / (st["v"] / (1 - b2**t)).sqrt().add_(group["eps"]) / (1 - b1**t)
                if soap:
                    direction = _rotate(direction, bases, back=True)
                if group["weight_decay"]:
                    p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(direction, alpha=-group["lr"])
                if soap and t % group["every"] == 0:
                    self._refresh(st, p.ndim)
        return None

    @staticmethod
    def _refresh(st: dict, ndim: int) -> None:
        """One power iteration + QR per axis; Q's columns kept in decreasing eigenvalue order, v permuted along."""
        v = st["v"]
        for i in range(ndim):
            L, q = st[f"L{i}"], st[f"Q{i}"]
            order = torch.argsort(torch.diagonal(q.T @ L @ q), descending=True)
            q = q[:, order]
            v = v.index_select(i, order)
            st[f"Q{i}"] = torch.linalg.qr(L @ q)[0]
        st["v"] = v
