"""Linear forward SDEs dx = f(x, t) dt + g(t) dw on t in [0, T].

Every SDE here has a Gaussian transition x_t | x_0 ~ N(m(t) x_0, s(t)^2 I), so a subclass gives
the drift f, the diffusion g and the closed-form marginal (m, s); the reverse-time drift, the
probability-flow drift, the transition between two times, the noise level sigma(t) = s(t) / m(t)
and the prior N(0, s(T)^2 I) follow in the base class. Times are tensors of shape (batch,);
coefficients broadcast over any trailing data dimensions.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.shapes import append_dims

ScoreFn = Callable[[Tensor, Tensor], Tensor]


class SDE(ABC):
    """Forward SDE on [0, T]; sampling stops at the smallest time `eps`."""

    def __init__(self, T: float, eps: float):
        if not 0 < eps < T:
            raise ConfigError(f"sde: need 0 < eps < T, got eps={eps}, T={T}")
        self.T = float(T)
        self.eps = float(eps)

    @abstractmethod
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t)."""

    @abstractmethod
    def diffusion(self, t: Tensor) -> Tensor:
        """g(t), shape (batch,)."""

    @abstractmethod
    def marginal(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(m(t), s(t)) with x_t = m(t) x_0 + s(t) z, each of shape (batch,)."""

    def prior_std(self) -> float:
        """Standard deviation of the prior N(0, s(T)^2 I)."""
        return float(self.marginal(torch.tensor([self.T], dtype=torch.float64))[1])

    def prior_sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
        return self.prior_std() * torch.randn(shape, generator=generator, device=device)

    def prior_logp(self, x: Tensor) -> Tensor:
        """log N(x; 0, s(T)^2 I) summed over all but the batch dimension, in nats."""
        var = self.prior_std() ** 2
        d = x[0].numel()
        return -0.5 * (x.flatten(1).pow(2).sum(1) / var + d * math.log(2 * math.pi * var))

    def reverse_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """Drift of the reverse-time SDE, f - g^2 score, in forward-time units (integrate with dt < 0)."""
        return self.drift(x, t) - append_dims(self.diffusion(t) ** 2, x.ndim) * score

    def probability_flow_drift(self, x: Tensor, t: Tensor, score: Tensor) -> Tensor:
        """dx/dt = f - g^2 score / 2: the ODE whose marginals are the SDE's (Song et al. 2021, eq. 13)."""
        return self.drift(x, t) - 0.5 * append_dims(self.diffusion(t) ** 2, x.ndim) * score

    def coefficients(self, t: float) -> tuple[float, float]:
        """(m(t), s(t)) at one time, in float64."""
        m, s = self.marginal(torch.tensor([t], dtype=torch.float64))
        return float(m), float(s)

    def transition(self, t_from: float, t_to: float) -> tuple[float, float]:
        """(a, v) with x_to | x_from ~ N(a x_from, v I) for t_from < t_to: a = m_to / m_from,
        v = s_to^2 - a^2 s_from^2 (the SDE's exact discretisation between the two times)."""
        m0, s0 = self.coefficients(t_from)
        m1, s1 = self.coefficients(t_to)
        a = m1 / m0
        return a, s1**2 - (a * s0) ** 2

    def noise_level(self, t: Tensor) -> Tensor:
        """Noise level sigma(t) = s(t) / m(t), so that x_t / m(t) = x_0 + sigma(t) z; it increases from 0 at t = 0."""
        m, s = self.marginal(t)
        return s / m

    def time_of_noise_level(self, sigma: Tensor, iterations: int = 64) -> Tensor:
        """The time t in [0, T] with sigma(t) = sigma (clamped to [0, T]), by bisection in float64."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        lo, hi = torch.zeros_like(sigma), torch.full_like(sigma, self.T)
        for _ in range(iterations):  # 2^-64 of T: float64 precision
            mid = (lo + hi) / 2
            below = self.noise_level(mid) < sigma
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        return (lo + hi) / 2

    def log_noise_clock(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(t, dt/du) at u = log sigma(t), float64: the clock on which the probability-flow ODE is smooth enough for
        fixed steps (diffusion_runner.ode.rk4)."""
        t = self.time_of_noise_level(torch.exp(torch.as_tensor(u, dtype=torch.float64))).requires_grad_(True)
        with torch.enable_grad():
            (du_dt,) = torch.autograd.grad(torch.log(self.noise_level(t)).sum(), t)
        return t.detach(), 1 / du_dt


class OU(SDE):
    """Ornstein-Uhlenbeck: dx = -theta x dt + sigma dw.

    m(t) = exp(-theta t), s(t)^2 = sigma^2 (1 - exp(-2 theta t)) / (2 theta).
    """

    def __init__(self, theta: float = 1.0, sigma: float = math.sqrt(2.0), T: float = 5.0, eps: float = 1e-4):
        super().__init__(T, eps)
        if theta <= 0 or sigma <= 0:
            raise ConfigError(f"sde: theta and sigma must be positive, got theta={theta}, sigma={sigma}")
        self.theta, self.sigma = float(theta), float(sigma)

    def drift(self, x, t):
        return -self.theta * x

    def diffusion(self, t):
        return torch.full_like(t, self.sigma)

    def marginal(self, t):
        m = torch.exp(-self.theta * t)
        s = self.sigma * torch.sqrt(-torch.expm1(-2 * self.theta * t) / (2 * self.theta))
        return m, s


class VP(SDE):
    """Variance preserving (DDPM): dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw, beta linear in t.

    With B(t) = int_0^t beta: m(t) = exp(-B/2), s(t)^2 = 1 - exp(-B).
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, T: float = 1.0, eps: float = 1e-3):
        super().__init__(T, eps)
        if not 0 < beta_min <= beta_max:
            raise ConfigError(f"sde: need 0 < beta_min <= beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_min + (self.beta_max - self.beta_min) * t / self.T

    def integrated_beta(self, t: Tensor) -> Tensor:
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2 / self.T

    def drift(self, x, t):
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

    def diffusion(self, t):
        return torch.sqrt(self.beta(t))

    def marginal(self, t):
        b = self.integrated_beta(t)
        return torch.exp(-0.5 * b), torch.sqrt(-torch.expm1(-b))


class SubVP(VP):
    """Sub-VP: the VP drift with g(t)^2 = beta(t) (1 - exp(-2 B(t))); s(t) = 1 - exp(-B)."""

    def diffusion(self, t):
        return torch.sqrt(self.beta(t) * -torch.expm1(-2 * self.integrated_beta(t)))

    def marginal(self, t):
        b = self.integrated_beta(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)


class VE(SDE):
    """Variance exploding: dx = sqrt(d sigma(t)^2 / dt) dw, sigma(t) = sigma_min (sigma_max/sigma_min)^(t/T).

    m(t) = 1, s(t)^2 = sigma(t)^2 - sigma_min^2 (exact for x_0 taken at t = 0).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 10.0, T: float = 1.0, eps: float = 1e-5):
        super().__init__(T, eps)
        if not 0 < sigma_min < sigma_max:
            raise ConfigError(f"sde: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self._log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t: Tensor) -> Tensor:
        return self.sigma_min * torch.exp(self._log_ratio * t / self.T)

    def drift(self, x, t):
        return torch.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * math.sqrt(2 * self._log_ratio / self.T)

    def marginal(self, t):
        s = self.sigma_min * torch.sqrt(torch.expm1(2 * self._log_ratio * t / self.T))
        return torch.ones_like(t), s
