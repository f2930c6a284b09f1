"""The chain's training objectives: L_simple, the ELBO, and their hybrid (Ho et al. 2020; Nichol & Dhariwal 2021)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusion_runner.chain.model import ReverseChain
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Loss

OBJECTIVES = ("simple", "elbo", "hybrid")
LOG_2PI = math.log(2 * math.pi)


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1 I) || N(mean2, e^logvar2 I)) per point (summed over all but the batch), in nats."""
    kl = 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))
    return kl.flatten(1).sum(1)


def gaussian_nll(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """-log N(x; mean, e^logvar I) per point, a continuous density, in nats."""
    return (0.5 * ((x - mean) ** 2 * torch.exp(-logvar) + logvar + LOG_2PI)).flatten(1).sum(1)


def _log_difference(log_a: Tensor, log_b: Tensor) -> Tensor:
    """log(e^log_a - e^log_b) for log_a > log_b, without cancelling."""
    return log_a + torch.log(-torch.expm1(log_b - log_a).clamp(max=-1e-30))


def discretized_gaussian_nll(x: Tensor, mean: Tensor, logvar: Tensor, width: float) -> Tensor:
    """-log P(x) per point for values x on a grid of spacing `width` in [-1, 1]: each coordinate's probability is
    the mass N(mean, e^logvar) puts on its bin [x - width/2, x + width/2], the edge bins reaching to -inf and +inf
    (Ho et al. 2020, sec. 3.3), in nats. A bin right of the mean is measured by the upper tail, so neither side
    cancels."""
    std = torch.exp(0.5 * logvar)
    upper, lower = (x + width / 2 - mean) / std, (x - width / 2 - mean) / std
    log_ndtr = torch.special.log_ndtr
    inner = torch.where(lower > 0, _log_difference(log_ndtr(-lower), log_ndtr(-upper)),
                        _log_difference(log_ndtr(upper), log_ndtr(lower)))
    log_p = torch.where(x < -1 + width / 2, log_ndtr(upper), torch.where(x > 1 - width / 2, log_ndtr(-lower), inner))
    return -log_p.flatten(1).sum(1)


def decoder_nll(model: ReverseChain, x0: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """-log p_theta(x_0 | x_1) per point: a continuous Gaussian density, or for quantised data (model.bin_width)
    the discretised one, a probability of the grid values."""
    logvar = logvar.expand_as(x0)
    if model.bin_width is not None:
        return discretized_gaussian_nll(x0, mean, logvar, model.bin_width)
    return gaussian_nll(x0, mean, logvar)


def denoising_term(model: ReverseChain, x0: Tensor, xt: Tensor, t: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """L_{t-1} per point: KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) for t >= 2, and the reconstruction
    term -log p_theta(x_0 | x_1) for t = 1 (decoder_nll)."""
    true_logvar = model.coefficient("log_small", t, x0.ndim).expand_as(x0)  # log btilde_t for t >= 2
    kl = normal_kl(model.posterior_mean(xt, t, x0), true_logvar, mean, logvar.expand_as(x0))
    return torch.where(t == 1, decoder_nll(model, x0, mean, logvar), kl)


class ChainLoss(Loss):
    """On t ~ U{1, ..., T} and x_t ~ q(x_t | x_0) per point:
    - `simple`: L_simple = |F - target|^2 (summed over dimensions), target eps or x_0 by the parameterisation;
    - `elbo`: T L_{t-1}, an unbiased estimate of the ELBO's reconstruction and denoising terms (the prior term has
      no parameters);
    - `hybrid`: L_simple + `vlb_weight` T L_{t-1} with the mean's gradient stopped in L_{t-1}, so that it trains
      only a learned variance (Nichol & Dhariwal's L_hybrid, lambda = 0.001)."""

    def __init__(self, objective: str = "simple", vlb_weight: float = 0.001):
        if objective not in OBJECTIVES:
            raise ConfigError(f"loss.objective: '{objective}' is not one of {list(OBJECTIVES)}")
        if isinstance(vlb_weight, bool) or not isinstance(vlb_weight, int | float) or not vlb_weight > 0:
            raise ConfigError(f"loss.vlb_weight: must be a number > 0, got {vlb_weight!r}")
        self.objective, self.vlb_weight = objective, float(vlb_weight)

    def __call__(self, model: ReverseChain, x0: Tensor, generator: torch.Generator | None = None,
                 y: Tensor | None = None) -> Tensor:
        t = torch.randint(1, model.T + 1, (x0.shape[0],), generator=generator, device=x0.device)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device)
        xt = model.noisy(x0, t, eps)
        x0_hat, v = model(xt, t)
        loss = 0.0
        if self.objective != "elbo":
            pred, target = (model.predict_eps(xt, t, x0_hat), eps) if model.parameterization == "eps" \
                else (x0_hat, x0)
            loss = (pred - target).pow(2).flatten(1).sum(1)
        if self.objective != "simple":
            if self.objective == "hybrid" and v is None:
                raise ConfigError("loss.objective: hybrid trains a learned variance; set model.variance=learned "
                                  "(or use loss.objective=simple)")
            mean_x0 = x0_hat.detach() if self.objective == "hybrid" else x0_hat
            mean = model.posterior_mean(xt, t, mean_x0)
            logvar = model.log_variance(t, v, x0.ndim)
            weight = model.T * (self.vlb_weight if self.objective == "hybrid" else 1.0)
            loss = loss + weight * denoising_term(model, x0, xt, t, mean, logvar)
        return loss.mean()
