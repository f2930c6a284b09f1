"""The VAE family's mathematics: the Gumbel-softmax relaxation, and ELBO <= IWAE_S <= log p(x) with IWAE rising in S."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from diffusion_runner.vae.objective import temperature
from tests.conftest import compose_config


def test_the_relaxed_one_hot_argmax_follows_the_categorical_and_tends_to_a_one_hot_as_tau_falls():
    torch.manual_seed(0)
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    logits = probs.log().expand(200_000, 4)
    counts = torch.bincount(F.gumbel_softmax(logits, tau=1.0).argmax(-1), minlength=4).double()
    assert torch.allclose(counts / counts.sum(), probs.double(), atol=0.005)  # 4 standard errors at n = 200k
    largest = [F.gumbel_softmax(logits[:10_000], tau=tau).max(-1).values.mean().item() for tau in (1.0, 0.1, 0.005)]
    assert largest[0] < largest[1] < largest[2] and largest[2] > 0.99
    hard = F.gumbel_softmax(logits[:1000], tau=0.5, hard=True)  # straight-through: an exact one-hot forward
    assert torch.equal(hard.sum(-1), torch.ones(1000)) and set(hard.unique().tolist()) == {0.0, 1.0}


def test_the_temperature_anneals_to_its_floor():
    assert temperature(0, 1.0, 0.5, 1e-3) == 1.0
    assert temperature(100, 1.0, 0.5, 1e-3) == pytest.approx(np.exp(-0.1))
    assert temperature(10_000, 1.0, 0.5, 1e-3) == 0.5
    assert temperature(10_000, 1.0, 0.5, 0.0) == 1.0


def vae(overrides=()):
    cfg = compose_config(["family=vae", *overrides])
    torch.manual_seed(0)
    return instantiate(cfg.model, dataset=instantiate(cfg.dataset)).eval(), instantiate(cfg.dataset)


def mixture_decoder(model, dataset):
    """The decoder set to gmm8's components, p(x | k) = N(mu_k, 0.5^2 I); the encoder stays as initialised."""
    means = torch.as_tensor(dataset.means, dtype=torch.float32)
    model.decode = lambda k, u=None: (k @ means, torch.full((len(k), 2), float(np.log(0.5))))
    return model


def test_elbo_is_below_the_exact_log_likelihood_and_iwae_between_them_rising_in_s():
    model, dataset = vae()
    model = mixture_decoder(model, dataset)  # q(k | x) far from p(k | x): a wide gap for IWAE to close
    x = torch.as_tensor(dataset.sample(2000, np.random.default_rng(0)))
    with torch.no_grad():
        exact, elbo = model.log_likelihood(x), model.elbo(x)
        draws = [model.iwae(x, s, torch.Generator().manual_seed(1))[0] for s in (1, 4, 64, 1024)]
    iwae = [d.mean().item() for d in draws]
    assert bool((elbo <= exact + 1e-5).all())
    se = draws[0].std().item() / np.sqrt(len(x))
    assert abs(elbo.mean().item() - iwae[0]) < 4 * se  # IWAE_1 is an unbiased estimate of the ELBO
    assert iwae == sorted(iwae) and iwae[-1] <= exact.mean().item() + 1e-4
    assert exact.mean().item() - iwae[-1] < 0.1 * (exact.mean().item() - iwae[0])  # S -> infinity: log p(x)


def test_with_a_continuous_latent_iwae_rises_with_s_and_its_elbo_is_below_it():
    model, dataset = vae(["model.continuous_dim=2"])
    x = torch.as_tensor(dataset.sample(500, np.random.default_rng(0)))
    with torch.no_grad():
        runs = [model.iwae(x, s, torch.Generator().manual_seed(s)) for s in (1, 8, 256)]
    iwae = [bound.mean().item() for bound, _ in runs]
    assert iwae == sorted(iwae)
    assert all(elbo.mean().item() <= bound + 1e-4 for bound, (_, elbo) in zip(iwae, runs, strict=True))


def test_the_exact_likelihood_of_a_decoder_set_to_the_mixture_is_the_mixture_density():
    """A decoder whose p(x | k) are gmm8's components makes log p(x) the mixture's own log-density."""
    model, dataset = vae()
    model = mixture_decoder(model, dataset)
    x = torch.as_tensor(dataset.sample(1000, np.random.default_rng(0)))
    assert torch.allclose(model.log_likelihood(x).double(), dataset.log_prob(x.double()), atol=1e-4)
