"""The flow's model: a velocity field v_theta(x, t) on t in [0, 1] that carries its source (t = 0) to the data
(t = 1), and for a matcher that learns it, the score of the path's marginal, s_theta(x, t) ~ grad log p_t(x).

The backbone sees c_in x with c_in = 1 / sqrt(a_t^2 sigma_0^2 + b_t^2 sigma_1^2 + sigma_t^2), the scale of
x_t = a_t x0 + b_t x1 + sigma_t eps on the matcher's path for independent x0 and x1 of the source's and the data's
scalar stds (sigma_0, sigma_1), and the time features emb(1000 t); its output is the velocity in the model's units
(the data's, unless a points file is standardised) per unit time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from diffusion_runner.data import Dataset, Gaussian
from diffusion_runner.family import Model
from diffusion_runner.flow.matchers import Matcher
from diffusion_runner.nets.embedding import SinusoidalEmbedding
from diffusion_runner.shapes import append_dims


class VelocityField(Model):
    """v_theta(x, t) (and s_theta(x, t) when the matcher learns the score: a second backbone of the same kind)
    for samples of the dataset's shape, from `source` along `matcher`'s paths."""

    def __init__(self, dataset: Dataset, source: Dataset, matcher: Matcher, backbone: Callable[..., nn.Module],
                 time_embed_dim: int = 64):
        super().__init__()
        self.source, self.matcher, self.shape = source, matcher, tuple(dataset.shape)
        self.source_std, self.data_std = source.std, dataset.std
        self.embed = SinusoidalEmbedding(time_embed_dim)
        self.net = backbone(shape=self.shape, features=time_embed_dim)
        self.score_net = backbone(shape=self.shape, features=time_embed_dim) if matcher.learns_score else None

    def _inputs(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        a, b = self.matcher.coefficients(t)
        scale = (a**2 * self.source_std**2 + b**2 * self.data_std**2 + self.matcher.std(t) ** 2).rsqrt()
        return append_dims(scale, x.ndim) * x, self.embed(1000.0 * t)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """v_theta at x (batch, ...) and times t (batch,), in the model's units per unit time."""
        return self.net(*self._inputs(x, t))

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """s_theta ~ grad_x log p_t(x), in units of 1 / x (a matcher that learns the score only)."""
        if self.score_net is None:
            raise ValueError(f"{type(self.matcher).__name__} trains no score")
        return self.score_net(*self._inputs(x, t))

    def draw_source(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        """n fresh source points in the model's units: N(0, std^2 I) from `generator`, or the source dataset's own
        draws (its held-out rows for a dataset of rows) from a numpy stream seeded by it."""
        if isinstance(self.source, Gaussian):
            return self.source.draw(n, generator, device)
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator, device=device)))
        return torch.as_tensor(self.source.to_model(self.source.sample(n, rng)), device=device)

    def source_log_prob(self, z: Tensor) -> Tensor:
        """log p_0(z) in nats at points z in the model's units (the source's density, with its units' Jacobian)."""
        x = torch.as_tensor(self.source.from_model(z.cpu().numpy()), dtype=torch.float64)
        return (self.source.log_prob(x) - self.source.log_jacobian).to(z.device)
