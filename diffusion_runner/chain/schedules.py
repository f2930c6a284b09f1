"""Noise schedules of the discrete-time chain q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), t = 1 .. T.

With alpha_t = 1 - beta_t and abar_t = prod_{s <= t} alpha_s (abar_0 = 1):
    q(x_t | x_0)            = N(sqrt(abar_t) x_0, (1 - abar_t) I)
    q(x_{t-1} | x_t, x_0)   = N(c1_t x_0 + c2_t x_t, btilde_t I),
        c1_t = beta_t sqrt(abar_{t-1}) / (1 - abar_t),  c2_t = sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t),
        btilde_t = beta_t (1 - abar_{t-1}) / (1 - abar_t)   (Ho et al. 2020, eq. 7; the VDM notes, eq. 84).
Arrays are float64 of length T + 1, indexed by t (entry 0 is abar_0 = 1, beta_0 = 0).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError


def _steps(T) -> int:
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ConfigError(f"model.schedule.T: must be an integer >= 1, got {T!r}")
    return T


class Schedule(ABC):
    """A schedule of T steps; subclasses give beta_1 .. beta_T."""

    def __init__(self, T: int):
        self.T = _steps(T)
        betas = self.betas()
        if betas.shape != (self.T,) or not bool(((betas > 0) & (betas < 1)).all()):
            raise ConfigError(f"model.schedule: every beta_t must be in (0, 1); got {betas.min():.3g} .. "
                              f"{betas.max():.3g}")
        self.beta = torch.cat([torch.zeros(1, dtype=torch.float64), betas])
        self.alpha = 1 - self.beta
        self.abar = torch.cumprod(self.alpha, 0)

    @abstractmethod
    def betas(self) -> Tensor:
        """beta_1 .. beta_T, float64 of shape (T,)."""

    def posterior(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(c1_t, c2_t, btilde_t) for integer steps t >= 1 (a tensor of them)."""
        beta, abar, prev = self.beta[t], self.abar[t], self.abar[t - 1]
        return beta * prev.sqrt() / (1 - abar), self.alpha[t].sqrt() * (1 - prev) / (1 - abar), \
            beta * (1 - prev) / (1 - abar)


class ConstantAlpha(Schedule):
    """The VDM notes' chain: one alpha for every step, so abar_t = alpha^t."""

    def __init__(self, alpha: float = 0.99, T: int = 1000):
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
            raise ConfigError(f"model.schedule.alpha: must be a number in (0, 1), got {alpha!r}")
        self.alpha_value = float(alpha)
        super().__init__(T)

    def betas(self):
        return torch.full((self.T,), 1 - self.alpha_value, dtype=torch.float64)


class LinearBeta(Schedule):
    """DDPM's schedule: beta_t linear from beta_start (t = 1) to beta_end (t = T)."""

    def __init__(self, beta_start: float = 1e-4, beta_end: float = 0.02, T: int = 1000):
        for key, value in (("beta_start", beta_start), ("beta_end", beta_end)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
                raise ConfigError(f"model.schedule.{key}: must be a number in (0, 1), got {value!r}")
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        super().__init__(T)

    def betas(self):
        if self.T == 1:
            return torch.tensor([self.beta_start], dtype=torch.float64)
        return torch.linspace(self.beta_start, self.beta_end, self.T, dtype=torch.float64)


class Cosine(Schedule):
    """Nichol & Dhariwal (2021): abar_t = f(t) / f(0), f(t) = cos^2(pi/2 (t/T + s) / (1 + s)), with
    beta_t = 1 - abar_t / abar_{t-1} clipped to max_beta."""

    def __init__(self, T: int = 1000, s: float = 0.008, max_beta: float = 0.999):
        if isinstance(s, bool) or not isinstance(s, int | float) or s < 0:
            raise ConfigError(f"model.schedule.s: must be a number >= 0, got {s!r}")
        if isinstance(max_beta, bool) or not isinstance(max_beta, int | float) or not 0 < max_beta < 1:
            raise ConfigError(f"model.schedule.max_beta: must be a number in (0, 1), got {max_beta!r}")
        self.s, self.max_beta = float(s), float(max_beta)
        super().__init__(T)

    def betas(self):
        t = torch.arange(self.T + 1, dtype=torch.float64) / _steps(self.T)
        f = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        return (1 - f[1:] / f[:-1]).clamp(max=self.max_beta)
