"""The discrete-time chain family (the DDPM and VDM notes)."""

from __future__ import annotations

from hydra.utils import instantiate

from diffusion_runner.chain.model import ReverseChain
from diffusion_runner.chain.objective import ChainLoss
from diffusion_runner.chain.sampler import Ancestral
from diffusion_runner.family import Family


class Chain(Family):
    """`model` (a reverse chain over its `model.schedule`: diffusion_runner.chain.ChainModel, or ChainOracle),
    `loss` (L_simple, the ELBO or the hybrid) and `sampler` (ancestral, optionally skipping steps). Its prior is
    N(0, I); its likelihood is the ELBO (diffusion_runner.chain.likelihood, kind `elbo`)."""

    types = {"model": ReverseChain, "loss": ChainLoss, "sampler": Ancestral}

    def build(self, cfg, dataset):
        return instantiate(cfg.model, dataset=dataset), instantiate(cfg.sampler)

    def objective(self, cfg, model):
        return instantiate(cfg.loss)
