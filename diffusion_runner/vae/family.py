"""The VAE family (the writeup's "VAE" section): a categorical latent, one category per mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from diffusion_runner import plots
from diffusion_runner.family import Family
from diffusion_runner.vae.metrics import confusion
from diffusion_runner.vae.model import GumbelVAE
from diffusion_runner.vae.objective import NegativeELBO
from diffusion_runner.vae.sampler import PriorSampler


class VAE(Family):
    """`model` (diffusion_runner.vae.GumbelVAE), `loss` (the relaxed negative ELBO) and `sampler` (a decoded prior
    draw). Its likelihood is exact without a continuous latent, an IWAE bound with one
    (diffusion_runner.vae.likelihood); for labelled data it draws confusion.png, modes against categories."""

    types = {"model": GumbelVAE, "loss": NegativeELBO, "sampler": PriorSampler}

    def build(self, cfg, dataset, source):
        return instantiate(cfg.model, dataset=dataset), instantiate(cfg.sampler)

    def objective(self, cfg, model):
        return instantiate(cfg.loss)

    def figures(self, model, dataset, rng: np.random.Generator, out_dir: Path) -> list[str]:
        if dataset.n_classes < 1:
            return []
        points, modes = dataset.sample_labeled(10_000, rng)
        device = next(model.parameters()).device
        with torch.inference_mode():
            categories = model.categorise(torch.as_tensor(points, device=device)).cpu().numpy()
        plots.confusion(confusion(modes, categories, dataset.n_classes, model.categories), out_dir / "confusion.png",
                        rows="mode (the mixture component)", columns="category (argmax q(k | x))")
        return ["confusion"]
