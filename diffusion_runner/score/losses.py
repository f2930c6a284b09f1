"""Score-matching objectives."""

from __future__ import annotations

import math
from abc import abstractmethod

import numpy as np
import torch
from torch import Tensor

from diffusion_runner.divergence import PROBES, exact, hutchinson, probe_like
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Loss
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.sdes import SDE, ScoreFn
from diffusion_runner.score.weighting import Weighting
from diffusion_runner.shapes import append_dims

T_SAMPLING = ("uniform", "importance")


class TimeWeighted(Loss):
    """A score-matching loss averaged over t with a weighting lambda(t), in the units of the noise-prediction error:

        L = E_{t ~ U[eps, T]}[ w(t) l(x_0, t) ] / Z,   w = lambda / s^2,   Z = E_t[w],

    where l is the subclass's per-point term in score units times s(t)^2 (for DSM, || s(t) s_theta(x_t, t) + z ||^2,
    the squared norm summed over data dimensions). Z (by the trapezoid rule on a geometric grid of t, fine near eps
    where w can grow like 1/t) puts every weighting in the same units, so losses and learning rates compare; it
    does not change the minimiser.

    t_sampling="uniform" draws t ~ U[eps, T] and weights each term by w(t) / Z. t_sampling="importance" draws
    t from p_w(t) = w(t) / (Z (T - eps)), the same loss and gradient in expectation without the heavy-tailed
    weights of e.g. lambda = 1 near t = eps. With `coverage` c > 0 it draws from the mixture
    r = (1 - c) p_w + c p_sigma, p_sigma uniform in the log noise level log(s / m), and weights each term by
    p_w(t) / r(t) <= 1 / (1 - c): still the same loss, but every noise level gets a share c of the batch (p_w alone
    can leave whole decades of t almost untrained, e.g. small t for OU with inv_var, large t for uniform).
    The inverse CDF of r and the weights are tabulated once at `quantiles` equally spaced levels and interpolated.
    """

    def __init__(self, sde: SDE, weighting: Weighting, t_sampling: str = "uniform", coverage: float = 0.0,
                 grid_points: int = 10_001, quantiles: int = 4097):
        if t_sampling not in T_SAMPLING:
            raise ConfigError(f"loss.t_sampling: '{t_sampling}' is not one of {list(T_SAMPLING)}")
        if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 <= coverage < 1:
            raise ConfigError(f"loss.coverage: must be a number in [0, 1), got {coverage!r}")
        self.sde, self.weighting, self.importance = sde, weighting, t_sampling == "importance"
        grid = torch.logspace(math.log10(sde.eps), math.log10(sde.T), grid_points, dtype=torch.float64)
        s = sde.marginal(grid)[1]
        w = weighting(sde, grid, s) / s**2
        cdf_w = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((w[1:] + w[:-1]) / 2 * grid.diff(), 0)])
        self.normaliser = float(cdf_w[-1]) / (sde.T - sde.eps)
        cdf_w = cdf_w / cdf_w[-1]
        log_sigma = sde.noise_level(grid).log()
        cdf = (1 - coverage) * cdf_w + coverage * (log_sigma - log_sigma[0]) / (log_sigma[-1] - log_sigma[0])
        inverse_cdf = np.interp(np.linspace(0, 1, quantiles), cdf.numpy(), grid.numpy())
        # p_w / r on each grid cell is the ratio of the two CDFs' increments there.
        steps = cdf.diff()
        ratio = torch.where(steps > 0, cdf_w.diff() / steps.clamp(min=1e-300), 1.0).numpy()
        cell = np.clip(np.searchsorted(grid.numpy(), inverse_cdf) - 1, 0, len(ratio) - 1)
        self._table = torch.as_tensor(np.stack([inverse_cdf, ratio[cell]]), dtype=torch.float32)

    def sample_t(self, b: int, generator: torch.Generator | None, device: torch.device) -> tuple[Tensor, Tensor,
                                                                                                  Tensor, Tensor]:
        """(t, m(t), s(t), the weight p_w(t) / r(t) of each draw); under uniform t-sampling the weight is w(t) / Z."""
        u = torch.rand(b, generator=generator, device=device)
        if not self.importance:
            t = self.sde.eps + (self.sde.T - self.sde.eps) * u
            m, s = self.sde.marginal(t)
            return t, m, s, self.weighting(self.sde, t, s) / s**2 / self.normaliser
        if self._table.device != device:
            self._table = self._table.to(device)
        pos = u * (self._table.shape[1] - 1)
        i = pos.long().clamp_(max=self._table.shape[1] - 2)
        t, weight = torch.lerp(self._table[:, i], self._table[:, i + 1], pos - i)
        return t, *self.sde.marginal(t), weight

    def __call__(self, model: ScoreModel, x0: Tensor, generator: torch.Generator | None = None,
                 y: Tensor | None = None) -> Tensor:
        t, m, s, weight = self.sample_t(x0.shape[0], generator, x0.device)
        z = torch.randn(x0.shape, generator=generator, device=x0.device)
        m, s = append_dims(m, x0.ndim), append_dims(s, x0.ndim)
        score = model.score if y is None else lambda x, t: model.score(x, t, y)
        return (weight * self.term(score, x0, m * x0 + s * z, z, t, m, s, generator, y)).mean()

    @abstractmethod
    def term(self, score: ScoreFn, x0: Tensor, xt: Tensor, z: Tensor, t: Tensor, m: Tensor, s: Tensor,
             generator: torch.Generator | None, y: Tensor | None) -> Tensor:
        """l(x_0, t) per point, shape (batch,), for x_t = m x_0 + s z and the model's score(x, t) (the batch's
        labels y, if any, already bound)."""


class DSM(TimeWeighted):
    """Denoising score matching: l = || s(t) s_theta(x_t, t) + z ||^2, i.e. E[lambda(t) || s_theta + z / s(t) ||^2] / Z
    (see TimeWeighted for t-sampling, `coverage` and the units).

    `stable_target` n > 0 replaces the drawn noise z in the target by its posterior mean over n reference points
    of the batch (see `_stable_noise`): the same minimiser as n grows, far less variance at large t, where one
    x_t is explained by many x_0; it costs one (batch x n) matrix product per step.
    """

    def __init__(self, sde: SDE, weighting: Weighting, t_sampling: str = "uniform", coverage: float = 0.0,
                 stable_target: int = 0, **table):
        super().__init__(sde, weighting, t_sampling, coverage, **table)
        if isinstance(stable_target, bool) or not isinstance(stable_target, int) or stable_target < 0:
            raise ConfigError(f"loss.stable_target: must be an integer >= 0 (0 = off), got {stable_target!r}")
        self.stable_target = int(stable_target)

    def term(self, score, x0, xt, z, t, m, s, generator, y):
        if self.stable_target:
            z = self._stable_noise(xt, x0, m, s, self.stable_target, y)
        return (s * score(xt, t) + z).pow(2).flatten(1).sum(1)

    @staticmethod
    def _stable_noise(xt: Tensor, x0: Tensor, m: Tensor, s: Tensor, reference: int, y: Tensor | None) -> Tensor:
        """Stable target field (Xu et al. 2023): the noise target (x_t - m E[x_0 | x_t]) / s with the posterior
        p(x0_j | x_t,i) ~ N(x_t,i; m_i x0_j, s_i^2 I) over a reference set, the first `reference` x_0s of the batch
        plus the point's own x_0, instead of the one x_0 drawn. With labels y, point i's reference set holds only
        the x_0s with its own label: the same component for a conditional term, and for a hidden ("no label")
        term the other hidden points, a uniform subsample of the data."""
        xf, af, mf, sf = xt.flatten(1), x0.flatten(1), m.flatten(1), s.flatten(1)
        ref = af[:reference]
        # -|x_i - m_i a_j|^2 / (2 s_i^2) up to terms constant in j, from one matrix product.
        logits = (mf * (xf @ ref.T) - 0.5 * mf**2 * ref.pow(2).sum(1)) / sf**2
        if y is not None:
            logits = logits.masked_fill(y[:, None] != y[None, :reference], -torch.inf)
        own = (mf * (xf * af).sum(1, keepdim=True) - 0.5 * mf**2 * af.pow(2).sum(1, keepdim=True)) / sf**2
        own[:reference] = -torch.inf  # already in the reference set
        post = torch.softmax(torch.cat([logits, own], dim=1), dim=1)
        posterior_mean = post[:, :-1] @ ref + post[:, -1:] * af
        return ((xf - mf * posterior_mean) / sf).reshape(xt.shape)


def _check_probe(probe: str) -> str:
    if probe not in PROBES:
        raise ConfigError(f"loss.probe: '{probe}' is not one of {list(PROBES)}")
    return probe


class _DivergenceMatching(TimeWeighted):
    """l = s(t)^2 (|| s_theta ||^2 + 2 div s_theta) + D at x_t, D the data dimension, with the subclass's estimate of
    the divergence. By Stein's identity E_z[s_theta . z] = s E_z[div s_theta], so E[l] equals DSM's expected term
    at every t, for any model: the same loss, with no noise target."""

    def term(self, score, x0, xt, z, t, m, s, generator, y):
        xt = xt.detach().requires_grad_(True)
        value = score(xt, t)
        div = self.divergence_of(value, xt, generator)
        return s.flatten() ** 2 * (value.pow(2).flatten(1).sum(1) + 2 * div) + xt[0].numel()

    @abstractmethod
    def divergence_of(self, score: Tensor, xt: Tensor, generator: torch.Generator | None) -> Tensor:
        """div_x score per point, differentiable in the model's parameters."""


class ISM(_DivergenceMatching):
    """Implicit score matching (Hyvarinen 2005) on the marginals p_t. `divergence`: `exact` (one backward pass
    per coordinate, low dimension) or `hutchinson` (one pass with a `probe` vector per point, unbiased)."""

    def __init__(self, sde: SDE, weighting: Weighting, t_sampling: str = "uniform", coverage: float = 0.0,
                 divergence: str = "exact", probe: str = "rademacher", **table):
        super().__init__(sde, weighting, t_sampling, coverage, **table)
        if divergence not in ("exact", "hutchinson"):
            raise ConfigError(f"loss.divergence: '{divergence}' is not one of ['exact', 'hutchinson']")
        self.divergence, self.probe = divergence, _check_probe(probe)

    def divergence_of(self, score, xt, generator):
        if self.divergence == "exact":
            return exact(score, xt, create_graph=True)
        return hutchinson(score, xt, probe_like(xt, self.probe, generator), create_graph=True)


class SSM(_DivergenceMatching):
    """Sliced score matching, variance-reduced (Song et al. 2019): the divergence is the mean over `projections`
    random directions v (E[v v^T] = I, `probe` gaussian or rademacher) of v^T (d s_theta / dx) v, while
    || s_theta ||^2 stays exact; the same expectation as ISM."""

    def __init__(self, sde: SDE, weighting: Weighting, t_sampling: str = "uniform", coverage: float = 0.0,
                 projections: int = 1, probe: str = "gaussian", **table):
        super().__init__(sde, weighting, t_sampling, coverage, **table)
        if isinstance(projections, bool) or not isinstance(projections, int) or projections < 1:
            raise ConfigError(f"loss.projections: must be an integer >= 1, got {projections!r}")
        self.projections, self.probe = projections, _check_probe(probe)

    def divergence_of(self, score, xt, generator):
        return sum(hutchinson(score, xt, probe_like(xt, self.probe, generator), create_graph=True)
                   for _ in range(self.projections)) / self.projections
