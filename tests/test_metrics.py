"""Metrics on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hydra.utils import instantiate

from diffusion_runner.data import Dataset, GaussianMixture
from diffusion_runner.errors import ConfigError
from diffusion_runner.metrics import EMD, KLKDE, W2, Chamfer, EvalContext, Strays
from tests.conftest import compose_config


class Fixed(Dataset):
    """A 'dataset' that returns the same points every time (the reference set of a test)."""

    def __init__(self, points):
        self.points = np.asarray(points, dtype=np.float32)
        self.dim = self.points.shape[1]

    def sample(self, n, rng):
        return self.points[:n]


def ctx(samples, dataset, rng=None):
    """What a sample metric sees: no model is needed."""
    return EvalContext(samples, dataset, rng, None, None, "cpu")


@pytest.fixture
def cloud():
    return np.random.default_rng(0).normal(size=(400, 2)).astype(np.float32)


def test_identical_sets_have_zero_distance(cloud):
    rng = np.random.default_rng(1)
    assert Chamfer(n_clouds=4, cloud_size=100)(ctx(cloud, Fixed(cloud), rng))["chamfer"] == 0.0
    assert EMD(n=400)(ctx(cloud, Fixed(cloud), rng))["emd"] == pytest.approx(0.0, abs=1e-6)


def test_emd_of_a_shifted_set_is_the_shift(cloud):
    shift = np.array([0.3, -0.4], dtype=np.float32)  # |shift| = 0.5; the identity matching is optimal
    assert EMD(n=400)(ctx(cloud + shift, Fixed(cloud), None))["emd"] == pytest.approx(0.5, rel=1e-5)


def test_w2_of_a_shuffled_set_is_zero_and_of_a_shifted_set_the_shift(cloud):
    # For squared cost a translate's optimal pairing is the identity: W2 = |shift| = 5 exactly.
    shuffled = cloud[np.random.default_rng(1).permutation(len(cloud))]
    assert W2.distance(shuffled, cloud) == pytest.approx(0.0, abs=1e-6)
    assert W2.distance(cloud + np.array([3.0, 4.0], dtype=np.float32), cloud) == pytest.approx(5.0, rel=1e-5)


@pytest.mark.parametrize("name", ["gmm8", "gmm", "moons", "swiss_roll", "circles", "checkerboard"])
def test_two_draws_of_every_points_dataset_are_independent_so_the_w2_floor_is_positive(name):
    """A dataset draws independent points (sklearn's moons and circles alone would place them evenly, twice alike)."""
    dataset = instantiate(compose_config([f"dataset={name}"]).dataset)
    out = W2(n=500)(ctx(np.zeros((500, dataset.dim), np.float32), dataset, np.random.default_rng(0)))
    assert out["w2_floor"] > 0.05, out


def test_chamfer_of_single_point_clouds_is_twice_the_squared_distance(cloud):
    shift = np.array([1.0, 2.0], dtype=np.float32)
    cd = Chamfer(n_clouds=400, cloud_size=1)(ctx(cloud + shift, Fixed(cloud), None))["chamfer"]
    assert cd == pytest.approx(2 * 5.0, rel=1e-5)


def test_chamfer_of_a_far_shifted_cloud():
    a = np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)
    b = a + np.array([10, 0], dtype=np.float32)
    # Every point's nearest neighbour in the other cloud: distances^2 {81, 100, 101} and {81, 100, 101} -> CD = 2*94
    nearest_a = np.min(((a[:, None] - b[None]) ** 2).sum(-1), 1).mean()
    nearest_b = np.min(((b[:, None] - a[None]) ** 2).sum(-1), 1).mean()
    cd = Chamfer(n_clouds=1, cloud_size=3)(ctx(b, Fixed(a), None))["chamfer"]
    assert cd == pytest.approx(nearest_a + nearest_b) and cd > 100


def gaussian_kl(mu, var_p, d):
    """KL(N(0, I) || N(mu, var_p I)) in d dimensions."""
    return 0.5 * (d / var_p + float(np.dot(mu, mu)) / var_p - d + d * math.log(var_p))


def test_kl_kde_between_two_gaussians_matches_closed_form():
    # q = N(0, I); generated ~ N(mu, I). Scott's KDE of n points with unit covariance is N(mu, (1 + h^2) I)
    # in expectation, h^2 = n^(-2/(d+4)), so KL(q || p_hat) ~ KL(N(0, I) || N(mu, (1 + h^2) I)). The KDE's own
    # sampling noise adds up to ~0.01 nats here (E log p_hat < log E p_hat; more in q's tails for larger shifts),
    # the sample mean ~0.005 and the Monte Carlo over 5000 draws ~0.008 more: tolerance 0.025.
    d, n, mu = 2, 20_000, np.array([0.6, 0.0])
    q = GaussianMixture([[0.0, 0.0]], [1.0])
    rng = np.random.default_rng(3)
    generated = rng.normal(size=(n, d)) + mu
    h2 = n ** (-2 / (d + 4))
    out = KLKDE(n_reference=5_000)(ctx(generated, q, rng))
    assert out["kl_kde"] == pytest.approx(gaussian_kl(mu, 1 + h2, d), abs=0.025)
    assert out["kl_kde_floor"] == pytest.approx(gaussian_kl(np.zeros(d), 1 + h2, d), abs=0.025)
    assert out["kl_kde"] > out["kl_kde_floor"] + 0.1
    further = KLKDE(n_reference=5_000)(ctx(generated + mu, q, rng))["kl_kde"]
    assert further > out["kl_kde"] + 0.3


def test_strays_count_the_samples_beyond_factor_times_the_datas_radius():
    reference = Fixed([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # centre 0, radius 1
    samples = np.array([[0.5, 0.5], [2.9, 0.0], [0.0, -3.5], [10.0, 0.0]], dtype=np.float32)
    out = Strays(n_reference=4, factor=3.0)(ctx(samples, reference, np.random.default_rng(0)))
    assert out == {"strays": 2, "radius_ratio": pytest.approx(10.0)}
    with pytest.raises(ConfigError, match="eval.metrics.strays.factor: must be a number >= 1"):
        Strays(factor=0.5)
