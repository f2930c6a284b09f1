"""Samplers: integrate the reverse-time SDE from the prior at T down to eps."""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.sdes import SDE, ScoreFn, append_dims


class EulerMaruyama:
    """Euler-Maruyama on a uniform grid T = t_0 > ... > t_N = eps, h = t_i - t_{i+1}:

        x <- x - [f(x, t) - g(t)^2 s(x, t)] h + g(t) sqrt(h) z.

    With `denoise` the last step adds no noise (it returns the step's mean), as in score_sde.
    Keeps `snapshots` states evenly spaced over the trajectory, the prior and the result included.
    """

    def __init__(self, steps: int = 1000, snapshots: int = 6, denoise: bool = True):
        if not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"sampler.steps: must be an integer >= 1, got {steps!r}")
        if not isinstance(snapshots, int) or not 2 <= snapshots <= steps + 1:
            raise ConfigError(f"sampler.snapshots: must be an integer from 2 (prior and result) to steps + 1, "
                              f"got {snapshots!r}")
        self.steps, self.snapshots, self.denoise = int(steps), int(snapshots), bool(denoise)

    @torch.inference_mode()
    def sample(self, score_fn: ScoreFn, sde: SDE, shape: tuple[int, ...], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> tuple[Tensor, list[tuple[float, Tensor]], int]:
        """Returns (x at eps, [(t, x_t), ...] snapshots, number of score evaluations)."""
        times = torch.linspace(sde.T, sde.eps, self.steps + 1, dtype=torch.float64).tolist()
        keep = {round(i * self.steps / (self.snapshots - 1)) for i in range(self.snapshots)}
        x = sde.prior_sample(shape, generator, device)
        snaps = [(times[0], x.clone())]
        for i in range(self.steps):
            t, h = times[i], times[i] - times[i + 1]
            tt = torch.full((shape[0],), t, device=device)
            x = x - sde.reverse_drift(x, tt, score_fn(x, tt)) * h
            if not (self.denoise and i == self.steps - 1):
                g = append_dims(sde.diffusion(tt), x.ndim)
                x = x + g * h**0.5 * torch.randn(shape, generator=generator, device=device)
            if i + 1 in keep:
                snaps.append((times[i + 1], x.clone()))
        return x, snaps, self.steps
