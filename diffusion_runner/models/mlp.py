"""A multilayer perceptron score network with a sinusoidal time embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.models.base import PARAMETERIZATIONS, ScoreModel
from diffusion_runner.models.embedding import SinusoidalEmbedding
from diffusion_runner.sdes import SDE, append_dims

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU}


class MLP(ScoreModel):
    """net([c_in(t) x, emb(1000 t / T)]) -> eps, x0 or score, turned into a score through the marginal.

    c_in(t) = 1 / sqrt(m(t)^2 sigma_data^2 + s(t)^2) keeps the input at unit scale for every SDE.
    `depth` counts hidden layers of `width` units.
    """

    def __init__(self, sde: SDE, dataset: Dataset, width: int = 128, depth: int = 3, activation: str = "silu",
                 time_embed_dim: int = 64, parameterization: str = "eps"):
        super().__init__(sde)
        if activation not in ACTIVATIONS:
            raise ConfigError(f"model.activation: '{activation}' is not one of {sorted(ACTIVATIONS)}")
        if parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"model.parameterization: '{parameterization}' is not one of {sorted(PARAMETERIZATIONS)}")
        if width < 1 or depth < 1:
            raise ConfigError(f"model: width and depth must be >= 1, got width={width}, depth={depth}")
        self.parameterization = parameterization
        self.data_var = dataset.std**2
        self.embed = SinusoidalEmbedding(time_embed_dim)
        layers, n_in = [], dataset.dim + time_embed_dim
        for _ in range(depth):
            layers += [nn.Linear(n_in, width), ACTIVATIONS[activation]()]
            n_in = width
        layers.append(nn.Linear(n_in, dataset.dim))
        self.net = nn.Sequential(*layers)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        m, s = (append_dims(c, x.ndim) for c in self.sde.marginal(t))
        c_in = torch.rsqrt(m**2 * self.data_var + s**2).flatten(1)
        out = self.net(torch.cat([c_in * x, self.embed(1000.0 * t / self.sde.T)], dim=-1))
        return PARAMETERIZATIONS[self.parameterization](out, x, m, s)
