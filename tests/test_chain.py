"""The discrete-time chain's mathematics against the DDPM and VDM notes' formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.chain.likelihood import ChainELBO, consistency_elbo, elbo_terms
from diffusion_runner.chain.model import ChainOracle
from diffusion_runner.chain.sampler import Ancestral, respaced
from diffusion_runner.chain.schedules import ConstantAlpha, Cosine, LinearBeta
from diffusion_runner.data import GaussianMixture
from diffusion_runner.metrics import EvalContext
from tests.conftest import compose_config

SCHEDULES = [LinearBeta(T=100), ConstantAlpha(alpha=0.95, T=100), Cosine(T=100)]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=type)
def test_q_xt_given_x0_in_closed_form_matches_the_chain_simulated_step_by_step(schedule):
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((100_000, 1), 1.5, dtype=torch.float64)
    x = x0.clone()
    for t in range(1, schedule.T + 1):
        x = (1 - schedule.beta[t]).sqrt() * x + schedule.beta[t].sqrt() * torch.randn(x.shape, generator=g,
                                                                                         dtype=torch.float64)
        if t in (1, 10, 50, 100):
            mean, var = schedule.abar[t].sqrt() * 1.5, 1 - schedule.abar[t]
            se = (var / len(x)).sqrt()
            assert abs(x.mean() - mean) < 5 * se
            assert abs(x.var() / var - 1) < 5 * np.sqrt(2 / len(x))


def test_the_constant_alpha_chain_has_abar_alpha_to_the_t_and_the_notes_posterior():
    s = ConstantAlpha(alpha=0.9, T=20)
    t = torch.arange(1, 21)
    assert torch.allclose(s.abar[1:], 0.9 ** t.double())
    c1, c2, var = s.posterior(t[1:])
    tt = t[1:].double()
    assert torch.allclose(c1, (1 - 0.9) * 0.9 ** ((tt - 1) / 2) / (1 - 0.9**tt))
    assert torch.allclose(c2, 0.9**0.5 * (1 - 0.9 ** (tt - 1)) / (1 - 0.9**tt))
    assert torch.allclose(var, (1 - 0.9) * (1 - 0.9 ** (tt - 1)) / (1 - 0.9**tt))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=type)
def test_the_posterior_is_the_gaussian_conditional_of_x_t_minus_1_given_x_t_and_x0(schedule):
    """By Bayes on the joint Gaussian (x_{t-1}, x_t) | x_0: mean = m_{t-1} + cov / var_t (x_t - m_t), var = var_{t-1}
    - cov^2 / var_t, with cov = sqrt(alpha_t) var_{t-1}."""
    t = torch.arange(2, schedule.T + 1)
    a, prev, abar = schedule.alpha[t], schedule.abar[t - 1], schedule.abar[t]
    x0, xt = 0.7, -0.4
    cov, var_t, var_prev = a.sqrt() * (1 - prev), 1 - abar, 1 - prev
    mean = prev.sqrt() * x0 + cov / var_t * (xt - abar.sqrt() * x0)
    c1, c2, var = schedule.posterior(t)
    assert torch.allclose(c1 * x0 + c2 * xt, mean) and torch.allclose(var, var_prev - cov**2 / var_t)


def mixture():
    return GaussianMixture(means=[[-2.0, 0.0], [2.0, 1.0]], stds=[0.5, 0.3], weights=[0.7, 0.3])


def test_the_elbo_terms_sum_to_the_total_and_vanish_with_the_exact_x0():
    dataset = mixture()
    oracle = ChainOracle(dataset, LinearBeta(T=100))
    x0 = torch.as_tensor(dataset.sample(300, np.random.default_rng(0)))
    terms = elbo_terms(oracle, x0, torch.Generator().manual_seed(0))
    assert set(terms) == {"prior", "reconstruction", "denoising"}
    total = sum(terms.values())
    assert torch.allclose(total, terms["prior"] + terms["reconstruction"] + terms["denoising"])
    # A model that knew x0 itself would match every posterior: its denoising KLs are zero.
    knows_x0 = ChainOracle(dataset, LinearBeta(T=100))
    knows_x0.forward = lambda xt, t: (x0, None)
    exact = elbo_terms(knows_x0, x0, torch.Generator().manual_seed(0))
    assert exact["denoising"].abs().max() < 1e-4 and terms["denoising"].mean() > 0.01


@pytest.mark.parametrize("variance", ["small", "large"])
def test_on_gaussian_data_the_elbo_is_at_most_the_exact_log_likelihood(variance):
    """Gaussian data and the exact posterior-mean x0: log p(x) is the Gaussian's, and the ELBO is below it (by more
    than the noise with the small variance, which is too small at the first steps)."""
    dataset = GaussianMixture(means=[[0.5, -0.5]], stds=[[0.8, 1.2]])
    oracle = ChainOracle(dataset, LinearBeta(T=200), variance=variance)
    x0 = torch.as_tensor(dataset.sample(4000, np.random.default_rng(0)))
    elbo = -sum(elbo_terms(oracle, x0, torch.Generator().manual_seed(0)).values()).double()
    gap = dataset.log_prob(x0.double()) - elbo
    se = float(gap.std()) / np.sqrt(len(x0))
    assert float(gap.mean()) > -3 * se
    if variance == "small":
        assert float(gap.mean()) > 3 * se


def test_the_consistency_form_estimates_the_same_elbo():
    """Both estimators have the same mean (their spread over draws for a fixed x_0 is measured by
    scripts/bench_chain.py; with the exact posterior mean the trajectory's log-ratios nearly cancel)."""
    dataset = mixture()
    oracle = ChainOracle(dataset, LinearBeta(T=50), variance="large")
    x0 = torch.as_tensor(dataset.sample(2000, np.random.default_rng(0)))

    def draws(estimate):
        return [estimate(torch.Generator().manual_seed(seed)).double() for seed in (0, 1)]

    denoising = draws(lambda g: sum(elbo_terms(oracle, x0, g).values()))
    consistency = draws(lambda g: consistency_elbo(oracle, x0, g))
    se = (float(denoising[0].var() + consistency[0].var()) / len(x0)) ** 0.5
    assert abs(float(denoising[0].mean() - consistency[0].mean())) < 4 * se
    assert abs(float(denoising[1].mean() - consistency[1].mean())) < 4 * se


def test_the_metric_reports_both_estimators_kl_on_the_same_points():
    """kl_elbo_consistency is the consistency form's -ELBO less the data's entropy, an upper bound on the KL like
    kl_elbo, and the two agree within their standard errors."""
    dataset = mixture()
    oracle = ChainOracle(dataset, LinearBeta(T=50), variance="large")
    ctx = EvalContext(np.empty((0, 2)), dataset, np.random.default_rng(0), oracle, "cpu")
    out = ChainELBO(n_points=2000, consistency=True)(ctx)
    assert out["kl_elbo_consistency"] == pytest.approx(out["nll_consistency"] - out["data_entropy"], abs=1e-9)
    se = float(np.hypot(out["kl_elbo_se"], out["kl_elbo_consistency_se"]))
    assert abs(out["kl_elbo"] - out["kl_elbo_consistency"]) < 4 * se
    assert out["kl_elbo_consistency"] > -3 * out["kl_elbo_consistency_se"]


@pytest.mark.parametrize("steps", [None, 100])
def test_ancestral_sampling_with_the_exact_posterior_mean_recovers_the_mode_weights(steps):
    dataset = mixture()
    oracle = ChainOracle(dataset, LinearBeta(T=1000))
    x = Ancestral(steps=steps).generate(oracle, (20_000, 2), None, torch.Generator().manual_seed(0), "cpu").x
    share = (dataset.classify(x.double()) == 0).double().mean().item()
    assert share == pytest.approx(0.7, abs=4 * np.sqrt(0.7 * 0.3 / 20_000) + 0.01)
    assert abs(x[:, 0].abs().mean().item() - 2.0) < 0.1


def test_respacing_visits_the_first_and_last_step():
    assert respaced(1000, None) == list(range(1000, 0, -1))
    steps = respaced(1000, 10)
    assert steps[0] == 1000 and steps[-1] == 1 and len(steps) == 10


def test_the_shipped_chain_builds_on_every_schedule():
    for schedule in ("linear", "constant_alpha", "cosine"):
        cfg = compose_config(["family=chain", f"schedule={schedule}"])
        model = instantiate(cfg.model, dataset=instantiate(cfg.dataset))
        assert model.T == 1000 and 0 < float(model.schedule.abar[-1]) < 1e-3
