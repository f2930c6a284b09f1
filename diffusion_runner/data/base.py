"""The dataset interface: a distribution to draw x_0 from, with a kind (points or images), labels where they exist,
and the map between the data's units and the model's."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import cached_property

import numpy as np

from diffusion_runner.errors import ConfigError

# Normalisation constants and dataset scale are estimated once, from this many points of a fixed seed.
REFERENCE_N = 100_000
REFERENCE_SEED = 12345


class Dataset(ABC):
    """A distribution over R^dim that can be sampled; one sample has `shape` (dim entries in all). A dataset with
    `n_classes` > 0 also labels each sample with its class in 0 .. n_classes - 1 (sample_labeled)."""

    dim: int
    has_density: bool = False
    n_classes: int = 0
    kind: str = "points"  # "points" (vectors) or "images" (channels, height, width): what plots and metrics serve
    bin_width: float | None = None  # the spacing of quantised values (digits' pixels); None for continuous data

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample: (dim,) for points; a dataset of images would give (channels, height, width)."""
        return (self.dim,)

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n float32 samples, shape (n, *shape)."""

    def sample_labeled(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(n samples, their int64 labels), the samples as sample(n, rng) draws them."""
        raise ConfigError(f"{type(self).__name__} has no labels")

    def training_data(self, n: int, rng: np.random.Generator,
                      labeled: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The rows the model is fit to, in the model's units, with their labels if `labeled`: n fresh draws here
        (a dataset of finitely many rows gives its training rows, diffusion_runner.data.finite)."""
        if labeled:
            return self.sample_labeled(n, rng)
        return self.sample(n, rng), None

    def to_model(self, x: np.ndarray) -> np.ndarray:
        """Data units -> the model's units (the identity here; a points file may standardise)."""
        return x

    def from_model(self, x: np.ndarray) -> np.ndarray:
        """The model's units -> data units: what samples.npy and every metric hold."""
        return x

    @property
    def log_jacobian(self) -> float:
        """log |det d to_model / dx| per point, in nats: log p_data(x) = log p_model(to_model(x)) + this."""
        return 0.0

    def __deepcopy__(self, memo) -> Dataset:
        """A dataset does not change once built: a deep copy of what holds one (a model and its EMA) shares it."""
        return self

    @cached_property
    def std(self) -> float:
        """Scalar standard deviation over all entries (the data scale), in the model's units."""
        return float(self.sample(REFERENCE_N, np.random.default_rng(REFERENCE_SEED)).std())
