"""Shared helpers: compose the project's config with Hydra's compose API, and tiny job settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("dataset", "sde", "loss", "weighting", "model", "sampler", "logger")

# A job small enough for a test: few steps, few samples, small metric sizes.
TINY = [
    "train.steps=200", "train.batch_size=256", "train.n_data=2000", "train.log_every=100",
    "sampler.steps=100", "eval.n_samples=1000", "eval.metrics.kl_kde.n_reference=1000",
    "eval.metrics.chamfer.n_clouds=10", "eval.metrics.emd.n=300", "eval.metrics.w2.n=300",
    "eval.metrics.likelihood.n_points=200", "eval.metrics.likelihood.steps=5",
]
# Samplers without a grid of `steps`: their small settings.
TINY_SAMPLERS = {"ode": ["sampler.rtol=1e-3", "sampler.atol=1e-3"],
                 "annealed_langevin": ["sampler.levels=5", "sampler.steps_per_level=20"]}


def tiny_with(group: str, option: str) -> list[str]:
    """TINY for a job that picks `option` in `group`."""
    if group == "sampler" and option in TINY_SAMPLERS:
        return [o for o in TINY if not o.startswith("sampler.steps=")] + TINY_SAMPLERS[option]
    return list(TINY)


FAMILIES = sorted(p.stem for p in (CONF / "family").glob("*.yaml"))


def family_of(option: str) -> str:
    """The family a shipped option serves: the one its name starts with (model=chain_oracle: chain), else score."""
    prefix = option.split("_")[0]
    return prefix if prefix in FAMILIES else "score"


def all_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def options(group: str) -> list[str]:
    """The score family's options of a group (the groups every test of the score family iterates)."""
    return [o for o in all_options(group) if family_of(o) == "score"]


def compose_config(overrides=(), return_hydra_config=False):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def learned_model(sde, dataset, overrides=()):
    """The configured (default: model=mlp) learned model for this SDE and dataset, freshly initialised from seed 0."""
    torch.manual_seed(0)
    return instantiate(compose_config(list(overrides)).model, sde=sde, dataset=dataset)


# Options with tests of their own (tests/test_images.py, tests/test_points_file.py): for images, not the points the
# other options serve, or needing a file.
TESTED_APART = ("digits", "unet", "file")
BACKBONES = [name for name in options("model") if name not in ("oracle", *TESTED_APART)]


@pytest.fixture
def tiny():
    return list(TINY)
