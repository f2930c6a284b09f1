"""The reverse chain p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I) of a discrete-time diffusion.

The backbone F(c_in x_t, emb(t)) with c_in = 1 / sqrt(abar_t sigma_d^2 + 1 - abar_t) (unit-scale input at every t)
predicts, by `parameterization`:
    eps   F ~ eps,  x0_hat = (x_t - sqrt(1 - abar_t) F) / sqrt(abar_t)      (Ho et al. 2020)
    x0    F ~ x_0,  x0_hat = F                                                (the VDM notes)
and mu_theta = c1_t x0_hat + c2_t x_t, the posterior mean at x0_hat (no clipping: the data are not images).
`variance`: `small` sigma_t^2 = btilde_t (at t = 1, where btilde_1 = 0, btilde_2), `large` sigma_t^2 = beta_t, or
`learned`: log sigma_t^2 = v log beta_t + (1 - v) log btilde_t with v = (1 + F_v) / 2 from D more outputs (Nichol &
Dhariwal 2021). At t = 1, beta_1 is the variance of the exact reverse step for data that are locally Gaussian on
the scale sqrt(beta_1), as continuous data are; improved-diffusion's btilde_2 there, meant for 8-bit images, made the
reconstruction term alone cost about 0.2 nats on gmm8 (docs/RESULTS.md). ChainOracle gives the exact x0_hat of a
Gaussian mixture instead of a network's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from diffusion_runner.chain.schedules import Schedule
from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Model
from diffusion_runner.nets.embedding import SinusoidalEmbedding
from diffusion_runner.shapes import append_dims

PARAMETERIZATIONS = ("eps", "x0")
VARIANCES = ("small", "large", "learned")


class ReverseChain(Model):
    """What every reverse chain shares: the schedule's coefficients as buffers, the posterior mean and the
    variance; a subclass gives forward(x_t, t) -> (x0_hat, the variance output or None)."""

    def __init__(self, dataset: Dataset, schedule: Schedule, variance: str = "small"):
        super().__init__()
        if variance not in VARIANCES:
            raise ConfigError(f"model.variance: '{variance}' is not one of {list(VARIANCES)}")
        self.schedule, self.variance = schedule, variance
        self.sigma_data, self.shape = dataset.std, tuple(dataset.shape)
        self.bin_width = dataset.bin_width  # quantised data: the decoder p(x_0 | x_1) is discretised
        s = schedule
        c1, c2, btilde = s.posterior(torch.arange(1, s.T + 1))
        log_small = torch.log(torch.cat([btilde[1:2] if s.T > 1 else s.beta[1:2], btilde[1:]]))
        log_large = torch.log(s.beta[1:])
        zero = torch.zeros(1, dtype=torch.float64)
        for name, value in (("sqrt_abar", s.abar.sqrt()), ("sqrt_one_minus_abar", (1 - s.abar).sqrt()),
                            ("c1", torch.cat([zero, c1])), ("c2", torch.cat([zero, c2])),
                            ("log_small", torch.cat([zero, log_small])), ("log_large", torch.cat([zero, log_large]))):
            self.register_buffer(name, value.float(), persistent=False)

    @property
    def T(self) -> int:
        return self.schedule.T

    def coefficient(self, name: str, t: Tensor, ndim: int) -> Tensor:
        """The buffer `name` (sqrt_abar, sqrt_one_minus_abar, c1, c2, log_small, log_large) at steps t, shaped to
        broadcast over `ndim`-dimensional data."""
        return append_dims(getattr(self, name)[t], ndim)

    def noisy(self, x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, a draw of q(x_t | x_0) for eps ~ N(0, I)."""
        sa, so = self.coefficient("sqrt_abar", t, x0.ndim), self.coefficient("sqrt_one_minus_abar", t, x0.ndim)
        return sa * x0 + so * eps

    def predict_eps(self, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """The noise eps that x0 implies at x_t: (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t)."""
        sa, so = self.coefficient("sqrt_abar", t, xt.ndim), self.coefficient("sqrt_one_minus_abar", t, xt.ndim)
        return (xt - sa * x0) / so

    def posterior_mean(self, xt: Tensor, t: Tensor, x0: Tensor) -> Tensor:
        """c1_t x0 + c2_t x_t: the mean of q(x_{t-1} | x_t, x_0)."""
        return self.coefficient("c1", t, xt.ndim) * x0 + self.coefficient("c2", t, xt.ndim) * xt

    def log_variance(self, t: Tensor, v: Tensor | None, ndim: int) -> Tensor:
        """log sigma_t^2 of p_theta(x_{t-1} | x_t), broadcastable to the data."""
        small, large = self.coefficient("log_small", t, ndim), self.coefficient("log_large", t, ndim)
        if self.variance == "small":
            return small
        if self.variance == "large":
            return large
        frac = (v + 1) / 2
        return frac * large + (1 - frac) * small

    def reverse(self, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(mu_theta(x_t, t), log sigma_t^2, x0_hat)."""
        x0, v = self(xt, t)
        return self.posterior_mean(xt, t, x0), self.log_variance(t, v, xt.ndim), x0


class ChainModel(ReverseChain):
    """A learned reverse chain (see the module docstring). `backbone(shape, features)` is a partial of
    diffusion_runner.nets; a learned variance needs one that takes `out_shape` (MLP, ResMLP)."""

    def __init__(self, dataset: Dataset, schedule: Schedule, backbone: Callable[..., nn.Module],
                 parameterization: str = "eps", variance: str = "small", time_embed_dim: int = 64):
        super().__init__(dataset, schedule, variance)
        if parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"model.parameterization: '{parameterization}' is not one of {list(PARAMETERIZATIONS)}")
        self.parameterization = parameterization
        self.embed = SinusoidalEmbedding(time_embed_dim)
        if variance == "learned":
            try:
                self.backbone = backbone(shape=self.shape, features=time_embed_dim,
                                         out_shape=(2 * self.shape[0], *self.shape[1:]))
            except TypeError as e:
                raise ConfigError("model.variance: learned needs a backbone with out_shape (diffusion_runner.nets.MLP, "
                                  "ResMLP or UNet)") from e
        else:
            self.backbone = backbone(shape=self.shape, features=time_embed_dim)

    def forward(self, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        """(x0_hat, the variance output F_v or None) at integer steps t (batch,) >= 1."""
        sa, so = self.coefficient("sqrt_abar", t, xt.ndim), self.coefficient("sqrt_one_minus_abar", t, xt.ndim)
        c_in = torch.rsqrt(sa**2 * self.sigma_data**2 + so**2)
        out = self.backbone(c_in * xt, self.embed(1000.0 * t.float() / self.T))
        v = None
        if self.variance == "learned":
            out, v = out.chunk(2, dim=1)
        x0 = (xt - so * out) / sa if self.parameterization == "eps" else out
        return x0, v


class ChainOracle(ReverseChain):
    """The exact x0_hat = E[x_0 | x_t] of a Gaussian-mixture dataset, by Tweedie's formula
    x0_hat = (x_t + (1 - abar_t) grad log q_t(x_t)) / sqrt(abar_t): the chain's true-score row, no training."""

    is_oracle = True

    def __init__(self, dataset: Dataset, schedule: Schedule, variance: str = "small"):
        super().__init__(dataset, schedule, variance)
        if not dataset.has_density or variance == "learned":
            raise ConfigError("model: the chain's oracle needs a Gaussian-mixture dataset (such as gmm8) and a fixed "
                              "variance (small or large)")
        self.dataset = dataset

    def forward(self, xt: Tensor, t: Tensor) -> tuple[Tensor, Tensor | None]:
        m, s = self.sqrt_abar[t].double(), self.sqrt_one_minus_abar[t].double()
        x = xt.double()
        score = self.dataset.score(x, m, s)
        return ((x + append_dims(s**2, x.ndim) * score) / append_dims(m, x.ndim)).to(xt.dtype), None
