"""Matchers: the conditional probability paths a flow is regressed on (torchcfm's matcher classes).

A matcher pairs a batch of source points x0 with target points x1 (its coupling), and defines for each pair a path
x_t = mu_t(x0, x1) + sigma_t eps, eps ~ N(0, I), t in [0, 1], with its velocity u_t = d x_t / dt at fixed eps; the
flow v_theta(x, t) is fit to E[u_t | x_t], whose ODE carries the source's law to the target's. `sigma` is in the
model's units (the data's, unless a points file is standardised) and must be positive (a small one keeps the paths
nearly deterministic).

- CFM: mu_t = t x1 + (1 - t) x0, sigma_t = sigma, u_t = x1 - x0, independent pairs (Lipman et al. 2023; Tong et
  al.'s I-CFM);
- ExactOT: CFM with each minibatch paired by the exact OT permutation (OT-CFM);
- SchrodingerBridge: the Brownian bridge of diffusion sigma, sigma_t = sigma sqrt(t (1 - t)),
  u_t = (1 - 2t) / (2 t (1 - t)) (x_t - mu_t) + x1 - x0, pairs from the entropic OT plan of regularisation
  2 sigma^2 ([SF]^2M); it also trains the score of the path for sampling by its SDE;
- VariancePreserving: mu_t = cos(pi t / 2) x0 + sin(pi t / 2) x1, sigma_t = sigma,
  u_t = pi / 2 (cos(pi t / 2) x1 - sin(pi t / 2) x0).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.flow.couplings import entropic_pairs, exact_pairing
from diffusion_runner.shapes import append_dims


class Matcher:
    """The independent coupling and the straight path of constant width (CFM); subclasses override 1-3 methods."""

    learns_score: ClassVar[bool] = False  # trains the path's score too (for sampling by the SDE)

    def __init__(self, sigma: float = 0.01):
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not sigma > 0:
            raise ConfigError(f"matcher.sigma: must be a number > 0, got {sigma!r}")
        self.sigma = float(sigma)

    def couple(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The pairs (x0_i, x1_i) a batch trains on: here the batches as drawn (independent)."""
        return x0, x1

    def coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) with mu_t = a_t x0 + b_t x1, each of t's shape: here (1 - t, t)."""
        return 1 - t, t

    def mean(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """mu_t, for t of shape (batch,)."""
        a, b = (append_dims(c, x0.ndim) for c in self.coefficients(t))
        return a * x0 + b * x1

    def std(self, t: Tensor) -> Tensor:
        """sigma_t, shape (batch,)."""
        return torch.full_like(t, self.sigma)

    def velocity(self, x0: Tensor, x1: Tensor, t: Tensor, xt: Tensor) -> Tensor:
        """u_t(x_t | x0, x1)."""
        return x1 - x0

    def path(self, x0: Tensor, x1: Tensor, t: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """(x_t, u_t) of each pair at its time t with its noise eps."""
        xt = self.mean(x0, x1, t) + append_dims(self.std(t), x0.ndim) * eps
        return xt, self.velocity(x0, x1, t, xt)


class CFM(Matcher):
    """Conditional flow matching with independent pairs."""


class ExactOT(Matcher):
    """CFM on minibatches paired by the exact optimal-transport permutation (squared cost)."""

    def couple(self, x0, x1, generator):
        return x0[exact_pairing(x0, x1)], x1


class SchrodingerBridge(Matcher):
    """The Brownian bridge between entropic-OT pairs: the Schrodinger bridge of a Brownian motion of diffusion sigma,
    sampled by its ODE (the velocity) or its SDE dx = [v + sigma^2 / 2 score] dt + sigma dW (the learned score)."""

    learns_score = True

    def __init__(self, sigma: float = 0.5):
        super().__init__(sigma)

    def couple(self, x0, x1, generator):
        i, j = entropic_pairs(x0, x1, 2 * self.sigma**2, generator)
        return x0[i], x1[j]

    def std(self, t):
        return self.sigma * torch.sqrt(t * (1 - t))

    def velocity(self, x0, x1, t, xt):
        t = append_dims(t, x0.ndim)
        return (1 - 2 * t) / (2 * t * (1 - t)) * (xt - self.mean(x0, x1, t.flatten())) + x1 - x0


class VariancePreserving(Matcher):
    """The trigonometric interpolant between x0 and x1."""

    def coefficients(self, t):
        return torch.cos(math.pi / 2 * t), torch.sin(math.pi / 2 * t)

    def velocity(self, x0, x1, t, xt):
        t = append_dims(t, x0.ndim)
        return math.pi / 2 * (torch.cos(math.pi / 2 * t) * x1 - torch.sin(math.pi / 2 * t) * x0)
