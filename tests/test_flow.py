"""The flow family: each matcher's conditional path and target velocity, the minibatch couplings, the flow's
likelihood against a closed form, and the one-line errors of a source, a matcher and a sampler that do not fit."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffusion_runner.__main__ import config_error
from diffusion_runner.flow import CFM, ExactOT, SchrodingerBridge, VariancePreserving
from diffusion_runner.flow.couplings import entropic_plan, exact_pairing, squared_costs
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from tests.conftest import all_options, compose_config
from tests.test_families import SMALL

MATCHERS = [CFM(0.1), ExactOT(0.1), SchrodingerBridge(0.5), VariancePreserving(0.1)]


def pairs(n=64, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g, dtype=torch.float64), 2 + torch.randn(n, dim, generator=g,
                                                                                  dtype=torch.float64)


@pytest.mark.parametrize("matcher", MATCHERS, ids=lambda m: type(m).__name__)
def test_every_matchers_path_runs_from_x0_at_t0_to_x1_at_t1(matcher):
    x0, x1 = pairs()
    for t, end in ((0.0, x0), (1.0, x1)):
        assert torch.allclose(matcher.mean(x0, x1, torch.full((len(x0),), t, dtype=torch.float64)), end, atol=1e-12)
    # The bridge pins both ends; the others keep a width sigma (the smoothing of CFM's paths).
    ends = matcher.std(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(ends, torch.zeros(2, dtype=torch.float64) if matcher.learns_score
                          else torch.full((2,), matcher.sigma, dtype=torch.float64))


@pytest.mark.parametrize("matcher", MATCHERS, ids=lambda m: type(m).__name__)
def test_every_matchers_target_velocity_is_the_time_derivative_of_its_path(matcher):
    x0, x1 = pairs()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.rand(len(x0), generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.9 + 0.05
    h = 1e-6
    xt, ut = matcher.path(x0, x1, t, eps)
    derivative = (matcher.path(x0, x1, t + h, eps)[0] - matcher.path(x0, x1, t - h, eps)[0]) / (2 * h)
    assert torch.allclose(ut, derivative, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(xt, matcher.mean(x0, x1, t))  # the noise is in the path


@pytest.mark.parametrize("n", [2, 3, 5, 7])
@pytest.mark.parametrize("seed", range(4))
def test_the_exact_pairing_is_the_permutation_of_least_squared_cost(n, seed):
    x0, x1 = pairs(n, 2, seed)
    cost = squared_costs(x0, x1)
    p = exact_pairing(x0, x1)
    assert sorted(p.tolist()) == list(range(n))
    best = min(sum(float(cost[q[i], i]) for i in range(n)) for q in itertools.permutations(range(n)))
    assert float(((x0[p] - x1) ** 2).sum()) == pytest.approx(best, rel=1e-12)


def test_the_entropic_plan_has_uniform_marginals_and_tends_to_the_exact_pairing():
    x0, x1 = pairs(12, 2, 3)
    uniform = torch.full((12,), 1 / 12, dtype=torch.float64)
    for reg in (0.1, 1.0, 100.0):
        plan = entropic_plan(x0, x1, reg)
        assert torch.allclose(plan.sum(0), uniform, rtol=1e-4) and torch.allclose(plan.sum(1), uniform, rtol=1e-4)
    # Small reg: near the exact permutation (n entries of 1/n); large reg: near the independent coupling (1/n^2).
    exact = torch.zeros(12, 12, dtype=torch.float64)
    exact[exact_pairing(x0, x1), torch.arange(12)] = 1 / 12
    assert (entropic_plan(x0, x1, 0.01) - exact).abs().max() * 12 < 0.05
    assert torch.allclose(entropic_plan(x0, x1, 1e4), torch.full((12, 12), 1 / 144, dtype=torch.float64), rtol=1e-2)


def test_a_learned_flow_from_a_gaussian_to_a_gaussian_has_the_closed_form_likelihood(tmp_path):
    """N(0, I) -> N(m, 0.6^2 I) in 2-D: KL(q || p_theta) = E_q[log q - log p_theta] by the CNF's ODE, against q's
    closed-form density, is within a few of its standard errors of 0 (and the nll of q's entropy)."""
    results = {}
    gaussian = ["dataset=gmm", "dataset.means=[[1.0,-0.5]]", "dataset.stds=[0.6]", "dataset.weights=[1.0]"]
    overrides = [o for o in SMALL["flow"] if not o.startswith(("train.steps=", "eval.metrics.likelihood."))]
    run(compose_config(["family=flow", *gaussian, *overrides, "train.steps=1500",
                        "eval.metrics.likelihood.n_points=1000", "eval.metrics.likelihood.steps=20"]),
        tmp_path, NoLogger(), results)
    entropy = math.log(2 * math.pi * math.e * 0.6**2)  # 2-D: 2 * (1/2) log(2 pi e s^2)
    assert results["nll_kind"] == "ode" and results["data_entropy"] == pytest.approx(entropy, abs=0.1)
    assert abs(results["kl_ode"]) < max(3 * results["kl_ode_se"], 0.02), results
    assert results["kl_ode"] > -3 * results["kl_ode_se"]


@pytest.mark.parametrize("overrides", [
    ["matcher=ot_cfm", "sampler.method=euler"],
    ["matcher=sb_cfm", "sampler=flow_sde"],
    ["matcher=vp", "sampler.method=RK45", "sampler.rtol=1e-3", "sampler.atol=1e-3"],
], ids=["ot_cfm-euler", "sb_cfm-sde", "vp-RK45"])
def test_every_matcher_and_sampler_runs_a_short_job_to_its_transport_metrics(overrides, tmp_path):
    results = {}
    run(compose_config(["family=flow", *SMALL["flow"], *overrides]), tmp_path, NoLogger(), results)
    assert results["nfe"] > 0 and results["transport_ratio"] >= 1 - 1e-9, results
    assert all(math.isfinite(results[f"w2_euler_{k}"]) for k in (5, 10, 20))
    assert (tmp_path / "paths.png").exists()


def test_every_dataset_option_is_also_a_source_option():
    assert all_options("source") == sorted([*all_options("dataset"), "gaussian"])


@pytest.mark.parametrize("overrides,message", [
    (["family=flow", "source=gmm"], "source: GaussianMixture gives samples of shape (3,), the dataset GaussianMixture "
                                    "of shape (2,)"),
    (["source=moons"], "source: family diffusion_runner.score.Score starts from its own prior; a dataset as the "
                       "source needs family=flow"),
    (["source.std=2"], "source: family diffusion_runner.score.Score starts from its own prior; source.std and "
                       "source.dim change the start of family=flow only"),
    (["family=flow", "source=moons", "source.scale=-1"], "source.scale: must be positive, got -1"),
    (["+eval.metrics.transport._target_=diffusion_runner.flow.Transport"],
     "eval.metrics.transport: Transport measures a diffusion_runner.flow.model.VelocityField, not a Preconditioned"),
    (["+matcher=cfm"], "matcher: unknown key (family diffusion_runner.score.Score takes"),
    (["family=flow", "sampler=flow_sde"], "sampler: flow_sde samples the bridge's SDE, which needs the score that CFM "
                                          "does not learn"),
    (["family=flow", "sampler=euler_maruyama"], "sampler: diffusion_runner.score.samplers.EulerMaruyama is not a "
                                                "diffusion_runner.flow.samplers.FlowSampler"),
    (["family=flow", "matcher.sigma=0"], "matcher.sigma: must be a number > 0, got 0"),
    (["family=flow", "matcher=sb_cfm", "matcher.sigma=-0.5"], "matcher.sigma: must be a number > 0, got -0.5"),
    (["family=flow", "sampler.method=rk4"], "sampler.method: 'rk4' is not one of"),
])
def test_a_source_matcher_or_sampler_that_does_not_fit_is_one_line_naming_the_key(overrides, message, tmp_path):
    family = overrides[0].split("=")[1] if overrides[0].startswith("family=") else "score"
    with pytest.raises(Exception) as info:
        run(compose_config([*SMALL[family], *overrides]), tmp_path, NoLogger(), {})
    line = config_error(info.value)
    assert line is not None and "\n" not in line and line.startswith(message), line
    assert not (tmp_path / "checkpoint.pt").exists()
