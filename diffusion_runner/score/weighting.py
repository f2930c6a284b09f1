"""Loss weightings lambda(t) for score matching over t ~ U[eps, T]; each gets the times t and the marginal std s(t)
that the loss has already computed."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from diffusion_runner.score.sdes import SDE


class Weighting(ABC):
    @abstractmethod
    def __call__(self, sde: SDE, t: Tensor, s: Tensor) -> Tensor:
        """lambda(t), shape (batch,), given s = s(t)."""


class Uniform(Weighting):
    """lambda(t) = 1."""

    def __call__(self, sde, t, s):
        return torch.ones_like(t)


class InverseVariance(Weighting):
    """lambda(t) = s(t)^2 = 1 / E||grad log p(x_t | x_0)||^2 per dimension (Ho et al.)."""

    def __call__(self, sde, t, s):
        return s**2


class Likelihood(Weighting):
    """lambda(t) = g(t)^2, which makes the loss bound the negative log-likelihood (Song et al. 2021)."""

    def __call__(self, sde, t, s):
        return sde.diffusion(t) ** 2
