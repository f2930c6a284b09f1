"""The probability-flow log-likelihood: closed forms, the oracle's true cross-entropy, Hutchinson vs exact."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.build import build
from diffusion_runner.data import GaussianMixture
from diffusion_runner.errors import ConfigError
from diffusion_runner.metrics import EvalContext
from diffusion_runner.score import Oracle
from diffusion_runner.score.likelihood import ODELikelihood as Likelihood
from diffusion_runner.score.likelihood import log_likelihood
from tests.conftest import compose_config

MU, STD0 = torch.tensor([1.5, -0.5], dtype=torch.float64), 0.7


def gaussian_flow_log_density(sde, x):
    """log p_theta(x) in closed form for data N(MU, STD0^2 I) and the exact score: the probability-flow ODE keeps
    (x_t / m_t - MU) / w_t fixed, w_t = sqrt(STD0^2 + sigma_t^2), so x_eps -> x_T is affine and
    log p_theta(x) = log N(x_T; 0, s_T^2 I) + D log(m_T w_T / (m_eps w_eps))."""
    (m0, s0), (m1, s1) = sde.coefficients(sde.eps), sde.coefficients(sde.T)
    w0, w1 = math.sqrt(STD0**2 + (s0 / m0) ** 2), math.sqrt(STD0**2 + (s1 / m1) ** 2)
    x_T = m1 * (MU + (x / m0 - MU) * w1 / w0)
    return sde.prior_logp(x_T) + x.shape[1] * math.log(m1 * w1 / (m0 * w0))


@pytest.mark.parametrize("T", [5.0, 1.0])
@pytest.mark.parametrize(("solver", "error"), [({"method": "RK45", "rtol": 1e-7, "atol": 1e-7}, 2e-4),
                                               ({"method": "rk4", "steps": 25}, 2e-4)])
def test_ode_likelihood_of_a_gaussian_under_ou_matches_the_closed_form(T, solver, error):
    """T = 1 leaves the prior N(0, I) visibly off the data's marginal at T; the closed form includes that too."""
    sde = instantiate(compose_config(["sde=ou", f"sde.T={T}"]).sde)
    data = GaussianMixture(MU[None].numpy(), [STD0])
    x = torch.as_tensor(data.sample(500, np.random.default_rng(0)))
    log_p, nfe = log_likelihood(Oracle(sde, data).score, sde, x, **solver)
    expected = gaussian_flow_log_density(sde, x.double())
    assert nfe > 0 and float((log_p - expected).abs().max()) < error
    true_density = data.log_prob(x.double(), *sde.coefficients(sde.eps))  # log p_eps, the data's own marginal
    gap = float((true_density - log_p).mean())  # KL from the prior's mismatch at T: ~0 at T = 5, not at T = 1
    assert (abs(gap) < 1e-3) if T == 5.0 else (gap > 0.1)


@pytest.mark.parametrize("sde_name", ["ddpm", "ou", "ve"])
def test_rk4_in_log_sigma_converges_at_fourth_order(sde_name):
    """Halving the step cuts the error against the closed form about 16-fold (more than 8-fold here), with 4
    evaluations a step."""
    sde = instantiate(compose_config([f"sde={sde_name}"]).sde)
    data = GaussianMixture(MU[None].numpy(), [STD0])
    x = torch.as_tensor(data.sample(200, np.random.default_rng(0)))
    expected = gaussian_flow_log_density(sde, x.double())
    errors = []
    for steps in (16, 32):
        log_p, nfe = log_likelihood(Oracle(sde, data).score, sde, x, method="rk4", steps=steps)
        assert nfe == 4 * steps
        errors.append(float((log_p - expected).abs().max()))
    assert errors[1] < errors[0] / 8, errors


def test_the_log_noise_clock_inverts_sigma_and_gives_its_rate():
    sde = instantiate(compose_config(["sde=ddpm"]).sde)
    u = torch.linspace(-6.0, 4.0, 11, dtype=torch.float64)
    t, rate = sde.log_noise_clock(u)
    assert torch.allclose(sde.noise_level(t).log(), u, atol=1e-10)
    h = 1e-6
    numeric = (sde.log_noise_clock(u + h)[0] - sde.log_noise_clock(u - h)[0]) / (2 * h)
    assert torch.allclose(rate, numeric, rtol=1e-5)


@pytest.mark.parametrize(("override", "message"), [
    ({"method": "euler"}, "eval.metrics.likelihood.method: 'euler' is not one of"),
    ({"steps": 0}, "eval.metrics.likelihood.steps: must be an integer >= 1, got 0"),
    ({"method": "RK45", "rtol": 0}, "eval.metrics.likelihood: rtol and atol must be positive"),
])
def test_bad_solver_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        Likelihood(**override)


@pytest.mark.parametrize("sde_name", ["ddpm", "ou", "subvp"])
def test_oracle_nll_is_the_true_cross_entropy(sde_name):
    """With the exact score, nll = E_q[-log q] (within 1%) and kl_ode ~ 0 (within its standard error)."""
    parts = build(compose_config([f"sde={sde_name}", "model=oracle"]))
    metric = Likelihood(n_points=2000)
    ctx = EvalContext(np.empty((0, 2)), parts.dataset, np.random.default_rng(0), parts.model, "cpu")
    out = metric(ctx)
    assert out["nll"] == pytest.approx(out["data_entropy"], rel=0.01)
    assert abs(out["kl_ode"]) < 3 * out["kl_ode_se"] + 1e-3
    # gmm8's entropy: log 8 + the entropy of N(0, 0.25 I), as the modes barely overlap.
    assert out["data_entropy"] == pytest.approx(math.log(8) + 1 + math.log(2 * math.pi * 0.25), abs=3 * out["nll_se"])
    assert out["nll_bpd"] == pytest.approx(out["nll"] / (2 * math.log(2)))


def test_hutchinson_agrees_with_the_exact_divergence_within_its_standard_error():
    parts = build(compose_config(["model=oracle"]))
    x = torch.as_tensor(parts.dataset.sample(1000, np.random.default_rng(1)))
    exact, _ = log_likelihood(parts.model.score, parts.model.sde, x)
    for probe in ("rademacher", "gaussian"):
        estimate, _ = log_likelihood(parts.model.score, parts.model.sde, x, divergence="hutchinson", probe=probe,
                                     generator=torch.Generator().manual_seed(2))
        diff = estimate - exact
        assert float(diff.std()) > 0  # a real estimate, not the exact value
        assert abs(float(diff.mean())) < 3 * float(diff.std()) / math.sqrt(len(x)), probe


def test_a_worse_model_has_a_larger_kl_ode():
    """An untrained network's density is far from q: kl_ode is large, and far beyond its standard error."""
    parts = build(compose_config([]))
    parts.model.eval().requires_grad_(False)
    ctx = EvalContext(np.empty((0, 2)), parts.dataset, np.random.default_rng(0), parts.model, "cpu")
    out = Likelihood(n_points=500, steps=5)(ctx)
    assert out["kl_ode"] > 0.5 and out["kl_ode"] > 10 * out["kl_ode_se"]
    assert out["nll"] == pytest.approx(out["data_entropy"] + out["kl_ode"], rel=1e-6)


def test_auto_divergence_is_exact_in_low_dimension_and_hutchinson_beyond():
    metric = Likelihood(exact_max_dim=10)
    assert [metric.divergence_for(d) for d in (1, 10, 11, 64)] == ["exact", "exact", "hutchinson", "hutchinson"]
    assert Likelihood(divergence="exact").divergence_for(64) == "exact"
    with pytest.raises(ConfigError, match="eval.metrics.likelihood.exact_max_dim: must be an integer >= 1"):
        Likelihood(exact_max_dim=0)
