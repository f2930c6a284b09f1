"""The VAE's training objective: the negative ELBO with the categorical latent relaxed by the Gumbel-softmax trick
(Jang et al. 2017; Maddison et al. 2017)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Loss
from diffusion_runner.vae.model import GumbelVAE, gaussian_log_prob


def temperature(step: int, tau: float, tau_min: float, anneal_rate: float) -> float:
    """The annealed temperature tau(step) = max(tau_min, tau exp(-anneal_rate step))."""
    return max(tau_min, tau * math.exp(-anneal_rate * step))


class NegativeELBO(Loss):
    """L = E_x[-log p(x | k~, u) + KL(q(k | x) || p(k)) + KL(q(u | x) || N(0, I))] in nats per point, with
    k~ = gumbel_softmax(logits, tau): a relaxed one-hot (or, with `straight_through`, the exact one-hot forward
    and the relaxed gradient backward) and u = mu + sigma eps; both KLs in closed form. The temperature anneals
    with the optimiser steps taken, tau(step) = max(tau_min, tau exp(-anneal_rate step)); anneal_rate 0 keeps it.
    `kl_warmup` > 0 weights the KLs by min(1, step / kl_warmup) (a KL warm-up: with the full KL from step 0 the
    encoder's q(k | x) stays near the uniform prior and the decoder learns to ignore k, posterior collapse); the
    objective is the negative ELBO from then on."""

    def __init__(self, tau: float = 1.0, tau_min: float = 0.1, anneal_rate: float = 0.0,
                 straight_through: bool = False, kl_warmup: int = 0):
        for key, value in (("tau", tau), ("tau_min", tau_min)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ConfigError(f"loss.{key}: must be a number > 0, got {value!r}")
        if tau_min > tau:
            raise ConfigError(f"loss.tau_min: must be <= loss.tau ({tau}), got {tau_min}")
        if isinstance(anneal_rate, bool) or not isinstance(anneal_rate, int | float) or anneal_rate < 0:
            raise ConfigError(f"loss.anneal_rate: must be a number >= 0, got {anneal_rate!r}")
        if not isinstance(straight_through, bool):
            raise ConfigError(f"loss.straight_through: must be true or false, got {straight_through!r}")
        if isinstance(kl_warmup, bool) or not isinstance(kl_warmup, int) or kl_warmup < 0:
            raise ConfigError(f"loss.kl_warmup: must be an integer >= 0 (steps; 0 = off), got {kl_warmup!r}")
        self.tau, self.tau_min, self.anneal_rate = float(tau), float(tau_min), float(anneal_rate)
        self.kl_warmup = kl_warmup
        self.straight_through, self.step = straight_through, 0

    def set_step(self, step: int) -> None:
        self.step = step

    def __call__(self, model: GumbelVAE, x0: Tensor, generator: torch.Generator | None = None,
                 y: Tensor | None = None) -> Tensor:
        logits, mu, log_sigma = model.encode(x0)
        tau = temperature(self.step, self.tau, self.tau_min, self.anneal_rate)
        k = F.gumbel_softmax(logits, tau=tau, hard=self.straight_through)
        u = mu + torch.exp(log_sigma) * torch.randn(mu.shape, generator=generator, device=x0.device)
        mean, log_std = model.decode(k, u if model.continuous_dim else None)
        log_q = F.log_softmax(logits, dim=-1)
        kl_k = (log_q.exp() * (log_q - model.log_prior)).sum(-1)
        kl_u = 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1 - 2 * log_sigma).sum(-1)
        weight = min(1.0, self.step / self.kl_warmup) if self.kl_warmup else 1.0
        return (weight * (kl_k + kl_u) - gaussian_log_prob(x0, mean, log_std)).mean()
