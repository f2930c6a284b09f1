"""The likelihood metric every family shares: its log-likelihood of fresh data, labelled by what it is.

A family's subclass gives log p_theta(x) per point and its `kind`:
- `exact`: the model's log-density in closed form (e.g. a sum over a discrete latent);
- `ode`: the exact log-density of a continuous flow, up to the ODE solver's tolerance;
- `elbo`, `iwae`: lower bounds on log p_theta, so the nll and kl they give are upper bounds.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from diffusion_runner.divergence import PROBES
from diffusion_runner.errors import ConfigError
from diffusion_runner.metrics import EvalContext, Metric, Output
from diffusion_runner.ode import METHODS, Clock, check_solver, solver

KINDS = ("exact", "ode", "elbo", "iwae")
DIVERGENCES = ("auto", "exact", "hutchinson")
SOLVERS = ("rk4", *METHODS)


class Likelihood(Metric):
    """`nll` = E_q[-log p_theta(x)] over `n_points` fresh draws x of the dataset, in nats and in bits per dimension
    (`nll_bpd` = nll / (D ln 2)), with `nll_kind` naming what log p_theta is (KINDS); for datasets with a density
    also `kl_<kind>` = E_q[log q(x) - log p_theta(x)] (KL(q || p_theta), or an upper bound on it for a bound) and
    `data_entropy` = E_q[-log q], nll's floor. `nll_se`, `kl_<kind>_se`: standard errors of the means. A family
    that also gives a looser estimate (e.g. the ELBO beside the exact value) reports it as `nll_<kind>` and
    `kl_<kind>` with their standard errors. For conditional samples the draws come from the requested component.

    For quantised data (a dataset's `bin_width` Delta, e.g. digits' 17 pixel levels) `bpd_discrete` bounds the bits
    per dimension of the grid values from above. A continuous density (`dequantize`) is evaluated on dequantised
    draws, x + Delta (u - 1/2) with u ~ U[0, 1)^D, and bpd_discrete = (nll - D ln Delta) / (D ln 2) (Theis et al.
    2016: a bound even when nll is exact); a family whose likelihood already gives the grid values' probability
    (dequantize = False) reports nll / (D ln 2)."""

    dequantize: ClassVar[bool] = True

    needs_model_density = True
    outputs = {"nll": Output(ratio=False), "data_entropy": Output(better=None, vs_oracle=False, floor_of="nll"),
               **{f"kl_{kind}": Output(ratio=False) for kind in KINDS},
               **{f"nll_{kind}": Output(ratio=False) for kind in KINDS},
               "bpd_discrete": Output(ratio=False)}

    def __init__(self, n_points: int = 4000):
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 2:
            raise ConfigError(f"eval.metrics.likelihood.n_points: must be an integer >= 2, got {n_points!r}")
        self.n_points = n_points

    @abstractmethod
    def log_p(self, ctx: EvalContext, x: Tensor, generator: torch.Generator) -> tuple[dict[str, Tensor], dict]:
        """({kind: log p_theta(x), or its bound, in nats per point as a float64 (batch,) tensor}, the headline kind
        first; extra diagnostics by name)."""

    def __call__(self, ctx: EvalContext) -> dict[str, float | str]:
        data = ctx.dataset.sample(self.n_points, ctx.rng)
        width = ctx.dataset.bin_width
        if width is not None and self.dequantize:  # uniform dequantisation within each value's bin
            data = data + (width * (ctx.rng.random(data.shape) - 0.5)).astype(np.float32)
        x = torch.as_tensor(ctx.dataset.to_model(data), device=ctx.device)
        generator = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**63)))
        estimates, extra = self.log_p(ctx, x, generator)
        estimates = {kind: log_p + ctx.dataset.log_jacobian for kind, log_p in estimates.items()}  # in data units
        log_q = ctx.dataset.log_prob(torch.as_tensor(data).double()) if ctx.dataset.has_density else None
        out: dict[str, float | str] = {"nll_kind": next(iter(estimates)), **extra}
        for i, (kind, log_p) in enumerate(estimates.items()):
            if kind not in KINDS:
                raise ValueError(f"likelihood kind {kind!r} is not one of {KINDS}")
            log_p = log_p.cpu()
            name = "nll" if i == 0 else f"nll_{kind}"
            out.update({name: float(-log_p.mean()), f"{name}_se": float(log_p.std() / math.sqrt(self.n_points))})
            if log_q is not None:
                gap = log_q - log_p
                out.update({f"kl_{kind}": float(gap.mean()),
                            f"kl_{kind}_se": float(gap.std() / math.sqrt(self.n_points))})
        dim = x[0].numel()
        out["nll_bpd"] = out["nll"] / (dim * math.log(2))
        if width is not None:
            nll_discrete = out["nll"] - dim * math.log(width) if self.dequantize else out["nll"]
            out["bpd_discrete"] = nll_discrete / (dim * math.log(2))
        if log_q is not None:
            out["data_entropy"] = float(-log_q.mean())
        return out


class FlowLikelihood(Likelihood):
    """The likelihood of a model whose samples solve an ODE from a known density (a continuous normalising flow), by
    the change of variables along it (diffusion_runner.ode.change_of_variables), of kind `ode`. Its options:
    `divergence`: `exact` (one backward pass per coordinate; low dimension), `hutchinson` (one pass, unbiased) or
    `auto`: exact up to `exact_max_dim` data dimensions, Hutchinson beyond; the one used is recorded as
    `nll_divergence`, and with Hutchinson the standard errors include the probe's variance. `method`: `rk4` on
    `steps` fixed steps of the family's clock, or an adaptive pair of ode.METHODS in t with rtol, atol. Also reports
    `nll_nfe` (network evaluations)."""

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

    def solver(self, span: tuple[float, float], clock: Clock | None = None,
               clock_span: tuple[float, float] | None = None) -> Callable:
        """This metric's solve(rhs, y0) over span (diffusion_runner.ode.solver)."""
        return solver(self.method, span, steps=self.steps, rtol=self.rtol, atol=self.atol, clock=clock,
                      clock_span=clock_span)
