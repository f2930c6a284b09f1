"""A VAE whose latent is a K-way categorical k (one category per mode, the writeup's VAE), with an optional
continuous part u, and a Gaussian decoder.

    prior       p(k) = 1/K,  p(u) = N(0, I_C)
    encoder     q(k | x) = softmax(logits(x)),  q(u | x) = N(mu(x), diag sigma(x)^2)
    decoder     p(x | k, u) = N(m(k, u), diag s(k, u)^2), s learned, or fixed to `decoder_std`

k enters the decoder as a one-hot vector (a relaxed one while training, diffusion_runner.vae.objective). Units:
nats; x in the data's own units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Model

LOG_2PI = math.log(2 * math.pi)
# A learned decoder std starts near this share of the data's std: sharp posteriors from the first step, so the
# categories' means move apart as in k-means. Starting at the data's scale, every p(x | k) widens to the whole data
# and the decoder learns to ignore k (a single Gaussian: kl_exact about 1.44 nats on gmm8, even on the exact ELBO).
INITIAL_STD = 0.1


def gaussian_log_prob(x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(x; mean, diag exp(log_std)^2) summed over the last dimension."""
    return -(0.5 * ((x - mean) * torch.exp(-log_std)) ** 2 + log_std + 0.5 * LOG_2PI).sum(-1)


def _network(make: Callable[..., nn.Module], key: str, n_in: int, n_out: int) -> nn.Module:
    try:
        return make(shape=(n_in,), features=0, out_shape=(n_out,))
    except TypeError as e:
        raise ConfigError(f"{key}: this backbone maps x to x's shape only; a VAE needs one with out_shape "
                          f"(diffusion_runner.nets.MLP or ResMLP)") from e


class GumbelVAE(Model):
    """See the module docstring. `encoder` and `decoder` are backbone partials (diffusion_runner.nets) built here
    with the sizes they need; `categories` K >= 2, `continuous_dim` C >= 0; `decoder_std` null learns the decoder's
    standard deviation per point and dimension (starting near INITIAL_STD times the data's), a number > 0 fixes it
    (in the data's units)."""

    def __init__(self, dataset: Dataset, encoder: Callable[..., nn.Module], decoder: Callable[..., nn.Module],
                 categories: int = 8, continuous_dim: int = 0, decoder_std: float | None = None):
        super().__init__()
        if isinstance(categories, bool) or not isinstance(categories, int) or categories < 2:
            raise ConfigError(f"model.categories: must be an integer >= 2, got {categories!r}")
        if isinstance(continuous_dim, bool) or not isinstance(continuous_dim, int) or continuous_dim < 0:
            raise ConfigError(f"model.continuous_dim: must be an integer >= 0, got {continuous_dim!r}")
        if decoder_std is not None and not (isinstance(decoder_std, int | float) and decoder_std > 0):
            raise ConfigError(f"model.decoder_std: must be a number > 0, or null to learn it, got {decoder_std!r}")
        if len(dataset.shape) != 1:
            raise ConfigError(f"model: the VAE takes points (a shape of one dimension), got {dataset.shape}")
        self.dim, self.categories, self.continuous_dim = dataset.dim, categories, continuous_dim
        self.decoder_std = None if decoder_std is None else float(decoder_std)
        self.encoder = _network(encoder, "model.encoder", self.dim, categories + 2 * continuous_dim)
        self.decoder = _network(decoder, "model.decoder", categories + continuous_dim,
                                self.dim * (2 if decoder_std is None else 1))
        self.register_buffer("log_prior", torch.full((categories,), -math.log(categories)))
        self.log_std_shift = math.log(INITIAL_STD * dataset.std)
        self.sigma_data, self.input_scale = dataset.std, math.sqrt(categories)

    @property
    def exact(self) -> bool:
        """log p(x) is a finite sum over the K categories (no continuous latent)."""
        return self.continuous_dim == 0

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(logits of q(k | x) (B, K), mean and log std of q(u | x) (B, C))."""
        out = self.encoder(x, x.new_zeros(len(x), 0))
        logits, mu, log_sigma = out.split([self.categories, self.continuous_dim, self.continuous_dim], dim=-1)
        return logits, mu, log_sigma

    def decode(self, k: Tensor, u: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(mean, log std) of p(x | k, u) for k one-hot (or relaxed) (B, K) and u (B, C)."""
        z = k * self.input_scale if u is None else torch.cat([k * self.input_scale, u], dim=-1)
        out = self.decoder(z, z.new_zeros(len(z), 0))
        if self.decoder_std is None:
            mean, log_std = out.chunk(2, dim=-1)
            return self.sigma_data * mean, log_std + self.log_std_shift
        return self.sigma_data * out, out.new_full(out.shape, math.log(self.decoder_std))

    def log_likelihood(self, x: Tensor) -> Tensor:
        """Exact log p(x) = logsumexp_k [log p(k) + log p(x | k)] (no continuous latent), per point."""
        if not self.exact:
            raise ValueError("the exact likelihood needs continuous_dim = 0; use iwae()")
        mean, log_std = self.decode(torch.eye(self.categories, device=x.device))  # (K, D) each
        return torch.logsumexp(self.log_prior + gaussian_log_prob(x[:, None], mean, log_std), dim=-1)

    def elbo(self, x: Tensor) -> Tensor:
        """ELBO(x) = E_q(k|x)[log p(x | k) + log p(k) - log q(k | x)] in closed form (no continuous latent), per
        point; log p(x) - ELBO(x) = KL(q(k | x) || p(k | x)) >= 0."""
        log_q = F.log_softmax(self.encode(x)[0], dim=-1)
        mean, log_std = self.decode(torch.eye(self.categories, device=x.device))
        log_joint = self.log_prior + gaussian_log_prob(x[:, None], mean, log_std)
        return (log_q.exp() * (log_joint - log_q)).sum(-1)

    def iwae(self, x: Tensor, samples: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(IWAE_S(x) = log (1/S) sum_s w_s, the ELBO estimate mean_s log w_s) per point, w_s = p(x, k_s, u_s) /
        q(k_s, u_s | x) for S draws from q; ELBO <= IWAE_S <= log p(x), IWAE_S non-decreasing in S."""
        logits, mu, log_sigma = self.encode(x)
        log_q = F.log_softmax(logits, dim=-1)
        k = torch.multinomial(log_q.exp(), samples, replacement=True, generator=generator).T  # (S, B)
        eps = torch.randn((samples, *mu.shape), generator=generator, device=x.device, dtype=x.dtype)
        u = mu + torch.exp(log_sigma) * eps
        one_hot = F.one_hot(k, self.categories).to(x.dtype)
        mean, log_std = self.decode(one_hot.flatten(0, 1), u.flatten(0, 1))
        log_px = gaussian_log_prob(x.repeat(samples, 1), mean, log_std).view(samples, -1)
        log_pu = gaussian_log_prob(u, torch.zeros_like(u), torch.zeros_like(u))
        log_qu = gaussian_log_prob(u, mu, log_sigma)
        log_w = log_px + self.log_prior[k] + log_pu - log_q.gather(1, k.T).T - log_qu
        return torch.logsumexp(log_w, dim=0) - math.log(samples), log_w.mean(0)

    def categorise(self, x: Tensor) -> Tensor:
        """The most probable category argmax_k q(k | x) of each point."""
        return self.encode(x)[0].argmax(-1)
