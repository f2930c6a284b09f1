"""The chain's ELBO on fresh data, its three terms apart (the VDM notes, eq. 58; Ho et al. 2020, eq. 5)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from diffusion_runner.chain.model import ReverseChain
from diffusion_runner.chain.objective import decoder_nll, denoising_term, gaussian_nll, normal_kl
from diffusion_runner.likelihood import Likelihood


def _noisy(model: ReverseChain, x0: Tensor, t: int, generator: torch.Generator) -> Tensor:
    """x_t ~ q(x_t | x_0)."""
    eps = torch.randn(x0.shape, generator=generator, device=x0.device)
    return model.noisy(x0, torch.full((len(x0),), t, device=x0.device), eps)


def prior_term(model: ReverseChain, x0: Tensor) -> Tensor:
    """KL(q(x_T | x_0) || N(0, I)) per point."""
    abar = float(model.schedule.abar[model.T])
    return normal_kl(math.sqrt(abar) * x0, torch.full_like(x0, math.log(1 - abar)), torch.zeros_like(x0),
                     torch.zeros_like(x0))


@torch.no_grad()
def elbo_terms(model: ReverseChain, x0: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
    """-ELBO(x_0) = prior + reconstruction + denoising per point, in nats, each term from its own draws:
    prior = KL(q(x_T | x_0) || N(0, I)), reconstruction = -log p_theta(x_0 | x_1) with x_1 ~ q(x_1 | x_0), and
    denoising = sum_{t=2}^T KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t)) with x_t ~ q(x_t | x_0)."""
    terms = {"prior": prior_term(model, x0), "reconstruction": torch.zeros(len(x0), device=x0.device),
             "denoising": torch.zeros(len(x0), device=x0.device)}
    for t in range(1, model.T + 1):
        xt = _noisy(model, x0, t, generator)
        tt = torch.full((len(x0),), t, device=x0.device)
        mean, logvar, _ = model.reverse(xt, tt)
        terms["reconstruction" if t == 1 else "denoising"] += denoising_term(model, x0, xt, tt, mean, logvar)
    return terms


@torch.no_grad()
def consistency_elbo(model: ReverseChain, x0: Tensor, generator: torch.Generator) -> Tensor:
    """-ELBO(x_0) by the notes' first form (eq. 45), per point, on one trajectory x_1 .. x_T of the forward chain:
    -log p_theta(x_0 | x_1) - log [N(x_T; 0, I) / q(x_T | x_{T-1})]
    - sum_{t=1}^{T-1} log [p_theta(x_t | x_{t+1}) / q(x_t | x_{t-1})].
    Its expectation is the same -ELBO as elbo_terms'. The notes write each consistency term as
    E_q(x_{t-1}, x_{t+1} | x_0) KL(q(x_t | x_{t-1}) || p_theta(x_t | x_{t+1})), which does not hold as written (x_{t+1}
    depends on x_t), so the terms here are the log-ratios on the simulated trajectory: unbiased, and the closer
    p_theta's steps are to the exact reverse steps, the more they cancel along it (docs/RESULTS.md measures the
    noise of both estimators)."""
    beta = model.schedule.beta
    path = [x0]
    for t in range(1, model.T + 1):
        noise = torch.randn(x0.shape, generator=generator, device=x0.device)
        path.append(float((1 - beta[t]).sqrt()) * path[-1] + float(beta[t].sqrt()) * noise)
    total = gaussian_nll(path[model.T], torch.zeros_like(x0), torch.zeros_like(x0))
    for t in range(1, model.T + 1):
        mean, logvar, _ = model.reverse(path[t], torch.full((len(x0),), t, device=x0.device))
        step = decoder_nll(model, x0, mean, logvar) if t == 1 else gaussian_nll(path[t - 1], mean,
                                                                                 logvar.expand_as(x0))
        total += step  # -log p_theta(x_{t-1} | x_t)
        q_mean = float((1 - beta[t]).sqrt()) * path[t - 1]
        total -= gaussian_nll(path[t], q_mean, torch.full_like(x0, float(beta[t].log())))  # -log q(x_t | x_{t-1})
    return total


class ChainELBO(Likelihood):
    """The ELBO as the chain's likelihood (kind `elbo`: nll and kl_elbo are upper bounds), with its terms in nats
    as `elbo_prior`, `elbo_reconstruction` and `elbo_denoising` (they sum to nll). `consistency`: also the notes'
    first estimator of the same -ELBO on the same points, as `nll_consistency` and, for data with a density,
    `kl_elbo_consistency` (an upper bound on the KL too), each with its standard error (T more network passes; on
    a trained chain its noise is several times lower, so its standard error is the tighter one)."""

    dequantize = False  # on quantised data the decoder is discretised: the ELBO bounds the grid values' log P

    def __init__(self, n_points: int = 4000, consistency: bool = False):
        super().__init__(n_points)
        self.consistency = bool(consistency)

    def log_p(self, ctx, x, generator):
        terms = elbo_terms(ctx.model, x, generator)
        extra = {f"elbo_{name}": float(value.double().mean()) for name, value in terms.items()}
        if self.consistency:
            other = consistency_elbo(ctx.model, x, generator).double().cpu()
            extra.update(nll_consistency=float(other.mean()),
                         nll_consistency_se=float(other.std() / math.sqrt(len(other))))
            if ctx.dataset.has_density:
                gap = ctx.dataset.log_prob(x.cpu().double()) + other
                extra.update(kl_elbo_consistency=float(gap.mean()),
                             kl_elbo_consistency_se=float(gap.std() / math.sqrt(len(gap))))
        return {"elbo": -sum(terms.values()).double()}, extra
