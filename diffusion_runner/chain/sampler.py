"""Ancestral sampling of the reverse chain, on all T steps or a subsequence of them."""

from __future__ import annotations

import numpy as np
import torch

from diffusion_runner.errors import ConfigError
from diffusion_runner.sampling import Sampler, SampleResult


def respaced(T: int, steps: int | None) -> list[int]:
    """The steps visited, T first: all of them, or `steps` of them evenly spaced over 1 .. T."""
    if steps is None or steps >= T:
        return list(range(T, 0, -1))
    return sorted({int(t) for t in np.round(np.linspace(1, T, steps))}, reverse=True)


class Ancestral(Sampler):
    """x_T ~ N(0, I); for each visited step t with the next one s < t (s = 0 at the end):
    x_s ~ q(x_s | x_t, x_0 = x0_hat) = N(c1 x0_hat + c2 x_t, sigma^2 I) with the coefficients of the jump t -> s,
    beta' = 1 - abar_t / abar_s, c1 = beta' sqrt(abar_s) / (1 - abar_t), c2 = sqrt(1 - beta') (1 - abar_s) /
    (1 - abar_t), and sigma^2 = btilde' = beta' (1 - abar_s) / (1 - abar_t) (variance small), beta' (large), or
    the learned interpolation between them. With all T steps this is DDPM's algorithm 2; `steps` < T skips steps
    (the respaced chain of Nichol & Dhariwal). The last step returns its mean, with no noise."""

    def __init__(self, steps: int | None = None, **request):
        super().__init__(**request)
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
            raise ConfigError(f"sampler.steps: must be an integer >= 1, or null for all T steps, got {steps!r}")
        self.steps = steps

    @torch.inference_mode()
    def generate(self, model, shape, labels, generator, device, callback=None):
        abar = model.schedule.abar
        times = respaced(model.T, self.steps)
        x = torch.randn(shape, generator=generator, device=device)
        if callback is not None:
            callback({"i": 0, "n": len(times), "t": times[0], "x": x})
        for i, t in enumerate(times):
            s = times[i + 1] if i + 1 < len(times) else 0
            tt = torch.full((shape[0],), t, device=device)
            x0, v = model(x, tt)
            beta = 1 - abar[t] / abar[s]
            c1, c2 = beta * abar[s].sqrt() / (1 - abar[t]), (1 - beta).sqrt() * (1 - abar[s]) / (1 - abar[t])
            mean = float(c1) * x0 + float(c2) * x
            if s > 0:
                log_small, log_large = torch.log(beta * (1 - abar[s]) / (1 - abar[t])), torch.log(beta)
                if v is None:
                    logvar = torch.full_like(x, float(log_small if model.variance == "small" else log_large))
                else:
                    frac = (v + 1) / 2
                    logvar = frac * float(log_large) + (1 - frac) * float(log_small)
                x = mean + torch.exp(0.5 * logvar) * torch.randn(shape, generator=generator, device=device)
            else:
                x = mean
            if callback is not None:
                callback({"i": i + 1, "n": len(times), "t": s, "x": x})
        return SampleResult(x, len(times))
