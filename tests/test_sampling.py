"""Reverse-time sampling with the exact score recovers gmm8: mass and mean of every mode."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.models import Oracle
from tests.conftest import compose_config, options

N = 8_000


@pytest.mark.parametrize("sde_name", options("sde"))
def test_oracle_sampling_recovers_every_mode(sde_name):
    cfg = compose_config([f"sde={sde_name}", "model=oracle", "sampler.steps=500"])
    dataset, sde, sampler = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.sampler)
    x, snapshots, nfe = sampler.sample(Oracle(sde, dataset).score, sde, (N, 2), torch.Generator().manual_seed(0))
    assert nfe == 500 and len(snapshots) == cfg.sampler.snapshots
    assert snapshots[0][0] == pytest.approx(sde.T) and snapshots[-1][0] == pytest.approx(sde.eps)
    x = x.numpy()
    means = dataset.means.numpy()
    nearest = ((x[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    mass = np.bincount(nearest, minlength=len(means)) / N
    # Binomial standard error of a 1/8 mass at N = 8000 is 0.0037: allow ~5 of them.
    assert mass == pytest.approx(np.full(len(means), 1 / 8), abs=0.02)
    for k, mu in enumerate(means):
        # Mode std 0.5 over ~1000 points: the mean is known to ~0.016; allow 0.08.
        assert x[nearest == k].mean(0) == pytest.approx(mu, abs=0.08), (sde_name, k)
    # Nothing stranded between the modes (true mass beyond 2 from every centre is ~2e-4).
    dist = np.sqrt(((x[:, None] - means[None]) ** 2).sum(-1)).min(1)
    assert (dist > 2.0).mean() < 0.005


def test_sampler_keeps_trailing_dimensions():
    cfg = compose_config(["dataset=gmm", "model=oracle", "sampler.steps=50", "sampler.snapshots=3"])
    dataset, sde, sampler = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.sampler)
    x, snapshots, _ = sampler.sample(Oracle(sde, dataset).score, sde, (100, dataset.dim), torch.Generator())
    assert x.shape == (100, 3) and [s.shape for _, s in snapshots] == [(100, 3)] * 3
