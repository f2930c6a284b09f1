"""Every picture is a valid, non-blank PNG or GIF, for 1-D, 2-D and higher-dimensional data."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.utils import instantiate
from PIL import Image

from diffusion_runner import plots
from diffusion_runner.data import GaussianMixture
from diffusion_runner.score import Oracle, figures
from tests.conftest import compose_config

DIMS = [1, 2, 5]


def assert_picture(path, kind="PNG", frames=1):
    """The file is an image of `kind` with `frames` frames, none of them a single flat colour."""
    with Image.open(path) as image:
        assert image.format == kind and getattr(image, "n_frames", 1) == frames
        for i in range(frames):
            image.seek(i)
            assert np.asarray(image.convert("L"), dtype=np.float64).std() > 1.0, f"{path.name} frame {i} is blank"


def mixture(dim: int) -> GaussianMixture:
    means = np.zeros((4, dim))
    means[:, 0] = [-3, -1, 1, 3]
    return GaussianMixture(means.tolist(), [0.4] * 4)


@pytest.mark.parametrize("dim", DIMS)
def test_every_job_picture_is_drawn_for_data_of_any_dimension(dim, tmp_path):
    rng = np.random.default_rng(0)
    dataset = mixture(dim)
    reference, samples = dataset.sample(2000, rng), dataset.sample(2000, rng) + 0.1
    lims = plots.plot_limits(reference)
    states = [(t, reference * (1 - t) + rng.standard_normal(reference.shape) * t) for t in np.linspace(1, 0, 5)]
    plots.samples_vs_truth(samples, reference, tmp_path / "samples.png")
    plots.density(samples, lims, tmp_path / "density.png")
    plots.trajectory(states, lims, tmp_path / "trajectory.png")
    plots.animation(states, lims, tmp_path / "animation.gif")
    plots.loss_curve(np.exp(-np.linspace(0, 3, 500)) + 0.01 * rng.random(500), tmp_path / "loss.png")
    for name in ("samples", "density", "trajectory", "loss"):
        assert_picture(tmp_path / f"{name}.png")
    assert_picture(tmp_path / "animation.gif", "GIF", frames=5)


@pytest.mark.parametrize("dim", DIMS)
def test_the_score_family_draws_its_forward_process_and_in_2d_its_score_field(dim, tmp_path):
    dataset = mixture(dim)
    model = Oracle(instantiate(compose_config(["sde=ddpm"]).sde), dataset)
    rng = np.random.default_rng(0)
    figures.forward(model, dataset, rng, tmp_path / "forward.png")
    assert_picture(tmp_path / "forward.png")
    drawn = figures.score_field(model, dataset, rng, tmp_path / "score_field.png")
    assert drawn == (dim == 2) and (tmp_path / "score_field.png").exists() == drawn
    if drawn:
        assert_picture(tmp_path / "score_field.png")


def test_the_score_field_compares_the_models_score_with_the_exact_one(monkeypatch):
    """The exact score's field matches the truth; a model off by a constant is off by it everywhere."""
    dataset = mixture(2)
    sde = instantiate(compose_config(["sde=ddpm"]).sde)

    class Off(Oracle):
        def score(self, x, t, y=None):
            return super().score(x, t) + 1.0

    captured = {}
    monkeypatch.setattr(plots, "score_field", lambda xy, learned, truth, times, path: captured.update(
        learned=learned, truth=truth, times=times))
    figures.score_field(Oracle(sde, dataset), dataset, np.random.default_rng(0), None)
    assert np.allclose(captured["learned"], captured["truth"], atol=1e-4) and len(captured["times"]) == 3
    figures.score_field(Off(sde, dataset), dataset, np.random.default_rng(0), None)
    assert np.allclose(captured["learned"] - captured["truth"], 1.0, atol=1e-4)
