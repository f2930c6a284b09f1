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

from diffusion_runner.errors import ConfigError
from diffusion_runner.likelihood import Likelihood
from diffusion_runner.score.divergence import PROBES, exact, hutchinson, probe_like
from diffusion_runner.score.guidance import guided_score
from diffusion_runner.score.ode import METHODS, check_solver, integrate, rk4
from diffusion_runner.score.sdes import SDE, ScoreFn

DIVERGENCES = ("auto", "exact", "hutchinson")
SOLVERS = ("rk4", *METHODS)


def log_likelihood(score_fn: ScoreFn, sde: SDE, x: Tensor, *, divergence: str = "exact", probe: str = "rademacher",
                   generator: torch.Generator | None = None, method: str = "rk4", steps: int = 25,
                   rtol: float = 1e-5, atol: float = 1e-5) -> tuple[Tensor, int]:
    """(log p_theta(x) in nats per point, float64 of shape (batch,); score evaluations). `hutchinson` draws one
    probe per point, fixed over the whole solve, so its estimate is unbiased."""
    n = x.shape[0]
    probe_vec = probe_like(x, probe, generator) if divergence == "hutchinson" else None
    nfe = 0

    def rhs(t: float, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        with torch.enable_grad():
            xt = y[:, :-1].reshape(x.shape).to(torch.float32).requires_grad_(True)
            tt = torch.full((n,), t, device=x.device)
            v = sde.probability_flow_drift(xt, tt, score_fn(xt, tt))
            div = exact(v, xt) if probe_vec is None else hutchinson(v, xt, probe_vec)
        return torch.cat([v.detach().flatten(1), div.detach()[:, None]], dim=1).double()

    y0 = torch.cat([x.flatten(1).double(), torch.zeros(n, 1, dtype=torch.float64, device=x.device)], dim=1)
    if method == "rk4":
        ends = sde.noise_level(torch.tensor([sde.eps, sde.T], dtype=torch.float64)).log()
        end = rk4(rhs, y0, torch.linspace(float(ends[0]), float(ends[1]), steps + 1, dtype=torch.float64),
                  sde.log_noise_clock)
    else:
        end = integrate(rhs, y0, (sde.eps, sde.T), method=method, rtol=rtol, atol=atol)[1][-1]
    return sde.prior_logp(end[:, :-1].reshape(x.shape)) + end[:, -1], nfe


class ODELikelihood(Likelihood):
    """The likelihood metric (diffusion_runner.likelihood) of a score model, of kind `ode`: log p_theta by the
    probability-flow ODE, so `kl_ode` is the writeup's KL without a KDE.
    `divergence`: `exact` (one backward pass per coordinate; low dimension), `hutchinson` (one pass, unbiased) or
    `auto`: exact up to `exact_max_dim` data dimensions, Hutchinson beyond (the exact divergence costs one backward
    pass per dimension). The one used is recorded as `nll_divergence`. Also reports `nll_nfe` (score evaluations);
    with Hutchinson the standard errors include the probe's variance. For conditional samples p_theta is the guided
    model's. `method`: `rk4` on `steps` steps in log sigma, or an adaptive pair of ode.METHODS with rtol, atol."""

    def __init__(self, n_points: int = 4000, divergence: str = "auto", exact_max_dim: int = 10,
                 probe: str = "rademacher", method: str = "rk4", steps: int = 25, rtol: float = 1e-5,
                 atol: float = 1e-5):
        super().__init__(n_points)
        if divergence not in DIVERGENCES:
            raise ConfigError(f"eval.metrics.likelihood.divergence: '{divergence}' is not one of {list(DIVERGENCES)}")
        if probe not in PROBES:
            raise ConfigError(f"eval.metrics.likelihood.probe: '{probe}' is not one of {list(PROBES)}")
        if isinstance(exact_max_dim, bool) or not isinstance(exact_max_dim, int) or exact_max_dim < 1:
            raise ConfigError(f"eval.metrics.likelihood.exact_max_dim: must be an integer >= 1, got {exact_max_dim!r}")
        if method not in SOLVERS:
            raise ConfigError(f"eval.metrics.likelihood.method: '{method}' is not one of {list(SOLVERS)}")
        if method == "rk4":
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ConfigError(f"eval.metrics.likelihood.steps: must be an integer >= 1, got {steps!r}")
        else:
            check_solver(method, rtol, atol, "eval.metrics.likelihood")
        self.divergence, self.probe = divergence, probe
        self.exact_max_dim = exact_max_dim
        self.method, self.steps, self.rtol, self.atol = method, steps, float(rtol), float(atol)

    def divergence_for(self, dim: int) -> str:
        """The divergence estimator used for data of `dim` dimensions."""
        if self.divergence != "auto":
            return self.divergence
        return "exact" if dim <= self.exact_max_dim else "hutchinson"

    def log_p(self, ctx, x, generator):
        labels = None if ctx.labels is None else torch.as_tensor(ctx.labels[:1], device=ctx.device)
        divergence = self.divergence_for(x[0].numel())
        log_p, nfe = log_likelihood(guided_score(ctx.model, labels, ctx.guidance), ctx.model.sde, x,
                                    divergence=divergence, probe=self.probe, generator=generator, method=self.method,
                                    steps=self.steps, rtol=self.rtol, atol=self.atol)
        return {"ode": log_p}, {"nll_nfe": nfe, "nll_divergence": divergence}
