"""Sample-quality metrics. Each compares generated points with fresh reference draws of the dataset
(never the training set) and returns a dict of name -> float.

Call signature: metric(samples (N, D) float array, dataset, rng) -> {name: value}; the caller passes at
least `metric.min_samples` samples.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import KDTree
from scipy.spatial.distance import cdist
from scipy.stats import gaussian_kde

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError


def _positive(value: int, key: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be an integer >= 1, got {value!r}")
    return value


class KLKDE:
    """KL(q || p_hat) = E_q[log q - log p_hat] in nats, estimated by Monte Carlo over `n_reference`
    fresh draws of q (the true density). p_hat is scipy's gaussian_kde of all generated samples with
    Scott's rule: bandwidth matrix n^(-2/(d+4)) times the samples' covariance.

    Also reports `kl_kde_floor`: the same estimate with p_hat built from as many fresh true samples,
    i.e. the bias of the KDE itself at that sample size.
    """

    needs_density = True
    min_samples = 10  # a KDE in a few dimensions needs a handful of points

    def __init__(self, n_reference: int = 10_000):
        self.n_reference = _positive(n_reference, "eval.metrics.kl_kde.n_reference")

    def _kl(self, points: np.ndarray, y: np.ndarray, log_q: np.ndarray) -> float:
        log_p = gaussian_kde(points.T.astype(np.float64)).logpdf(y.T)
        return float(np.mean(log_q - log_p))

    def __call__(self, samples, dataset: Dataset, rng):
        y = dataset.sample(self.n_reference, rng).astype(np.float64)
        log_q = dataset.log_prob(torch.from_numpy(y)).numpy()
        floor_points = dataset.sample(len(samples), rng)
        return {"kl_kde": self._kl(samples, y, log_q), "kl_kde_floor": self._kl(floor_points, y, log_q)}


class Chamfer:
    """HelloScore's chamfer distance: the first n_clouds * cloud_size generated points and as many fresh
    reference points are cut into n_clouds pairs of clouds A, B of cloud_size points;
    CD(A, B) = mean_a min_b |a - b|^2 + mean_b min_a |a - b|^2 (squared Euclidean); the mean over clouds."""

    needs_density = False

    def __init__(self, n_clouds: int = 100, cloud_size: int = 100):
        self.n_clouds = _positive(n_clouds, "eval.metrics.chamfer.n_clouds")
        self.cloud_size = _positive(cloud_size, "eval.metrics.chamfer.cloud_size")
        self.min_samples = self.n_clouds * self.cloud_size

    def __call__(self, samples, dataset: Dataset, rng):
        gen = samples[: self.min_samples].reshape(self.n_clouds, self.cloud_size, -1)
        ref = dataset.sample(self.min_samples, rng).reshape(self.n_clouds, self.cloud_size, -1)
        total = 0.0
        for a, b in zip(gen, ref, strict=True):
            total += np.mean(KDTree(b).query(a)[0] ** 2) + np.mean(KDTree(a).query(b)[0] ** 2)
        return {"chamfer": float(total / self.n_clouds)}


class EMD:
    """Earth mover's distance between the first n generated points and n fresh reference points: the
    exact optimal one-to-one assignment (scipy linear_sum_assignment) under Euclidean cost, reported as
    the mean matched distance."""

    needs_density = False

    def __init__(self, n: int = 2000):
        self.n = self.min_samples = _positive(n, "eval.metrics.emd.n")

    def __call__(self, samples, dataset: Dataset, rng):
        cost = cdist(samples[: self.n], dataset.sample(self.n, rng))
        rows, cols = linear_sum_assignment(cost)
        return {"emd": float(cost[rows, cols].mean())}
