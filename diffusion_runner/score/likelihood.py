"""Exact log-likelihood of a score model through the probability-flow ODE (Song et al. 2021, app. D.2).

Integrating dx/dt = v(x, t) = f - g^2 s_theta / 2 from eps to T alongside d(delta)/dt = div_x v(x, t) gives
log p_theta(x) = log p_T(x_T) + delta_T for the model density at eps, the density that the probability-flow ODE
sampler (sampler=ode) draws from; p_T is the SDE's prior. Units: nats.

The solver is `rk4`, classical Runge-Kutta on `steps` even steps in u = log sigma(t) (4 score-and-divergence
evaluations a step), or one of scipy's adaptive pairs (ode.METHODS) in t with rtol and atol. In u the field is
smooth from the data's scale to the prior's, where in t the adaptive solver crowds its steps near eps
(docs/RESULTS.md compares the two).
"""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_runner.likelihood import FlowLikelihood
from diffusion_runner.ode import change_of_variables, solver
from diffusion_runner.score.guidance import guided_score
from diffusion_runner.score.sdes import SDE, ScoreFn


def log_likelihood(score_fn: ScoreFn, sde: SDE, x: Tensor, *, divergence: str = "exact", probe: str = "rademacher",
                   generator: torch.Generator | None = None, method: str = "rk4", steps: int = 25,
                   rtol: float = 1e-5, atol: float = 1e-5) -> tuple[Tensor, int]:
    """(log p_theta(x) in nats per point, float64 of shape (batch,); score evaluations)."""
    ends = sde.noise_level(torch.tensor([sde.eps, sde.T], dtype=torch.float64)).log()
    solve = solver(method, (sde.eps, sde.T), steps=steps, rtol=rtol, atol=atol, clock=sde.log_noise_clock,
                   clock_span=(float(ends[0]), float(ends[1])))
    end, delta, nfe = change_of_variables(lambda xt, t: sde.probability_flow_drift(xt, t, score_fn(xt, t)), x, solve,
                                          divergence=divergence, probe=probe, generator=generator)
    return sde.prior_logp(end) + delta, nfe


class ODELikelihood(FlowLikelihood):
    """The likelihood metric of a score model (diffusion_runner.likelihood.FlowLikelihood, kind `ode`): log p_theta by
    the probability-flow ODE, so `kl_ode` is the writeup's KL without a KDE; rk4 steps are even in log sigma. For
    conditional samples p_theta is the guided model's."""

    def log_p(self, ctx, x, generator):
        labels = None if ctx.labels is None else torch.as_tensor(ctx.labels[:1], device=ctx.device)
        divergence = self.divergence_for(x[0].numel())
        log_p, nfe = log_likelihood(guided_score(ctx.model, labels, ctx.guidance), ctx.model.sde, x,
                                    divergence=divergence, probe=self.probe, generator=generator, method=self.method,
                                    steps=self.steps, rtol=self.rtol, atol=self.atol)
        return {"ode": log_p}, {"nll_nfe": nfe, "nll_divergence": divergence}
