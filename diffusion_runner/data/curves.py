"""2-D curves after HelloScore: the curves of sklearn's generators with noise 0, then (x - mean) / std * 2 with one
scalar mean and std. Every draw is independent: sklearn's make_moons and make_circles place their n points evenly
along the curves (two of their draws coincide), so moons and circles draw the same curves' points at random."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np
from sklearn import datasets as skd

from diffusion_runner.data.base import REFERENCE_N, REFERENCE_SEED, Dataset
from diffusion_runner.errors import ConfigError


class NormalisedCurve(Dataset):
    """A 2-D point set rescaled to (x - mean) / std * scale with one scalar mean and std,
    estimated once from a fixed-seed reference draw so every draw shares the same map."""

    dim = 2

    def __init__(self, scale: float = 2.0):
        if not scale > 0:
            raise ConfigError(f"dataset.scale: must be positive, got {scale}")
        self.scale = float(scale)
        ref = self.raw_sample(REFERENCE_N, np.random.default_rng(REFERENCE_SEED))
        self._mean, self._std = float(ref.mean()), float(ref.std())

    @abstractmethod
    def raw_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Unnormalised (n, 2) points."""

    def sample(self, n, rng):
        return ((self.raw_sample(n, rng) - self._mean) / self._std * self.scale).astype(np.float32)


def _sklearn_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(2**31 - 1))


class SwissRoll(NormalisedCurve):
    """sklearn make_swiss_roll(noise=0, hole=True), columns [0, 2]."""

    def raw_sample(self, n, rng):
        return skd.make_swiss_roll(n, noise=0.0, hole=True, random_state=_sklearn_seed(rng))[0][:, [0, 2]]


class Moons(NormalisedCurve):
    """The two half circles of sklearn's make_moons(noise=0): each point on either one with probability 1/2, at an angle
    uniform in [0, pi] (the outer (cos a, sin a), the inner (1 - cos a, 1/2 - sin a))."""

    def raw_sample(self, n, rng):
        angle, inner = rng.uniform(0.0, np.pi, n), rng.random(n) < 0.5
        return np.stack([np.where(inner, 1 - np.cos(angle), np.cos(angle)),
                         np.where(inner, 0.5 - np.sin(angle), np.sin(angle))], axis=1)


class Circles(NormalisedCurve):
    """The two concentric circles of sklearn's make_circles(noise=0, factor), radii 1 and `factor`: each point on either
    one with probability 1/2, at an angle uniform in [0, 2 pi]."""

    def __init__(self, factor: float = 0.8, scale: float = 2.0):
        if not 0 < factor < 1:
            raise ConfigError(f"dataset.factor: must be in (0, 1), got {factor}")
        self.factor = float(factor)
        super().__init__(scale)

    def raw_sample(self, n, rng):
        angle, radius = rng.uniform(0.0, 2 * np.pi, n), np.where(rng.random(n) < 0.5, self.factor, 1.0)
        return radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)


class Checkerboard(NormalisedCurve):
    """Uniform points of [-2 pi, 2 pi]^2 where sin(x_0) and sin(x_1) differ in sign (rejection sampled)."""

    def raw_sample(self, n, rng):
        out = np.empty((0, 2))
        while len(out) < n:
            x = rng.uniform(-2 * np.pi, 2 * np.pi, size=(2 * (n - len(out)) + 16, 2))
            out = np.concatenate([out, x[np.sin(x[:, 0]) * np.sin(x[:, 1]) < 0]])
        return out[:n]
