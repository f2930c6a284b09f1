"""Evaluation metrics. Each returns a dict of name -> float and declares how a report should read each name.

Sample metrics compare generated points with fresh reference draws of the dataset (never the training set);
the likelihood metric (diffusion_runner.likelihood) evaluates the model itself on fresh draws. Both are called with an
EvalContext; a metric that looks at samples sets `min_samples`, and the caller generates at least that many.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.spatial import KDTree
from scipy.spatial.distance import cdist
from scipy.stats import gaussian_kde

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Model


@dataclass(frozen=True)
class Output:
    """How a report reads one number a metric returns."""

    better: str | None = "lower"  # "lower" or "higher" is better; None for a reference value, not a score
    vs_oracle: bool = True  # compared with the oracle row: the excess over it, paired by seed
    ratio: bool = True  # also the ratio of means (meaningful for a positive score)
    floor_of: str | None = None  # the value this reference sets for another score: no model can go below it


@dataclass
class EvalContext:
    samples: np.ndarray  # the generated points, (N, ...) float32
    dataset: Dataset  # what the samples should follow (for conditional samples, the requested components)
    rng: np.random.Generator  # the metric's own evaluation stream
    model: Model  # the model the samples were drawn from, in evaluation mode
    device: torch.device
    labels: np.ndarray | None = None  # the label each sample was requested with; None when unconditional
    training: Dataset | None = None  # the dataset the labels index (the training set's distribution)
    guidance: float = 0.0  # the classifier-free guidance weight the samples were drawn with


class Metric(ABC):
    needs_density: ClassVar[bool] = False  # needs the dataset's closed-form density (skipped without one)
    needs_labels: ClassVar[bool] = False  # scores conditional samples (skipped for unconditional ones)
    needs_classes: ClassVar[bool] = False  # needs a dataset whose points have classes (skipped without)
    needs_model_density: ClassVar[bool] = False  # evaluates the model's density (skipped for several labels)
    needs_source_density: ClassVar[bool] = False  # needs the source's density (skipped for a source without one)
    outputs: ClassVar[dict[str, Output]]
    min_samples: int = 0  # generated samples it looks at (0: none)
    max_dim: int | None = None  # the most data dimensions it can serve (skipped, with a warning, beyond)
    kinds: ClassVar[tuple[str, ...]] = ("points", "images")  # the kinds of data it serves (Dataset.kind)
    model_type: ClassVar[type] = Model  # the models it can measure (a config error for another)

    @abstractmethod
    def __call__(self, ctx: EvalContext) -> dict[str, float | str]:
        """name -> value for the names in `outputs` (and any extra diagnostics: numbers, or text naming a choice the
        metric made, listed in diffusion_runner.rundir.TEXT_FIELDS)."""


def _positive(value: int, key: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}: must be an integer >= 1, got {value!r}")
    return value


class KLKDE(Metric):
    """KL(q || p_hat) = E_q[log q - log p_hat] in nats, estimated by Monte Carlo over `n_reference`
    fresh draws of q (the true density). p_hat is scipy's gaussian_kde of all generated samples with
    Scott's rule: bandwidth matrix n^(-2/(d+4)) times the samples' covariance.

    Also reports `kl_kde_floor`: the same estimate with p_hat built from as many fresh true samples,
    i.e. the bias of the KDE itself at that sample size.

    A KDE's error shrinks like n^(-4/(d+4)): beyond `max_dim` dimensions (default 6) its estimate says more about
    the bandwidth than about the samples, so the metric is skipped with a warning there.
    """

    kinds = ("points",)  # distances between pixels of whole images say little about them

    needs_density = True
    outputs = {"kl_kde": Output(), "kl_kde_floor": Output(better=None, vs_oracle=False, floor_of="kl_kde")}
    min_samples = 10  # a KDE in a few dimensions needs a handful of points

    def __init__(self, n_reference: int = 10_000, max_dim: int = 6):
        self.n_reference = _positive(n_reference, "eval.metrics.kl_kde.n_reference")
        self.max_dim = _positive(max_dim, "eval.metrics.kl_kde.max_dim")

    def _kl(self, points: np.ndarray, y: np.ndarray, log_q: np.ndarray) -> float:
        log_p = gaussian_kde(points.T.astype(np.float64)).logpdf(y.T)
        return float(np.mean(log_q - log_p))

    def __call__(self, ctx):
        y = ctx.dataset.sample(self.n_reference, ctx.rng).astype(np.float64)
        log_q = ctx.dataset.log_prob(torch.from_numpy(y)).numpy()
        floor_points = ctx.dataset.sample(len(ctx.samples), ctx.rng)
        return {"kl_kde": self._kl(ctx.samples, y, log_q), "kl_kde_floor": self._kl(floor_points, y, log_q)}


class Chamfer(Metric):
    """HelloScore's chamfer distance: the first n_clouds * cloud_size generated points and as many fresh
    reference points are cut into n_clouds pairs of clouds A, B of cloud_size points;
    CD(A, B) = mean_a min_b |a - b|^2 + mean_b min_a |a - b|^2 (squared Euclidean); the mean over clouds."""

    kinds = ("points",)  # distances between pixels of whole images say little about them

    outputs = {"chamfer": Output()}

    def __init__(self, n_clouds: int = 100, cloud_size: int = 100):
        self.n_clouds = _positive(n_clouds, "eval.metrics.chamfer.n_clouds")
        self.cloud_size = _positive(cloud_size, "eval.metrics.chamfer.cloud_size")
        self.min_samples = self.n_clouds * self.cloud_size

    def __call__(self, ctx):
        gen = ctx.samples[: self.min_samples].reshape(self.n_clouds, self.cloud_size, -1)
        ref = ctx.dataset.sample(self.min_samples, ctx.rng).reshape(self.n_clouds, self.cloud_size, -1)
        total = 0.0
        for a, b in zip(gen, ref, strict=True):
            total += np.mean(KDTree(b).query(a)[0] ** 2) + np.mean(KDTree(a).query(b)[0] ** 2)
        return {"chamfer": float(total / self.n_clouds)}


class EMD(Metric):
    """Earth mover's distance between the first n generated points and n fresh reference points: the
    exact optimal one-to-one assignment (scipy linear_sum_assignment) under Euclidean cost, reported as
    the mean matched distance."""

    kinds = ("points",)  # distances between pixels of whole images say little about them

    outputs = {"emd": Output()}

    def __init__(self, n: int = 2000):
        self.n = self.min_samples = _positive(n, "eval.metrics.emd.n")

    def __call__(self, ctx):
        cost = cdist(ctx.samples[: self.n], ctx.dataset.sample(self.n, ctx.rng))
        rows, cols = linear_sum_assignment(cost)
        return {"emd": float(cost[rows, cols].mean())}


class W2(Metric):
    """The 2-Wasserstein distance between the first n generated points and n fresh reference points: the exact
    optimal assignment (scipy linear_sum_assignment) under squared Euclidean cost, W2 = sqrt(mean matched cost), in
    the data's units. `w2_floor` is the same between the reference and n other fresh points: what n points of the
    true distribution score (W2 between samples of n is biased upward, so state n). Both sets come from one draw of
    2n points, so a dataset of rows gives them disjoint held-out rows when it holds 2n of them."""

    kinds = ("points",)  # distances between pixels of whole images say little about them

    outputs = {"w2": Output(), "w2_floor": Output(better=None, vs_oracle=False, floor_of="w2")}

    def __init__(self, n: int = 2000):
        self.n = self.min_samples = _positive(n, "eval.metrics.w2.n")

    @staticmethod
    def distance(a: np.ndarray, b: np.ndarray) -> float:
        cost = cdist(a.reshape(len(a), -1), b.reshape(len(b), -1), "sqeuclidean")
        rows, cols = linear_sum_assignment(cost)
        return float(np.sqrt(cost[rows, cols].mean()))

    def __call__(self, ctx):
        reference, other = np.split(ctx.dataset.sample(2 * self.n, ctx.rng), 2)
        return {"w2": self.distance(ctx.samples[: self.n], reference), "w2_floor": self.distance(other, reference)}


class OnMode(Metric):
    """`on_mode`: the fraction of conditional samples whose most probable component of the dataset
    (GaussianMixture.classify: argmax_k w_k N(x; mu_k, std_k^2)) is the label they were requested with."""

    needs_density = True
    needs_labels = True
    outputs = {"on_mode": Output(better="higher", ratio=False)}
    min_samples = 1

    def __call__(self, ctx):
        found = ctx.training.classify(torch.from_numpy(ctx.samples).double()).numpy()
        return {"on_mode": float(np.mean(found == ctx.labels))}


class Strays(Metric):
    """Samples far outside the data: with R the largest distance of `n_reference` fresh reference draws from their
    mean (the data's radius), `strays` is the number of generated samples farther than `factor` R from that mean,
    and `radius_ratio` the farthest sample's distance over R (about 1 for a good sampler; an oracle gives about 1
    too, since its samples follow the data). A few strays can blow chamfer and emd up many times over."""

    outputs = {"strays": Output(ratio=False), "radius_ratio": Output(vs_oracle=False, ratio=False)}
    min_samples = 1

    def __init__(self, n_reference: int = 10_000, factor: float = 3.0):
        self.n_reference = _positive(n_reference, "eval.metrics.strays.n_reference")
        if isinstance(factor, bool) or not isinstance(factor, int | float) or not factor >= 1:
            raise ConfigError(f"eval.metrics.strays.factor: must be a number >= 1, got {factor!r}")
        self.factor = float(factor)

    def __call__(self, ctx):
        reference = ctx.dataset.sample(self.n_reference, ctx.rng).reshape(self.n_reference, -1).astype(np.float64)
        center = reference.mean(axis=0)
        radius = np.linalg.norm(reference - center, axis=1).max()
        distance = np.linalg.norm(ctx.samples.reshape(len(ctx.samples), -1) - center, axis=1)
        return {"strays": int((distance > self.factor * radius).sum()), "radius_ratio": float(distance.max() / radius)}
