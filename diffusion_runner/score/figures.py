"""The score family's own pictures: the forward process of its SDE (forward.png) and, where the dataset has an
exact score, the learned score field against it (score_field.png)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from diffusion_runner import plots
from diffusion_runner.data import Dataset
from diffusion_runner.images import figures as image_figures
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.oracle import Oracle

log = logging.getLogger(__name__)

NOISE_LEVELS = (0.1, 0.5, 2.0)  # sigma(t) = s / m of the score field's panels, in data units


def forward(model: ScoreModel, dataset: Dataset, rng: np.random.Generator, path: Path, n: int = 10_000) -> None:
    """Mean and std of the first coordinate of x_t = m(t) x_0 + s(t) z over t, from n draws of the data (in the
    model's units), and the data's marginal at T against the prior; for images, x_t of one image at seven times."""
    sde = model.sde
    if dataset.kind == "images":
        times = np.linspace(sde.eps, sde.T, 7)
        m, s = (c.numpy() for c in sde.marginal(torch.as_tensor(times, dtype=torch.float64)))
        image_figures.forward(dataset.to_model(dataset.sample(1, rng))[0], [(f"t = {t:.2g}", mt, st)
                              for t, mt, st in zip(times, m, s, strict=True)], rng, path,
                              f"{type(sde).__name__}: x_t = m(t) x_0 + s(t) z")
        return
    x0 = dataset.to_model(dataset.sample(n, rng)).reshape(n, -1)[:, 0].astype(np.float64)
    times = torch.linspace(sde.eps, sde.T, 200, dtype=torch.float64)
    m, s = (c.numpy() for c in sde.marginal(times))
    m_T, s_T = sde.coefficients(sde.T)
    x_T = m_T * x0 + s_T * rng.standard_normal(n)
    plots.forward_process(times.numpy(), m * x0.mean(), np.sqrt(m**2 * x0.var() + s**2), x_T, sde.prior_std(), path,
                          f"{type(sde).__name__}: x_t = m(t) x_0 + s(t) z, first coordinate")


@torch.no_grad()
def score_field(model: ScoreModel, dataset: Dataset, rng: np.random.Generator, path: Path, size: int = 21) -> bool:
    """The learned score against the exact one at the noise levels NOISE_LEVELS, on a size x size grid over the
    data; drawn for 2-D data with a closed-form density (False, with a log line, otherwise)."""
    if not dataset.has_density or dataset.dim != 2:
        log.info("score_field.png: drawn for 2-D data with an exact score; %s is %d-D%s", type(dataset).__name__,
                 dataset.dim, "" if dataset.has_density else " and has none")
        return False
    sde, exact = model.sde, Oracle(model.sde, dataset)
    lims = plots.plot_limits(dataset.sample(5000, rng))
    xs, ys = np.linspace(*lims[:2], size), np.linspace(*lims[2:], size)
    xy = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1)
    points = torch.as_tensor(xy.reshape(-1, 2), dtype=torch.float32)
    device = next(model.parameters(), torch.empty(0)).device
    times = sde.time_of_noise_level(torch.tensor(NOISE_LEVELS, dtype=torch.float64)).clamp(sde.eps, sde.T).tolist()
    learned, truth = [], []
    for t in times:
        tt = torch.full((len(points),), t)
        learned.append(model.score(points.to(device), tt.to(device)).cpu().numpy().reshape(size, size, 2))
        truth.append(exact.score(points.double(), tt.double()).numpy().reshape(size, size, 2))
    plots.score_field(xy, np.stack(learned), np.stack(truth), times, path)
    return True
