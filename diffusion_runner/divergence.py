"""The divergence div_x v = sum_i dv_i / dx_i of a field v computed from x with autograd on.

`create_graph=True` keeps the result differentiable (a training loss); the likelihood only needs its value.
"""

from __future__ import annotations

import torch
from torch import Tensor

PROBES = ("rademacher", "gaussian")


def exact(v: Tensor, x: Tensor, create_graph: bool = False) -> Tensor:
    """div_x v per sample, shape (batch,), by one backward pass per coordinate."""
    flat = v.flatten(1)
    total = torch.zeros(x.shape[0], dtype=v.dtype, device=v.device)
    for i in range(flat.shape[1]):
        (grad,) = torch.autograd.grad(flat[:, i].sum(), x, retain_graph=True, create_graph=create_graph)
        total = total + grad.flatten(1)[:, i]
    return total


def hutchinson(v: Tensor, x: Tensor, probe: Tensor, create_graph: bool = False) -> Tensor:
    """e^T (dv/dx) e per sample, an unbiased estimate of div_x v when E[e e^T] = I: one backward pass."""
    (grad,) = torch.autograd.grad((v * probe).sum(), x, retain_graph=create_graph, create_graph=create_graph)
    return (grad * probe).flatten(1).sum(1)


def probe_like(x: Tensor, kind: str, generator: torch.Generator | None = None) -> Tensor:
    """Probe vectors with E[e e^T] = I: `rademacher` (+-1) or `gaussian` N(0, I)."""
    e = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return e.sign() if kind == "rademacher" else e
