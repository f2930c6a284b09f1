"""Each SDE's closed-form marginal matches a simulated forward Euler-Maruyama path; the prior matches it at T."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_config, options

N_PATHS = 20_000
N_STEPS = 2_000
X0 = torch.tensor([1.5, -0.5])


def simulate(sde, checkpoints):
    """Forward Euler-Maruyama from x0 = X0 for N_PATHS paths; returns {t: x_t}."""
    gen = torch.Generator().manual_seed(0)
    x = X0.repeat(N_PATHS, 1).double()
    times = torch.linspace(0, sde.T, N_STEPS + 1, dtype=torch.float64)
    out = {}
    for i in range(N_STEPS):
        t, h = times[i], times[i + 1] - times[i]
        tt = t.repeat(N_PATHS)
        x = x + sde.drift(x, tt) * h + sde.diffusion(tt)[:, None] * h.sqrt() * torch.randn(x.shape, generator=gen,
                                                                                          dtype=torch.float64)
        for c in checkpoints:
            if i + 1 == round(c * N_STEPS):
                out[c] = x
    return out


@pytest.mark.parametrize("name", options("sde"))
def test_marginal_matches_simulated_forward_path(name):
    sde = instantiate(compose_config([f"sde={name}"]).sde)
    fractions = (0.05, 0.2, 0.5, 1.0)
    paths = simulate(sde, fractions)
    for frac in fractions:
        t = torch.tensor([frac * sde.T], dtype=torch.float64)
        m, s = (float(v) for v in sde.marginal(t))
        x = paths[frac]
        # Mean within 4 standard errors (plus a small Euler bias allowance), std within 3%.
        tol = 4 * s / math.sqrt(N_PATHS) + 0.01 * abs(m) * X0.abs().max()
        assert x.mean(0).tolist() == pytest.approx((m * X0).tolist(), abs=float(tol)), (name, frac)
        assert x.std(0).tolist() == pytest.approx([s, s], rel=0.03), (name, frac)


@pytest.mark.parametrize("name", options("sde"))
def test_prior_matches_marginal_at_T(name):
    cfg = compose_config([f"sde={name}"])
    sde, dataset = instantiate(cfg.sde), instantiate(cfg.dataset)
    m, s = sde.marginal(torch.full((40_000,), sde.T, dtype=torch.float64))
    x0 = torch.as_tensor(dataset.sample(40_000, np.random.default_rng(0)), dtype=torch.float64)
    x_T = m[:, None] * x0 + s[:, None] * torch.randn(x0.shape, generator=torch.Generator().manual_seed(0),
                                                     dtype=torch.float64)
    prior = sde.prior_std()
    assert prior == pytest.approx(float(s[0]))
    # gmm8 (scale ~2.9) pushed to T has the prior's spread within 5% (VE keeps the data: sigma_max ~ its diameter).
    assert x_T.std(0).tolist() == pytest.approx([prior, prior], rel=0.05)
    assert x_T.mean(0).abs().max() < 0.05 * prior
    x = sde.prior_sample((50_000, 2), torch.Generator().manual_seed(1))
    assert float(x.std()) == pytest.approx(prior, rel=0.02)
    assert float(sde.prior_logp(torch.zeros(1, 2))) == pytest.approx(-math.log(2 * math.pi * prior**2))


def test_marginal_starts_at_the_data():
    for name in options("sde"):
        sde = instantiate(compose_config([f"sde={name}"]).sde)
        m, s = sde.marginal(torch.zeros(1, dtype=torch.float64))
        assert float(m) == pytest.approx(1.0) and float(s) == pytest.approx(0.0, abs=1e-12), name
