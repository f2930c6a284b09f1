"""The discrete-time chain family (the DDPM and VDM notes)."""

from __future__ import annotations

import numpy as np
from hydra.utils import instantiate

from diffusion_runner.chain.model import ReverseChain
from diffusion_runner.chain.objective import ChainLoss
from diffusion_runner.chain.sampler import Ancestral
from diffusion_runner.family import Family
from diffusion_runner.images import figures as image_figures


class Chain(Family):
    """`model` (a reverse chain over its `model.schedule`: diffusion_runner.chain.ChainModel, or ChainOracle),
    `loss` (L_simple, the ELBO or the hybrid) and `sampler` (ancestral, optionally skipping steps). Its prior is
    N(0, I); its likelihood is the ELBO (diffusion_runner.chain.likelihood, kind `elbo`)."""

    types = {"model": ReverseChain, "loss": ChainLoss, "sampler": Ancestral}

    def build(self, cfg, dataset, source):
        return instantiate(cfg.model, dataset=dataset), instantiate(cfg.sampler)

    def objective(self, cfg, model):
        return instantiate(cfg.loss)

    def figures(self, model, dataset, rng, out_dir):
        """forward.png for images: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) z of one image at seven steps t."""
        if dataset.kind != "images":
            return []
        steps = np.linspace(0, model.T, 7).round().astype(int)
        abar = model.schedule.abar[steps].double().numpy()
        image_figures.forward(dataset.to_model(dataset.sample(1, rng))[0],
                              [(f"t = {t}", float(np.sqrt(a)), float(np.sqrt(1 - a))) for t, a in
                               zip(steps, abar, strict=True)], rng, out_dir / "forward.png",
                              f"{type(model.schedule).__name__}: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) z")
        return ["forward"]
