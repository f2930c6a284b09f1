"""The preconditioning wrapper and the backbones: every parameterisation reads its target back as the score, every
backbone keeps the sample's shape and listens to its features, conditional models hide labels for guidance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch import nn

from diffusion_runner.data import GaussianMixture
from diffusion_runner.errors import ConfigError
from diffusion_runner.score import Preconditioned
from diffusion_runner.score.precond import PARAMETERIZATIONS
from diffusion_runner.train import TrainOptions, train
from tests.conftest import BACKBONES, compose_config, learned_model, options


class Fixed(nn.Module):
    """A backbone whose output is set by the test; it records what it was given."""

    def __init__(self, shape, features):
        super().__init__()
        self.output, self.seen = None, None

    def forward(self, x, features):
        self.seen = (x, features)
        return self.output


def targets(x0, z, m, s, sigma_data):
    """What each parameterisation's network should output at x_t = m x0 + s z, from its definition."""
    sigma = s / m
    c_skip, c_out = sigma_data**2 / (sigma**2 + sigma_data**2), sigma * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    return {"eps": z, "x0": x0, "score": -z / s, "v": (c_skip * (m * x0 + s * z) / m - x0) / c_out}


@pytest.mark.parametrize("sde_name", options("sde"))
@pytest.mark.parametrize("parameterization", sorted(PARAMETERIZATIONS))
def test_every_parameterization_round_trips_through_the_wrapper(parameterization, sde_name):
    """A backbone that outputs the exact target for (x0, z) makes the wrapper return the score of x_t | x0, -z / s."""
    cfg = compose_config([f"sde={sde_name}"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = Preconditioned(sde, dataset, Fixed, parameterization).double()
    gen = torch.Generator().manual_seed(0)
    t = sde.eps + (sde.T - sde.eps) * torch.rand(256, generator=gen, dtype=torch.float64)
    x0 = torch.as_tensor(dataset.sample(256, np.random.default_rng(0)), dtype=torch.float64)
    z = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
    m, s = (c[:, None] for c in sde.marginal(t))
    model.backbone.output = targets(x0, z, m, s, dataset.std)[parameterization]
    xt = m * x0 + s * z
    assert torch.allclose(model.score(xt, t), -z / s, rtol=1e-9, atol=1e-9)
    given, features = model.backbone.seen
    assert torch.allclose(given, xt / (m**2 * dataset.std**2 + s**2).sqrt(), rtol=1e-12)  # c_in x_t
    assert torch.allclose(features, model.embed(1000 * t / sde.T))


def test_the_backbone_input_has_unit_scale_at_every_noise_level():
    cfg = compose_config()
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = Preconditioned(sde, dataset, Fixed)
    x0 = torch.as_tensor(dataset.sample(50_000, np.random.default_rng(0)))
    for time in (sde.eps, 0.05, 0.3, sde.T):
        t = torch.full((len(x0),), time)
        m, s = (c[:, None] for c in sde.marginal(t))
        model.backbone.output = torch.zeros_like(x0)
        model.score(m * x0 + s * torch.randn_like(x0), t)
        assert float(model.backbone.seen[0].std()) == pytest.approx(1.0, abs=0.02)


def test_v_is_the_v_prediction_target_for_vp_with_unit_data_scale():
    """For VP (m^2 + s^2 = 1) and sigma_data = 1, a backbone that outputs Salimans & Ho's v = m z - s x0 makes the
    v-parameterised wrapper return the score of x_t | x0, -z / s."""
    cfg = compose_config(["sde=ddpm"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = Preconditioned(sde, dataset, Fixed, "v").double()
    model.sigma_data = 1.0
    t = torch.linspace(sde.eps, sde.T, 50, dtype=torch.float64)
    m, s = (c[:, None] for c in sde.marginal(t))
    x0, z = torch.randn(50, 2, dtype=torch.float64), torch.randn(50, 2, dtype=torch.float64)
    model.backbone.output = m * z - s * x0
    assert torch.allclose(model.score(m * x0 + s * z, t), -z / s, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_keeps_the_sample_shape_and_depends_on_time(backbone):
    cfg = compose_config()
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = learned_model(sde, dataset, [f"model={backbone}"])
    x = torch.randn(32, *dataset.shape)
    early, late = model.score(x, torch.full((32,), 0.1)), model.score(x, torch.full((32,), 0.9))
    assert early.shape == x.shape and torch.isfinite(early).all()
    assert not torch.allclose(early, late)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_parameter_counts_of_the_default_backbones_are_within_ten_percent(backbone):
    """The backbones' default sizes are matched, so the backbone table compares architectures, not sizes."""
    cfg = compose_config()
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    count = lambda name: sum(p.numel() for p in learned_model(sde, dataset, [f"model={name}"]).parameters())  # noqa: E731
    assert abs(count(backbone) / count("mlp") - 1) < 0.1


@pytest.mark.parametrize("override,key", [
    ("model.parameterization=eta", "model.parameterization"), ("model.backbone.width=0", "model.backbone.width"),
    ("model.backbone.activation=swish", "model.backbone.activation"),
    ("model.time_embed_dim=3", "model.time_embed_dim"),
    ("model.conditional=yes", "model.conditional"), ("model.label_dropout=1.0", "model.label_dropout")])
def test_a_bad_model_value_is_a_config_error_naming_the_key(override, key):
    cfg = compose_config([override, "model.conditional=true"] if "conditional=" not in override else [override])
    with pytest.raises(InstantiationException) as failure:
        instantiate(cfg.model, sde=instantiate(cfg.sde), dataset=instantiate(cfg.dataset))
    assert str(failure.value.__cause__).startswith(f"{key}: ")


def test_a_conditional_model_needs_labelled_data():
    cfg = compose_config(["dataset=moons", "model.conditional=true"])
    with pytest.raises(InstantiationException) as failure:
        instantiate(cfg.model, sde=instantiate(cfg.sde), dataset=instantiate(cfg.dataset))
    assert isinstance(failure.value.__cause__, ConfigError)
    assert str(failure.value.__cause__).startswith("model.conditional: ")


def test_label_dropout_hides_the_configured_share_of_labels():
    cfg = compose_config(["model.conditional=true", "model.label_dropout=0.25"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = instantiate(cfg.model, sde=sde, dataset=dataset)
    y = torch.randint(dataset.n_classes, (100_000,), generator=torch.Generator().manual_seed(0))
    dropped = model.drop_labels(y, torch.Generator().manual_seed(1))
    hidden = dropped == dataset.n_classes
    assert float(hidden.float().mean()) == pytest.approx(0.25, abs=0.01)
    assert torch.equal(dropped[~hidden], y[~hidden])


def test_a_conditional_model_learns_each_components_score():
    """Trained briefly with labels, the conditional score at small noise points towards the labelled component's
    mean far more often than towards any other."""
    dataset = GaussianMixture([[-3.0, 0.0], [3.0, 0.0]], 0.5)
    cfg = compose_config(["model.conditional=true"])
    sde = instantiate(cfg.sde)
    model = instantiate(cfg.model, sde=sde, dataset=dataset)
    points, labels = dataset.sample_labeled(4000, np.random.default_rng(0))
    loss = instantiate(cfg.loss, sde=sde)
    train(model, loss, torch.as_tensor(points), TrainOptions(steps=400, batch_size=256,
                                                             optimizer=instantiate(cfg.train.optimizer)),
          labels=torch.as_tensor(labels), generator=torch.Generator().manual_seed(0))
    x, t = torch.zeros(200, 2), torch.full((200,), 0.3)
    with torch.no_grad():
        towards_first = model.score(x, t, torch.zeros(200, dtype=torch.long))[:, 0]
        towards_second = model.score(x, t, torch.ones(200, dtype=torch.long))[:, 0]
    assert (towards_first < 0).all() and (towards_second > 0).all()


def test_batch_norm_statistics_reach_the_ema_model():
    cfg = compose_config(["model=resmlp", "model.backbone.norm=batch"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    model = learned_model(sde, dataset, ["model=resmlp", "model.backbone.norm=batch"])
    data = torch.as_tensor(dataset.sample(2000, np.random.default_rng(0)))
    result = train(model, instantiate(cfg.loss, sde=sde), data,
                   TrainOptions(steps=50, batch_size=128, optimizer=instantiate(cfg.train.optimizer), ema_decay=0.99),
                   generator=torch.Generator().manual_seed(0))
    live, averaged = dict(model.named_buffers()), dict(result.model.named_buffers())
    assert any("running_var" in name for name in live)
    for name, buffer in live.items():
        assert torch.equal(averaged[name], buffer), name
