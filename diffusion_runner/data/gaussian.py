"""The normal distribution N(0, std^2 I): the default source of a transport (`source=gaussian`)."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import Tensor

from diffusion_runner.data.base import Dataset
from diffusion_runner.errors import ConfigError


class Gaussian(Dataset):
    """N(0, std^2 I) over samples of `shape`; `dim` fixes it to (dim,), null takes the shape of the dataset it is
    the source of (like)."""

    has_density = True

    def __init__(self, std: float = 1.0, dim: int | None = None):
        if isinstance(std, bool) or not isinstance(std, int | float) or not std > 0:
            raise ConfigError(f"source.std: must be a number > 0, got {std!r}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ConfigError(f"source.dim: must be an integer >= 1 or null, got {dim!r}")
        self.scale = float(std)
        self._shape = None if dim is None else (dim,)

    def like(self, dataset: Dataset) -> Gaussian:
        """This Gaussian in the shape of `dataset`'s samples (itself when its shape is fixed)."""
        if self._shape is not None:
            return self
        shaped = copy.copy(self)
        shaped._shape = tuple(dataset.shape)
        return shaped

    @property
    def shape(self):
        if self._shape is None:
            raise ConfigError("source.dim: null takes the dataset's shape, which this Gaussian was not given")
        return self._shape

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def std(self) -> float:
        return self.scale

    def sample(self, n, rng):
        return (self.scale * rng.standard_normal((n, *self.shape))).astype(np.float32)

    def log_prob(self, x: Tensor) -> Tensor:
        """log N(x; 0, std^2 I) per point, in nats."""
        var = self.scale**2
        return -0.5 * (x.flatten(1).pow(2).sum(1) / var + self.dim * math.log(2 * math.pi * var))

    def draw(self, n: int, generator: torch.Generator | None, device) -> Tensor:
        """n fresh draws in torch, from `generator`."""
        return self.scale * torch.randn((n, *self.shape), generator=generator, device=device)
