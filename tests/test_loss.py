"""The losses: every t-sampling estimates the same loss; DSM, ISM and SSM have the same expectation; the exact
score is the minimiser; every loss trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from diffusion_runner.build import build_loss
from diffusion_runner.errors import ConfigError
from diffusion_runner.score import Oracle
from diffusion_runner.score.losses import DSM, ISM, SSM, Loss
from diffusion_runner.train import TrainOptions, train
from diffusion_runner.validate import validate
from tests.conftest import BACKBONES, compose_config, learned_model, options


@pytest.mark.parametrize("weighting", ["uniform", "likelihood", "inv_var"])
@pytest.mark.parametrize("sde_name", ["ddpm", "ou", "ve"])
def test_importance_sampled_t_has_density_proportional_to_the_weight(weighting, sde_name):
    """E[f(t)] under the sampler equals int w f / int w (w = lambda / s^2) for f = log t and f = t, by quadrature."""
    cfg = compose_config([f"sde={sde_name}", f"weighting={weighting}"])
    sde, lam = instantiate(cfg.sde), instantiate(cfg.loss.weighting)
    t = DSM(sde, lam, t_sampling="importance").sample_t(1_000_000, torch.Generator().manual_seed(0), "cpu")[0].double()
    grid = torch.logspace(np.log10(sde.eps), np.log10(sde.T), 200_001, dtype=torch.float64)
    s = sde.marginal(grid)[1]
    w = lam(sde, grid, s) / s**2
    for f in (torch.log, lambda x: x):
        expected = float(torch.trapezoid(w * f(grid), grid) / torch.trapezoid(w, grid))
        spread = float(f(t).std()) / 1000  # the Monte Carlo standard error over 10^6 draws
        assert float(f(t).mean()) == pytest.approx(expected, abs=5 * spread + 1e-4)


@pytest.mark.parametrize("weighting", ["uniform", "likelihood", "inv_var"])
@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
def test_importance_and_uniform_t_sampling_agree(weighting, sde_name):
    """Both estimators of the loss of the exact score, whose error ||s score + z||^2 varies strongly with t."""
    cfg = compose_config([f"sde={sde_name}", f"weighting={weighting}"])
    dataset, sde, lam = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.loss.weighting)
    model = Oracle(sde, dataset)
    x0 = torch.as_tensor(dataset.sample(400_000, np.random.default_rng(0)))
    estimators = {"uniform": DSM(sde, lam, t_sampling="uniform"), "importance": DSM(sde, lam, t_sampling="importance"),
                  "coverage": DSM(sde, lam, t_sampling="importance", coverage=0.5)}
    with torch.no_grad():
        values = {name: float(loss(model, x0, torch.Generator().manual_seed(1))) for name, loss in estimators.items()}
    assert values["uniform"] == pytest.approx(values["importance"], rel=0.05)
    assert values["coverage"] == pytest.approx(values["importance"], rel=0.05)


@pytest.mark.parametrize("weighting", ["uniform", "inv_var"])
@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
def test_coverage_trains_every_noise_level_with_bounded_weights(weighting, sde_name):
    """With coverage c, at least a share c of the draws is spread evenly over log sigma, and no weight exceeds
    1 / (1 - c); the weights' mean is 1 (they are the density ratio p_w / r)."""
    cfg = compose_config([f"sde={sde_name}", f"weighting={weighting}"])
    sde, lam = instantiate(cfg.sde), instantiate(cfg.loss.weighting)
    t, _, _, weight = DSM(sde, lam, t_sampling="importance", coverage=0.5).sample_t(
        200_000, torch.Generator().manual_seed(0), "cpu")
    assert float(weight.max()) <= 2.0 + 1e-4 and float(weight.mean()) == pytest.approx(1.0, abs=0.01)
    log_sigma = sde.noise_level(t.double()).log()
    lo, hi = (float(v) for v in sde.noise_level(torch.tensor([sde.eps, sde.T], dtype=torch.float64)).log())
    counts = np.histogram(log_sigma.numpy(), bins=10, range=(lo, hi))[0] / len(t)
    assert counts.min() >= 0.5 / 10 * 0.95  # every tenth of the log-sigma range gets at least c / 10 of the draws


def test_exact_score_beats_an_untrained_network():
    cfg = compose_config()
    dataset, sde, lam = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.loss.weighting)
    loss = DSM(sde, lam)
    x0 = torch.as_tensor(dataset.sample(50_000, np.random.default_rng(0)))
    with torch.no_grad():
        oracle = float(loss(Oracle(sde, dataset), x0, torch.Generator().manual_seed(0)))
        untrained = float(loss(learned_model(sde, dataset), x0, torch.Generator().manual_seed(0)))
    assert oracle < 0.8 * untrained


@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
def test_stable_target_tends_to_the_posterior_mean_noise(sde_name):
    """The stable target is E[z | x_t] over the reference set: with the exact score, the loss falls toward 0 as the
    reference grows to the whole batch, while plain DSM keeps the variance of z around E[z | x_t]."""
    cfg = compose_config([f"sde={sde_name}"])
    dataset, sde, lam = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.loss.weighting)
    model = Oracle(sde, dataset)
    x0 = torch.as_tensor(dataset.sample(8192, np.random.default_rng(0)))
    with torch.no_grad():
        losses = [float(DSM(sde, lam, t_sampling="importance", stable_target=n)(model, x0,
                                                                              torch.Generator().manual_seed(1)))
                  for n in (0, 64, 1024, 8192)]
    assert losses == sorted(losses, reverse=True)
    assert losses[-1] < 0.02 * losses[0]


@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
def test_ism_and_ssm_estimate_dsms_loss_for_any_model(sde_name):
    """By Stein's identity the three objectives have the same expectation for every model, not only at the optimum:
    checked on an untrained network, where the value is far from its minimum."""
    cfg = compose_config([f"sde={sde_name}", "weighting=inv_var"])
    dataset, sde, lam = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.loss.weighting)
    model = learned_model(sde, dataset)
    x0 = torch.as_tensor(dataset.sample(200_000, np.random.default_rng(0)))
    losses = {"dsm": DSM(sde, lam, "importance"), "ism": ISM(sde, lam, "importance"),
              "ism_hutchinson": ISM(sde, lam, "importance", divergence="hutchinson"),
              "ssm": SSM(sde, lam, "importance", projections=2)}
    values = {name: float(loss(model, x0, torch.Generator().manual_seed(1)).detach()) for name, loss in losses.items()}
    for name in ("ism", "ism_hutchinson", "ssm"):
        assert values[name] == pytest.approx(values["dsm"], rel=0.03), values


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("loss_name", ["dsm", "ism", "ssm"])
def test_every_loss_trains_every_backbone_without_nan_and_lowers_its_loss(loss_name, backbone):
    cfg = compose_config([f"loss={loss_name}"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = learned_model(sde, dataset, [f"model={backbone}"])
    data = torch.as_tensor(dataset.sample(5000, np.random.default_rng(0)))
    result = train(model, build_loss(cfg, model), data,
                   TrainOptions(steps=300, batch_size=128, optimizer=instantiate(cfg.train.optimizer)),
                   generator=torch.Generator().manual_seed(0))
    assert np.isfinite(result.losses).all()
    assert result.losses[-50:].mean() < 0.8 * result.losses[:50].mean()


@pytest.mark.parametrize("loss_name,key,value", [
    ("dsm", "coverage", 1.5), ("dsm", "coverage", "abc"), ("dsm", "stable_target", -1), ("dsm", "stable_target", "abc"),
    ("dsm", "t_sampling", "sobol"), ("ism", "divergence", "exakt"), ("ism", "probe", "uniform"),
    ("ssm", "projections", 0), ("ssm", "probe", "uniform")])
def test_a_bad_loss_value_is_a_config_error_naming_the_key(loss_name, key, value):
    cfg = compose_config([f"loss={loss_name}", f"loss.{key}={value}"])
    with pytest.raises(InstantiationException) as failure:  # instantiate wraps what the constructor raised
        build_loss(cfg, learned_model(instantiate(cfg.sde), instantiate(cfg.dataset)))
    assert isinstance(failure.value.__cause__, ConfigError)
    assert str(failure.value.__cause__).startswith(f"loss.{key}: ")


@pytest.mark.parametrize("weighting", options("weighting"))
@pytest.mark.parametrize("sde_name", options("sde"))
@pytest.mark.parametrize("loss_name", options("loss"))
def test_every_loss_takes_every_sde_and_weighting(loss_name, sde_name, weighting):
    """A finite loss and a finite, non-zero gradient on one batch, for every pairing."""
    cfg = compose_config([f"loss={loss_name}", f"sde={sde_name}", f"weighting={weighting}"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = learned_model(sde, dataset)
    loss = build_loss(cfg, model)(model, torch.as_tensor(dataset.sample(256, np.random.default_rng(0))),
                                torch.Generator().manual_seed(0))
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.isfinite(loss) and torch.isfinite(grads).all() and grads.abs().sum() > 0


class Unweighted(Loss):
    """A loss with no weighting: plain DSM with t ~ U[eps, T]."""

    def __init__(self, sde):
        self.sde = sde

    def __call__(self, model, x0, generator=None, y=None):
        t = self.sde.eps + (self.sde.T - self.sde.eps) * torch.rand(len(x0), generator=generator)
        z = torch.randn(x0.shape, generator=generator)
        m, s = (c[:, None] for c in self.sde.marginal(t))
        return (s * model.score(m * x0 + s * z, t, y) + z).pow(2).sum(1).mean()


def test_a_loss_without_a_weighting_runs_with_tilde_weighting_and_says_so_without():
    cfg = compose_config(["loss=dsm"])
    sde = instantiate(cfg.sde)
    cfg.loss = {"_target_": f"{__name__}.Unweighted", "weighting": cfg.loss.weighting}
    with pytest.raises(ConfigError, match=r"^loss.weighting: .*Unweighted takes no weighting; run it with ~weighting$"):
        validate(cfg)  # what a job does before anything else
    cfg = compose_config(["~weighting"])
    cfg.loss = {"_target_": f"{__name__}.Unweighted"}
    validate(cfg)
    assert isinstance(build_loss(cfg, learned_model(sde, instantiate(cfg.dataset))), Unweighted)
