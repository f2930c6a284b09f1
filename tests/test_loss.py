"""The DSM loss: both t-sampling schemes estimate the same loss; the exact score is its minimiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.losses import DSM
from diffusion_runner.models import MLP, Oracle
from tests.conftest import compose_config


@pytest.mark.parametrize("weighting", ["uniform", "likelihood", "inv_var"])
@pytest.mark.parametrize("sde_name", ["ddpm", "ou"])
def test_importance_and_uniform_t_sampling_agree(weighting, sde_name):
    cfg = compose_config([f"sde={sde_name}", f"weighting={weighting}"])
    dataset, sde, lam = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.weighting)
    torch.manual_seed(0)
    model = MLP(sde, dataset, width=32, depth=2)
    x0 = torch.as_tensor(dataset.sample(400_000, np.random.default_rng(0)))
    with torch.no_grad():
        values = {mode: float(DSM(sde, lam, t_sampling=mode)(model, x0, torch.Generator().manual_seed(1)))
                  for mode in ("uniform", "importance")}
    assert values["uniform"] == pytest.approx(values["importance"], rel=0.05)


def test_exact_score_beats_an_untrained_network():
    cfg = compose_config()
    dataset, sde, lam = instantiate(cfg.dataset), instantiate(cfg.sde), instantiate(cfg.weighting)
    loss = DSM(sde, lam)
    x0 = torch.as_tensor(dataset.sample(50_000, np.random.default_rng(0)))
    with torch.no_grad():
        oracle = float(loss(Oracle(sde, dataset), x0, torch.Generator().manual_seed(0)))
        untrained = float(loss(MLP(sde, dataset), x0, torch.Generator().manual_seed(0)))
    assert oracle < 0.8 * untrained
