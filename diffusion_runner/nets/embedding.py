"""Sinusoidal embedding of a scalar (Vaswani et al. 2017), used for the diffusion time."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from diffusion_runner.errors import ConfigError


class SinusoidalEmbedding(nn.Module):
    """tau -> [sin(tau w_i), cos(tau w_i)], w_i = max_period^(-i / (dim/2)), i = 0 .. dim/2 - 1."""

    def __init__(self, dim: int, max_period: float = 10_000.0):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2 or dim % 2:
            raise ConfigError(f"model.time_embed_dim: must be an even integer >= 2, got {dim!r}")
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half))

    def forward(self, tau: Tensor) -> Tensor:
        args = tau[:, None] * self.freqs
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
