"""Conditional sampling: requests are checked, guidance combines the scores as defined, the oracle's conditional
samples land on their modes, and a conditional job scores its samples against the requested component."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.__main__ import config_error
from diffusion_runner.build import build
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from diffusion_runner.request import Request
from diffusion_runner.score import Oracle
from diffusion_runner.score.guidance import guided_score
from tests.conftest import compose_config


@pytest.mark.parametrize("overrides,key", [
    (["sampler.label=-1"], "sampler.label"), (["sampler.label=abc"], "sampler.label"),
    (["sampler.label=[]"], "sampler.label"), (["sampler.label=3", "sampler.guidance=-1"], "sampler.guidance"),
    (["sampler.guidance=2"], "sampler.guidance"), (["model=oracle", "sampler.label=8"], "sampler.label"),
    (["sampler.label=3"], "sampler.label"), (["dataset=moons", "model=oracle", "sampler.label=0"], "model=oracle"),
    (["model.conditional=true", "model.label_dropout=0", "sampler.label=3", "sampler.guidance=1"], "sampler.guidance"),
    (["model.conditional=true", "model.label_dropout=0"], "sampler.label"),
])
def test_a_bad_request_is_one_line_naming_the_key(overrides, key):
    with pytest.raises(Exception) as info:
        build(compose_config(overrides))
    message = config_error(info.value)
    assert message is not None and "\n" not in message and key in message, message


def test_guidance_is_the_weighted_difference_of_conditional_and_unconditional_scores():
    cfg = compose_config()
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    oracle = Oracle(sde, dataset)
    x, t, y = 3 * torch.randn(64, 2), torch.rand(64) * 0.9 + 0.05, torch.full((64,), 2)
    conditional, unconditional = oracle.score(x, t, y), oracle.score(x, t)
    assert torch.equal(guided_score(oracle, y, 0.0)(x, t), conditional)
    assert torch.allclose(guided_score(oracle, torch.tensor([2]), 2.0)(x, t), 3 * conditional - 2 * unconditional)
    assert guided_score(oracle, None, 0.0) == oracle.score


def test_requested_labels_take_equal_turns_and_set_the_target():
    dataset = instantiate(compose_config().dataset)
    request = Request.parse([1, 6], 0.0)
    assert request.per_sample(5).tolist() == [1, 6, 1, 6, 1]
    target = request.target(dataset)
    assert torch.equal(target.means, dataset.means[[1, 6]])
    assert torch.allclose(target.log_weights.exp(), torch.tensor([0.5, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("sampler", ["ddim", "euler_maruyama", "dpm_solver"])
def test_oracle_conditional_samples_land_on_their_modes(sampler, tmp_path):
    """Sampling with the true conditional score: the mixture's own overlap puts ~0.1% of points nearer a neighbour."""
    results = {}
    cfg = compose_config(["model=oracle", f"sampler={sampler}", "sampler.label=[2,5]", "eval.n_samples=4000",
                          "eval.metrics.kl_kde.n_reference=2000", "eval.metrics.chamfer.n_clouds=40",
                          "eval.metrics.emd.n=500"])
    run(cfg, tmp_path, NoLogger(), results)
    assert results["on_mode"] >= 0.99
    assert "nll" not in results  # several labels: no one density to evaluate
    assert results["kl_kde"] < 1.5 * results["kl_kde_floor"]  # against the two requested components
    labels = np.load(tmp_path / "labels.npy")
    samples = np.load(tmp_path / "samples.npy")
    dataset = instantiate(cfg.dataset)
    for k in (2, 5):
        assert np.allclose(samples[labels == k].mean(0), dataset.means[k].numpy(), atol=0.05)


def test_a_conditional_job_trains_with_labels_and_scores_the_requested_component(tiny, tmp_path):
    results = {}
    run(compose_config([*tiny, "train.steps=600", "model.conditional=true", "sampler.label=4", "sampler.guidance=1"]),
        tmp_path, NoLogger(), results)
    assert results["on_mode"] >= 0.9
    assert np.isfinite(results["kl_ode"]) and np.isfinite(results["kl_kde"])
    assert (np.load(tmp_path / "labels.npy") == 4).all()
