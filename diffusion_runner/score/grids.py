"""Time grids for the samplers: T = t_0 > t_1 > ... > t_N = eps, as a float64 tensor of N + 1 times.

A grid only places the times; any solver runs on any grid. `log` and `karras` are defined on the noise level
sigma(t) = s(t) / m(t) (x_t / m = x_0 + sigma z) and mapped back to t through the SDE, so they mean the same
thing for every SDE: with `sde=ve` a `log` grid is NCSN's geometric noise ladder.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.score.sdes import SDE


class Grid(ABC):
    def __call__(self, sde: SDE, steps: int) -> Tensor:
        """N + 1 = steps + 1 decreasing times from sde.T to sde.eps (both exact)."""
        times = self.times(sde, steps)
        times[0], times[-1] = sde.T, sde.eps
        return times

    @abstractmethod
    def times(self, sde: SDE, steps: int) -> Tensor:
        """The grid before its ends are pinned to T and eps."""


class Uniform(Grid):
    """Equal steps in t: t_i = T + (i / N) (eps - T)."""

    def times(self, sde, steps):
        return torch.linspace(sde.T, sde.eps, steps + 1, dtype=torch.float64)


class _SigmaGrid(Grid):
    """A grid of noise levels sigma_0 = sigma(T) > ... > sigma_N = sigma(eps), mapped to times by the SDE."""

    def times(self, sde, steps):
        ends = sde.noise_level(torch.tensor([sde.T, sde.eps], dtype=torch.float64))
        return sde.time_of_noise_level(self.sigmas(float(ends[0]), float(ends[1]), steps))

    @abstractmethod
    def sigmas(self, sigma_max: float, sigma_min: float, steps: int) -> Tensor:
        """steps + 1 decreasing noise levels from sigma_max to sigma_min."""


class Log(_SigmaGrid):
    """Geometric noise levels: sigma_i = sigma_max (sigma_min / sigma_max)^(i / N), equal steps in log sigma."""

    def sigmas(self, sigma_max, sigma_min, steps):
        return torch.logspace(math.log10(sigma_max), math.log10(sigma_min), steps + 1, dtype=torch.float64)


class Karras(_SigmaGrid):
    """EDM's schedule (Karras et al. 2022, eq. 5): equal steps in sigma^(1/rho),
    sigma_i = (sigma_max^(1/rho) + (i / N) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho. rho = 7 puts more steps at
    low noise than `log` does at high noise; rho -> infinity approaches `log`, rho = 1 is uniform in sigma."""

    def __init__(self, rho: float = 7.0):
        if not rho > 0:
            raise ConfigError(f"sampler.grid.rho: must be positive, got {rho}")
        self.rho = float(rho)

    def sigmas(self, sigma_max, sigma_min, steps):
        ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / self.rho), sigma_max ** (1 / self.rho)
        return (hi + ramp * (lo - hi)) ** self.rho
