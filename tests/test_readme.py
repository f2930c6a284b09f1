"""The README's examples work as written: a new backbone and a new loss are each one class and one YAML, a new
family one package and one YAML."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from diffusion_runner.build import build_loss
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from diffusion_runner.train import TrainOptions, train
from diffusion_runner.validate import validate
from tests.conftest import CONF, TINY, compose_config

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def block(first_line: str) -> str:
    """The fenced code block of the README whose first line is `first_line`."""
    match = re.search(r"```\w+\n(" + re.escape(first_line) + r"\n.*?)```", README, re.S)
    assert match, first_line
    return match.group(1)


@pytest.mark.parametrize("code,yaml,group,option", [
    ("# diffusion_runner/nets/gated.py (or any importable module)", "# conf/model/gated.yaml", "model",
     "gated"),
    ("# diffusion_runner/scaled_dsm.py (or any importable module)", "# conf/loss/scaled_dsm.yaml", "loss",
     "scaled_dsm"),
])
def test_the_readme_example_is_one_class_and_one_yaml(code, yaml, group, option, tmp_path, monkeypatch):
    (tmp_path / f"example_{option}.py").write_text(block(code))
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    target = re.search(r"_target_: (\S+)", block(yaml)).group(1)
    moved = block(yaml).replace(target, f"example_{option}.{target.split('.')[-1]}")  # the class from tmp_path
    (conf / group / f"{option}.yaml").write_text(moved)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=[f"{group}={option}"])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    torch.manual_seed(0)
    model = instantiate(cfg.model, sde=sde, dataset=dataset)
    data = torch.as_tensor(dataset.sample(2000, np.random.default_rng(0)))
    result = train(model, build_loss(cfg, model), data,
                   TrainOptions(steps=200, batch_size=128, optimizer=instantiate(cfg.train.optimizer)),
                   generator=torch.Generator().manual_seed(0))
    assert np.isfinite(result.losses).all() and result.losses[-30:].mean() < result.losses[:30].mean()
    sys.modules.pop(f"example_{option}", None)


def test_the_readme_family_is_one_subpackage_and_one_yaml(tmp_path, monkeypatch):
    """The README's new family, written as it stands (its package and YAML only), runs a job to its results."""
    package = tmp_path / "example_gaussian"
    package.mkdir()
    (package / "__init__.py").write_text(block("# diffusion_runner/gaussian/__init__.py (or any importable package)"))
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    yaml = block("# @package _global_\n# conf/family/gaussian.yaml (the package line first: Hydra reads it only there)")
    (conf / "family" / "gaussian.yaml").write_text(yaml.replace("diffusion_runner.gaussian.", "example_gaussian."))
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("config", overrides=["family=gaussian", *TINY[:4], "eval.n_samples=1000",
                                           "eval.metrics.kl_kde.n_reference=1000", "eval.metrics.chamfer.n_clouds=10",
                                           "eval.metrics.emd.n=300", "eval.metrics.w2.n=300",
                                           "train.optimizer.lr=0.05"])
    results, out = {}, tmp_path / "job"
    out.mkdir()
    run(cfg, out, NoLogger(), results)
    # One Gaussian fitted to gmm8: its exact KL is the single Gaussian's ~1.44 nats (the VAE's collapse value).
    assert results["nll_kind"] == "exact" and 1.3 < results["kl_exact"] < 1.7, results
    assert (out / "samples.npy").exists()
    sys.modules.pop("example_gaussian", None)



COMMANDS = sorted({line.split("#")[0].strip()
                   for line in re.findall(r"^python -m diffusion_runner [^\n]*", README, re.M)})
SHOWN_AS_ERRORS = {"python -m diffusion_runner family=vae sde=ou"}  # the README shows the one-line error it gives


@pytest.mark.parametrize("command", [c for c in COMMANDS if " -m " not in c[len("python -m"):] and "<" not in c
                                     and "--" not in c and "ckpt_path" not in c and "resume" not in c
                                     and c not in SHOWN_AS_ERRORS])
def test_every_single_job_command_of_the_readme_composes_and_validates(command):
    """What a reader copies: each one-job command's overrides compose and pass the config check."""
    validate(compose_config([arg for arg in shlex.split(command)[3:] if not arg.startswith("hydra.")]))
