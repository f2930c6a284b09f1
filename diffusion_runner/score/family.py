"""The score family: a forward SDE, a score model trained by score matching, reverse-process samplers."""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate

from diffusion_runner.family import Family, Loss
from diffusion_runner.score import figures
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.samplers import ScoreSampler
from diffusion_runner.score.sdes import SDE

log = logging.getLogger(__name__)


class Score(Family):
    """Today's diffusion models: `sde` (the forward process and its prior N(0, s(T)^2 I)), `model` (a score model:
    a preconditioned backbone or the exact oracle), `loss` (score matching, its weighting at loss.weighting) and
    `sampler` (a reverse SDE or ODE solver on a time grid). Its likelihood is the probability-flow ODE's
    (diffusion_runner.score.likelihood, kind `ode`)."""

    model_sections = ("sde", "model")
    types = {"sde": SDE, "model": ScoreModel, "loss": Loss, "sampler": ScoreSampler}

    def build(self, cfg, dataset, source):
        sde = instantiate(cfg.sde)
        model = instantiate(cfg.model, sde=sde, dataset=dataset)
        sampler = instantiate(cfg.sampler)
        check_prior(sde, dataset)
        return model, sampler

    def objective(self, cfg, model):
        return instantiate(cfg.loss, sde=model.sde)  # its parts (the weighting at loss.weighting) with it

    def figures(self, model, dataset, rng, out_dir):
        figures.forward(model, dataset, rng, out_dir / "forward.png")
        return ["forward", *(["score_field"] if figures.score_field(model, dataset, rng, out_dir / "score_field.png")
                             else [])]


def check_prior(sde: SDE, dataset) -> None:
    """Warn when the prior N(0, s(T)^2 I) is not the data's marginal at T: its std would be off by over 10%."""
    m, s = (float(v) for v in sde.marginal(torch.tensor([sde.T], dtype=torch.float64)))
    mismatch = (1 + (m * dataset.std / s) ** 2) ** 0.5
    if mismatch > 1.1:
        log.warning("sde: at T = %g the data's marginal has %.2fx the prior's std (m(T) = %.3g, s(T) = %.3g): "
                    "samples start from the wrong distribution; raise sde.T (or beta_max / sigma_max)",
                    sde.T, mismatch, m, s)
