"""Gaussian mixtures in any dimension, with their exact log-density, and the log-density and score of their
marginal x_t = m x_0 + s z under any linear SDE, which is again a Gaussian mixture with component
k ~ N(m mu_k, (m^2 std_k^2 + s^2) I)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch
from torch import Tensor

from diffusion_runner.data.base import Dataset
from diffusion_runner.errors import ConfigError


class GaussianMixture(Dataset):
    """sum_k w_k N(mu_k, diag(std_k^2)) in any dimension.

    means: K x D; stds: one number, or K entries each a number (isotropic) or a D-vector (diagonal);
    weights: K non-negative numbers,
    normalised here (default uniform).
    """

    has_density = True

    def __init__(self, means, stds, weights=None):
        try:
            means = np.asarray(means, dtype=np.float64)
        except ValueError as e:
            raise ConfigError("dataset.means: expected a K x D list of lists of numbers") from e
        if means.ndim != 2 or means.shape[0] == 0:
            raise ConfigError(f"dataset.means: expected a non-empty K x D list of lists, got shape {means.shape}")
        k, d = means.shape
        stds = _component_stds(stds, k, d)
        weights = np.ones(k) if weights is None else np.asarray(weights, dtype=np.float64)
        if weights.shape != (k,) or np.any(weights < 0) or weights.sum() <= 0:
            raise ConfigError(f"dataset.weights: expected {k} non-negative numbers with a positive sum")
        self.dim = d
        self.means = torch.as_tensor(means)
        self.stds = torch.as_tensor(stds)
        self.log_weights = torch.as_tensor(np.log(weights / weights.sum()))
        self.n_classes = k  # a sample's label is its component

    def sample(self, n, rng):
        return self.sample_labeled(n, rng)[0]

    def sample_labeled(self, n, rng):
        w = self.log_weights.exp().numpy()
        comp = rng.choice(len(w), size=n, p=w / w.sum())
        z = rng.standard_normal((n, self.dim))
        return (self.means.numpy()[comp] + self.stds.numpy()[comp] * z).astype(np.float32), comp.astype(np.int64)

    def condition(self, labels) -> GaussianMixture:
        """The distribution of samples requested with these labels in equal shares: the mixture of those components,
        each with weight (its count in `labels`) / len(labels)."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        return GaussianMixture(self.means.numpy()[labels], self.stds.numpy()[labels], np.ones(len(labels)))

    def _components(self, x: Tensor, mean_coef: Tensor | float, std: Tensor | float):
        """Per-component log N(x; m mu_k, v_k) -> (log w_k + log N_k, x - m mu_k, v_k) for x of shape (B, D)."""
        mean_coef = torch.as_tensor(mean_coef, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        std = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1, 1, 1)
        means = self.means.to(x)
        var = mean_coef**2 * self.stds.to(x) ** 2 + std**2  # (B or 1, K, D)
        diff = x[:, None, :] - mean_coef * means  # (B, K, D)
        log_n = -0.5 * (diff**2 / var + torch.log(2 * math.pi * var)).sum(-1)
        return self.log_weights.to(x) + log_n, diff, var

    def log_prob(self, x: Tensor, mean_coef: Tensor | float = 1.0, std: Tensor | float = 0.0) -> Tensor:
        """log p_t(x) in nats for the marginal with coefficients (m, s); (1, 0) is the data density."""
        logits, _, _ = self._components(x, mean_coef, std)
        return torch.logsumexp(logits, dim=1)

    def score(self, x: Tensor, mean_coef: Tensor | float, std: Tensor | float) -> Tensor:
        """grad_x log p_t(x) = sum_k r_k(x) (m mu_k - x) / v_k, r_k the posterior responsibilities."""
        logits, diff, var = self._components(x, mean_coef, std)
        resp = torch.softmax(logits, dim=1)[..., None]
        return -(resp * diff / var).sum(1)

    def component_score(self, x: Tensor, mean_coef: Tensor | float, std: Tensor | float, y: Tensor) -> Tensor:
        """grad_x log p_t(x | y) = (m mu_y - x) / v_y for each point's own component y (batch,)."""
        _, diff, var = self._components(x, mean_coef, std)
        rows = torch.arange(len(x), device=x.device)
        return -diff[rows, y] / var.expand_as(diff)[rows, y]

    def classify(self, x: Tensor) -> Tensor:
        """The most probable component of each data point x (batch, D): argmax_k w_k N(x; mu_k, std_k^2)."""
        return self._components(x, 1.0, 0.0)[0].argmax(dim=1)


def _component_stds(stds, k: int, d: int) -> np.ndarray:
    """K x D array from one number, or K entries each a number (isotropic) or a D-vector (diagonal)."""
    entries = [stds] * k if isinstance(stds, numbers.Real) else list(stds)
    if len(entries) != k:
        raise ConfigError(f"dataset.stds: expected {k} entries (one per mean), got {len(entries)}")
    rows = []
    for entry in entries:
        row = np.asarray(entry, dtype=np.float64)
        row = np.full(d, float(row)) if row.ndim == 0 else row
        if row.shape != (d,) or np.any(row <= 0):
            raise ConfigError(f"dataset.stds: each entry must be a positive number or {d} positive numbers")
        rows.append(row)
    return np.stack(rows)


def ring_mixture(n_modes: int = 8, radius: float = 4.0, std: float = 0.5, weights=None) -> GaussianMixture:
    """n_modes isotropic Gaussians evenly spaced on a circle of the given radius, the first on the +x axis."""
    if n_modes < 1 or radius < 0 or not std > 0:
        raise ConfigError(f"dataset: need n_modes >= 1, radius >= 0 and std > 0, got {n_modes}, {radius}, {std}")
    angles = 2 * np.pi * np.arange(n_modes) / n_modes
    means = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return GaussianMixture(means, np.full(n_modes, std), weights)
