"""Every option of every config group composes and instantiates; bad choices fail with a clear message."""

from __future__ import annotations

import numpy as np
import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from diffusion_runner.build import build_loss
from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.sampling import Sampler
from diffusion_runner.score.losses import Loss
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.sdes import SDE
from diffusion_runner.validate import validate
from tests.conftest import GROUPS, compose_config, options


def test_every_group_has_options():
    for group in GROUPS:
        assert options(group), group


def build(cfg, tmp_path):
    dataset = instantiate(cfg.dataset)
    sde = instantiate(cfg.sde)
    model = instantiate(cfg.model, sde=sde, dataset=dataset)
    loss = build_loss(cfg, model)
    sampler = instantiate(cfg.sampler)
    logger = instantiate(cfg.logger, _partial_=True)(run_config={}, out_dir=tmp_path)
    return dataset, sde, loss, model, sampler, logger


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)])
def test_option_composes_and_instantiates(group, option, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "logger" and option == "wandb":
        overrides.append("logger.mode=disabled")
    if option == "file":  # a points file of its own
        overrides.append(f"dataset.path={points_csv(tmp_path)}")
    if option == "unet":  # a backbone for images
        overrides.append("dataset=digits")
    cfg = compose_config(overrides)
    dataset, sde, loss, model, sampler, logger = build(cfg, tmp_path)
    assert isinstance(dataset, Dataset) and isinstance(sde, SDE) and isinstance(model, ScoreModel)
    assert isinstance(loss, Loss) and isinstance(sampler, Sampler)
    logger.finish()


def test_every_metric_instantiates():
    cfg = compose_config()
    for name, node in cfg.eval.metrics.items():
        metric = instantiate(node)
        assert metric.min_samples <= cfg.eval.n_samples, name


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(MissingConfigException) as info:
        compose_config(["sde=nope"])
    message = str(info.value)
    assert "Available options" in message
    for option in options("sde"):
        assert option in message


def test_an_unknown_key_without_plus_fails_composition_naming_it():
    with pytest.raises(ConfigCompositionException) as info:
        compose_config(["train.stepz=5"])
    assert "stepz" in str(info.value.__cause__ or info.value)


@pytest.mark.parametrize("override,message", [
    ("train.steps=abc", "train.steps: must be an integer, got 'abc'"),
    ("threads=many", "threads: must be an integer, got 'many'"),
    ("overwrite=maybe", "overwrite: must be true or false, got 'maybe'"),
    ("eval.n_samples=1.5", "eval.n_samples: must be an integer, got 1.5")])
def test_a_bad_value_of_a_shared_key_is_one_line_naming_it(override, message):
    with pytest.raises(ConfigError) as info:
        validate(compose_config([override]))
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_any_gaussian_mixture_by_override():
    cfg = compose_config(["dataset=gmm", "dataset.means=[[0,0,0,0],[2,2,2,2]]", "dataset.stds=[0.5,[1,1,1,2]]",
                          "dataset.weights=[1,3]"])
    dataset = instantiate(cfg.dataset)
    assert dataset.dim == 4
    assert OmegaConf.to_container(cfg.dataset)["weights"] == [1, 3]
    assert dataset.log_weights.exp().tolist() == pytest.approx([0.25, 0.75])
    assert dataset.stds[1].tolist() == [1, 1, 1, 2]


def points_csv(directory) -> str:
    """A small points file with columns x, y (for dataset=file)."""
    path = directory / "points.csv"
    np.savetxt(path, np.random.default_rng(0).standard_normal((50, 2)), delimiter=",", header="x,y", comments="")
    return str(path)


@pytest.mark.parametrize("option", options("dataset"))
def test_every_dataset_gives_samples_of_its_shape(option, tmp_path):
    extra = [f"dataset.path={points_csv(tmp_path)}"] if option == "file" else []
    dataset = instantiate(compose_config([f"dataset={option}", *extra]).dataset)
    x = dataset.sample(7, np.random.default_rng(0))
    assert x.shape == (7, *dataset.shape) and int(np.prod(dataset.shape)) == dataset.dim
