"""Every sampler with the exact score recovers gmm8 under every SDE; the ODE samplers converge at their order;
grids and the trajectory callback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.build import build
from diffusion_runner.sampling import Snapshots
from diffusion_runner.score.grids import Karras, Log, Uniform
from diffusion_runner.score.samplers import DDIM, DPMSolverPP, Heun, ProbabilityFlowODE
from tests.conftest import compose_config, options

N = 8_000
# Fewer steps than the defaults keep the suite fast; each is still a converged setting of its sampler.
FAST = {"euler_maruyama": ["sampler.steps=500"], "reverse_diffusion": ["sampler.steps=500"],
        "pc": ["sampler.steps=250"], "ancestral": ["sampler.steps=500"], "ddim": [], "heun": [],
        "ode": ["sampler.rtol=1e-4", "sampler.atol=1e-4"], "annealed_langevin": [], "dpm_solver": []}


def test_every_sampler_option_is_covered():
    assert sorted(FAST) == options("sampler")


def mode_statistics(x: np.ndarray, means: np.ndarray):
    """(mass of each mode, std per coordinate of the points nearest each mode, fraction farther than 2 from all)."""
    nearest = ((x[:, None] - means[None]) ** 2).sum(-1).argmin(1)
    mass = np.bincount(nearest, minlength=len(means)) / len(x)
    stds = np.array([x[nearest == k].std(0) for k in range(len(means))])
    stranded = (np.sqrt(((x[:, None] - means[None]) ** 2).sum(-1)).min(1) > 2.0).mean()
    return mass, stds, stranded


@pytest.mark.parametrize("sde_name", options("sde"))
@pytest.mark.parametrize("sampler_name", sorted(FAST))
def test_oracle_sampling_recovers_every_mode(sampler_name, sde_name):
    overrides = [f"sde={sde_name}", "model=oracle", f"sampler={sampler_name}", *FAST[sampler_name]]
    if (sampler_name, sde_name) == ("ancestral", "ou"):
        # On OU's uniform grid (T = 5) each small-t step adds noise of variance ~2h = 0.01 per unit of 500 steps, and
        # the posterior-variance chain comes out under-dispersed (mode std 0.46 at 500 steps, 0.47 at 1000); the
        # log grid spaces the noise level evenly and recovers 0.498.
        overrides.append("sampler/grid=log")
    if sampler_name == "dpm_solver" and sde_name in ("ve", "subvp"):
        # 10 steps (the default, built for DDPM and OU) leave some mode stds at 0.41-0.45: their log grid spans
        # more decades of noise level per step. 20 steps recover them.
        overrides.append("sampler.steps=20")
    cfg = compose_config(overrides)
    parts = build(cfg)
    result = parts.sampler.sample(parts.model.score, parts.model.sde, (N, 2), torch.Generator().manual_seed(0))
    assert result.nfe > 0
    mass, stds, stranded = mode_statistics(result.x.numpy(), parts.dataset.means.numpy())
    # Binomial standard error of a 1/8 mass at N = 8000 is 0.0037: allow ~5 of them.
    assert mass == pytest.approx(np.full(8, 1 / 8), abs=0.02), (sampler_name, sde_name)
    # Each mode is N(mu_k, 0.5^2 I); the std of ~1000 points is known to ~2.2%: allow 8%.
    assert stds == pytest.approx(np.full_like(stds, 0.5), rel=0.08), (sampler_name, sde_name)
    assert stranded < 0.005  # the true mass beyond 2 from every centre is ~2e-4


def errors_by_steps(sampler_cls, sde_name, steps=(16, 32, 64, 128), **options):
    """Mean distance to the probability-flow ODE's solution by the adaptive solver in (t, x) at tight tolerances,
    from the same prior draws (DDIM, Heun and DPM-Solver++ step in EDM's variables (sigma, x / m): the same ODE)."""
    parts = build(compose_config([f"sde={sde_name}", "model=oracle"]))
    shape, seed = (1000, 2), torch.Generator().manual_seed
    reference = ProbabilityFlowODE(rtol=1e-9, atol=1e-9).sample(parts.model.score, parts.model.sde, shape, seed(0)).x
    options = {"grid": Karras(), **options}
    return [float((sampler_cls(steps=n, **options).sample(parts.model.score, parts.model.sde, shape, seed(0)).x
                   - reference).norm(dim=1).mean()) for n in steps]


@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
@pytest.mark.parametrize("sampler_cls,order", [(DDIM, 1), (Heun, 2)])
def test_ode_samplers_converge_at_their_order(sampler_cls, order, sde_name):
    """Doubling the steps divides the error by 2^order: the observed order over 16 -> 128 steps is within 0.25."""
    errors = errors_by_steps(sampler_cls, sde_name)
    observed = math.log2(errors[0] / errors[-1]) / (len(errors) - 1)
    assert observed == pytest.approx(order, abs=0.25), errors


@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
def test_dpm_solver_pp_converges_at_order_2_and_3m_closer_than_2m(sde_name):
    """2M's observed order over 16 -> 128 steps of the log grid is 2 within 0.25. 3M's is at least 2 (its first step
    is first order), with an error at least 2x smaller than 2M's at every step count."""
    two, three = (errors_by_steps(DPMSolverPP, sde_name, grid=Log(), order=k, lower_order_final=False) for k in (2, 3))
    order = lambda errors: math.log2(errors[0] / errors[-1]) / (len(errors) - 1)  # noqa: E731
    assert order(two) == pytest.approx(2, abs=0.25), two
    assert order(three) > 1.75 and all(e3 < e2 / 2 for e2, e3 in zip(two, three, strict=True)), (two, three)


def test_adaptive_ode_converges_as_the_tolerance_shrinks():
    parts = build(compose_config(["model=oracle"]))
    seed = torch.Generator().manual_seed
    solve = lambda tol: ProbabilityFlowODE(rtol=tol, atol=tol).sample(parts.model.score, parts.model.sde, (500, 2),  # noqa: E731
                                                                       seed(0))
    reference = solve(1e-9).x
    loose, tight = solve(1e-3), solve(1e-6)
    assert tight.nfe > loose.nfe
    assert float((tight.x - reference).abs().max()) < 1e-3 < float((loose.x - reference).abs().max())


@pytest.mark.parametrize("sde_name", options("sde"))
@pytest.mark.parametrize("grid", [Uniform(), Log(), Karras(), Karras(rho=1.0)])
def test_grids_run_from_T_to_eps(grid, sde_name):
    sde = instantiate(compose_config([f"sde={sde_name}"]).sde)
    times = grid(sde, 20)
    assert times.dtype == torch.float64 and len(times) == 21
    assert float(times[0]) == sde.T and float(times[-1]) == sde.eps
    assert bool((times.diff() < 0).all())


def test_log_and_karras_grids_space_the_noise_level():
    sde = instantiate(compose_config(["sde=ddpm"]).sde)
    sigma = sde.noise_level(Log()(sde, 10))
    ratios = sigma[1:] / sigma[:-1]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios), rtol=1e-9)  # geometric
    root = sde.noise_level(Karras(rho=7)(sde, 10)) ** (1 / 7)
    assert torch.allclose(root.diff(), root.diff()[0].expand(10), rtol=1e-9)  # equal steps in sigma^(1/rho)


def test_snapshots_callback_keeps_evenly_spaced_states():
    parts = build(compose_config(["model=oracle", "sampler=euler_maruyama", "sampler.steps=50"]))  # a uniform grid
    snapshots = Snapshots(6)
    parts.sampler.sample(parts.model.score, parts.model.sde, (100, 2), torch.Generator(), callback=snapshots)
    times = [t for t, _ in snapshots.states]
    assert len(times) == 6 and times[0] == parts.model.sde.T and times[-1] == parts.model.sde.eps
    steps = np.round((parts.model.sde.T - np.array(times)) / (parts.model.sde.T - parts.model.sde.eps) * 50)
    assert steps.tolist() == [0, 10, 20, 30, 40, 50]


def test_sampler_keeps_trailing_dimensions():
    parts = build(compose_config(["dataset=gmm", "model=oracle", "sampler.steps=50"]))
    snapshots = Snapshots(3)
    result = parts.sampler.sample(parts.model.score, parts.model.sde, (100, parts.dataset.dim), torch.Generator(),
                                  callback=snapshots)
    assert result.x.shape == (100, 3) and [s.shape for _, s in snapshots.states] == [(100, 3)] * 3


def test_same_generator_same_samples():
    parts = build(compose_config(["model=oracle", "sampler=pc", "sampler.steps=20"]))
    a, b = (parts.sampler.sample(parts.model.score, parts.model.sde, (200, 2), torch.Generator().manual_seed(3)).x
            for _ in range(2))
    assert torch.equal(a, b)
