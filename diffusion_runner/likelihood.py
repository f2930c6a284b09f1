"""The likelihood metric every family shares: its log-likelihood of fresh data, labelled by what it is.

A family's subclass gives log p_theta(x) per point and its `kind`:
- `exact`: the model's log-density in closed form (e.g. a sum over a discrete latent);
- `ode`: the exact log-density of a continuous flow, up to the ODE solver's tolerance;
- `elbo`, `iwae`: lower bounds on log p_theta, so the nll and kl they give are upper bounds.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.metrics import EvalContext, Metric, Output

KINDS = ("exact", "ode", "elbo", "iwae")


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
