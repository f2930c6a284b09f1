"""Training objectives."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.models.base import ScoreModel
from diffusion_runner.sdes import SDE, append_dims
from diffusion_runner.weighting import Weighting

T_SAMPLING = ("uniform", "importance")


class DSM:
    """Denoising score matching with x_t = m(t) x_0 + s(t) z, z ~ N(0, I):

        L = E_{t ~ U[eps, T]}[ w(t) || s(t) s_theta(x_t, t) + z ||^2 ] / Z,   w = lambda / s^2,   Z = E_t[w],

    i.e. E[lambda(t) || s_theta + z / s(t) ||^2] / Z, the squared norm summed over data dimensions. Z (by the
    trapezoid rule on a geometric grid of t, fine near eps where w can grow like 1/t) puts every weighting in
    the units of the noise-prediction error, so losses and learning rates compare; it does not change the
    minimiser.

    t_sampling="uniform" draws t ~ U[eps, T] and weights each term by w(t) / Z. t_sampling="importance" draws
    t with density w(t) / (Z (T - eps)) and weights every term by 1: the same loss and gradient in expectation,
    without the heavy-tailed weights of e.g. lambda = 1 near t = eps. Its inverse CDF is tabulated once at
    `quantiles` equally spaced levels and interpolated linearly.
    """

    def __init__(self, sde: SDE, weighting: Weighting, t_sampling: str = "uniform", grid_points: int = 10_001,
                 quantiles: int = 4097):
        if t_sampling not in T_SAMPLING:
            raise ConfigError(f"loss.t_sampling: '{t_sampling}' is not one of {list(T_SAMPLING)}")
        self.sde, self.weighting, self.importance = sde, weighting, t_sampling == "importance"
        grid = torch.logspace(math.log10(sde.eps), math.log10(sde.T), grid_points, dtype=torch.float64)
        w = weighting(sde, grid) / sde.marginal(grid)[1] ** 2
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((w[1:] + w[:-1]) / 2 * grid.diff(), 0)])
        self.normaliser = float(cdf[-1]) / (sde.T - sde.eps)
        levels = torch.linspace(0, 1, quantiles, dtype=torch.float64)
        inverse_cdf = np.interp(levels.numpy(), (cdf / cdf[-1]).numpy(), grid.numpy())
        self._inverse_cdf = torch.as_tensor(inverse_cdf, dtype=torch.float32)

    def sample_t(self, b: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        u = torch.rand(b, generator=generator, device=device)
        if not self.importance:
            return self.sde.eps + (self.sde.T - self.sde.eps) * u
        if self._inverse_cdf.device != device:
            self._inverse_cdf = self._inverse_cdf.to(device)
        pos = u * (len(self._inverse_cdf) - 1)
        i = pos.long().clamp_(max=len(self._inverse_cdf) - 2)
        return torch.lerp(self._inverse_cdf[i], self._inverse_cdf[i + 1], pos - i)

    def __call__(self, model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None) -> Tensor:
        t = self.sample_t(x0.shape[0], generator, x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device)
        m, s = (append_dims(c, x0.ndim) for c in self.sde.marginal(t))
        err = (s * model.score(m * x0 + s * z, t) + z).pow(2).flatten(1).sum(1)
        if self.importance:
            return err.mean()
        w = self.weighting(self.sde, t) / s.flatten() ** 2
        return (w * err).mean() / self.normaliser
