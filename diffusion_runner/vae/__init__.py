"""The VAE family: a Gumbel-softmax categorical latent (optionally with a continuous part), a Gaussian decoder,
the exact or importance-weighted likelihood, and purity, the share of a mode's points in one category."""

from diffusion_runner.vae.family import VAE
from diffusion_runner.vae.model import GumbelVAE
from diffusion_runner.vae.objective import NegativeELBO
from diffusion_runner.vae.sampler import PriorSampler

__all__ = ["VAE", "GumbelVAE", "NegativeELBO", "PriorSampler"]
