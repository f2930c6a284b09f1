"""The oracle's closed-form score equals the autograd gradient of the closed-form log p_t."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.data import GaussianMixture
from diffusion_runner.errors import ConfigError
from diffusion_runner.score import Oracle
from tests.conftest import compose_config, options

MIXTURES = {
    "gmm8": lambda: instantiate(compose_config().dataset),
    "diag3d": lambda: GaussianMixture([[0, 0, 0], [2, -1, 1], [-1, 3, 0]], [[0.3, 1.0, 0.5], [1, 1, 1], [0.2, 0.2, 2]],
                                      [0.2, 0.5, 0.3]),
}


@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize("sde_name", options("sde"))
def test_oracle_score_is_gradient_of_log_density(mixture, sde_name):
    dataset = MIXTURES[mixture]()
    sde = instantiate(compose_config([f"sde={sde_name}"]).sde)
    oracle = Oracle(sde, dataset)
    gen = torch.Generator().manual_seed(0)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(64, generator=gen, dtype=torch.float64)
    x = (3 * torch.randn(64, dataset.dim, generator=gen, dtype=torch.float64)).requires_grad_()
    log_p = dataset.log_prob(x, *sde.marginal(t))
    (grad,) = torch.autograd.grad(log_p.sum(), x)
    assert torch.allclose(oracle.score(x.detach(), t), grad, rtol=1e-6, atol=1e-8)


def test_log_prob_integrates_to_one():
    dataset = MIXTURES["gmm8"]()
    grid = torch.linspace(-8, 8, 401, dtype=torch.float64)
    xx, yy = torch.meshgrid(grid, grid, indexing="ij")
    density = dataset.log_prob(torch.stack([xx.flatten(), yy.flatten()], 1)).exp()
    assert float(density.sum() * (grid[1] - grid[0]) ** 2) == pytest.approx(1.0, abs=1e-3)


def test_oracle_refuses_a_dataset_without_density():
    cfg = compose_config(["dataset=swiss_roll", "model=oracle"])
    with pytest.raises(ConfigError, match="model=oracle"):
        Oracle(instantiate(cfg.sde), instantiate(cfg.dataset))


@pytest.mark.parametrize("mixture", sorted(MIXTURES))
@pytest.mark.parametrize("sde_name", options("sde"))
def test_oracle_conditional_score_is_gradient_of_the_components_log_density(mixture, sde_name):
    """Given labels, the oracle's score is grad_x log p_t(x | y), y's component alone (dataset.condition([y]))."""
    dataset = MIXTURES[mixture]()
    sde = instantiate(compose_config([f"sde={sde_name}"]).sde)
    gen = torch.Generator().manual_seed(0)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(64, generator=gen, dtype=torch.float64)
    x = (3 * torch.randn(64, dataset.dim, generator=gen, dtype=torch.float64)).requires_grad_()
    y = torch.randint(dataset.n_classes, (64,), generator=gen)
    log_p = sum(dataset.condition([k]).log_prob(x, *sde.marginal(t))[y == k].sum() for k in range(dataset.n_classes))
    (grad,) = torch.autograd.grad(log_p, x)
    assert torch.allclose(Oracle(sde, dataset).score(x.detach(), t, y), grad, rtol=1e-6, atol=1e-8)


def test_labelled_samples_come_from_their_component():
    dataset = MIXTURES["diag3d"]()
    x, y = dataset.sample_labeled(30_000, np.random.default_rng(0))
    assert np.array_equal(x, dataset.sample(30_000, np.random.default_rng(0)))
    for k in range(dataset.n_classes):
        assert np.allclose(x[y == k].mean(0), dataset.means[k].numpy(), atol=0.06)
        assert np.allclose(x[y == k].std(0), dataset.stds[k].numpy(), rtol=0.05)
