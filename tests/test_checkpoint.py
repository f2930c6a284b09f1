"""Jobs that start from a checkpoint: same samples as the job that trained it; a checkpoint that does not fit is a
one-line config error; a sweep directory supplies the checkpoint of each (configuration, seed)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from omegaconf import open_dict

from diffusion_runner.__main__ import config_error
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from tests.conftest import TINY, compose_config
from tests.test_cli import cli


def job(overrides, out, ckpt_path=None):
    cfg = compose_config(overrides)
    if ckpt_path is not None:
        with open_dict(cfg):
            cfg.ckpt_path = str(ckpt_path)
    out.mkdir()
    results = {}
    run(cfg, out, NoLogger(), results)
    return results


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small trained job (ddpm, default model) and its results."""
    out = tmp_path_factory.mktemp("trained") / "job"
    return out, job([*TINY, "train.steps=300"], out)


def test_a_job_from_a_checkpoint_reproduces_the_trained_jobs_samples(trained, tmp_path):
    out, results = trained
    loaded = job([*TINY, "train.steps=300"], tmp_path / "again", ckpt_path=out)
    assert np.array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "again/samples.npy"))
    for key in ("kl_kde", "chamfer", "emd", "nll", "kl_ode"):
        assert loaded[key] == results[key], key
    assert loaded["ckpt_path"] == str(out / "checkpoint.pt") and loaded["ckpt_step"] == 300
    assert "train_seconds" not in loaded and not (tmp_path / "again/checkpoint.pt").exists()


def test_a_checkpoint_samples_with_any_sampler_and_no_training(trained, tmp_path):
    out, _ = trained
    results = job([*TINY, "sampler=heun", "sampler.steps=10"], tmp_path / "heun", ckpt_path=out / "checkpoint.pt")
    assert results["nfe"] == 20 and np.isfinite(results["kl_kde"])


@pytest.mark.parametrize("override,named", [
    ("sde=ou", "sde._target_"), ("model.backbone.width=64", "model.backbone.width"),
    ("dataset=swiss_roll", "dataset._target_"),
    ("model=oracle", "model._target_"),
])
def test_a_checkpoint_that_does_not_fit_is_a_one_line_config_error(trained, tmp_path, override, named):
    out, _ = trained
    with pytest.raises(Exception) as info:
        job([*TINY, override], tmp_path / "bad", ckpt_path=out)
    message = config_error(info.value)
    assert message is not None and "\n" not in message, message
    assert message.startswith("ckpt_path:") and named in message, message


def test_unreadable_checkpoints_are_refused(trained, tmp_path):
    out, _ = trained
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((out / "checkpoint.pt").read_bytes()[:1000])
    pickled = tmp_path / "pickled.pt"
    with pickled.open("wb") as f:  # an arbitrary object: weights_only loading must not run it
        pickle.dump({"model": {}, "config": {}, "payload": Exception("not a tensor")}, f, protocol=2)
    for path, why in ((truncated, "not a readable checkpoint"), (pickled, "not a readable checkpoint"),
                      (tmp_path / "nowhere", "does not exist"), (tmp_path, "no checkpoint.pt")):
        with pytest.raises(Exception) as info:
            job(TINY, tmp_path / f"bad_{path.name}", ckpt_path=path)
        message = config_error(info.value)
        assert message is not None and why in message and "\n" not in message, (path, message)


def test_a_sweep_over_samplers_reuses_the_checkpoint_of_each_seed(tmp_path):
    train_sweep, eval_sweep = tmp_path / "train", tmp_path / "eval"
    common = TINY[1:]  # TINY[0] sets train.steps
    proc = cli("-m", "seed=0,1", "train.steps=100", *common, f"hydra.sweep.dir={train_sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = cli("-m", "seed=0,1", "sampler=ddim,heun", "sampler.steps=5", "train.steps=100", *common,
               f"ckpt_path={train_sweep}",
               f"hydra.sweep.dir={eval_sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for num in range(4):
        metrics = json.loads((eval_sweep / f"{num}/metrics.json").read_text())
        overrides = (eval_sweep / f"{num}/.hydra/overrides.yaml").read_text()
        seed = 0 if "seed=0" in overrides else 1
        trained_on = torch.load(metrics["ckpt_path"], weights_only=True)["config"]["seed"]
        assert metrics["status"] == "ok" and trained_on == seed
        assert not (eval_sweep / f"{num}/checkpoint.pt").exists()
    # A job whose training configuration no trained job had: one line naming the difference.
    proc = cli("seed=0", "train.steps=200", *common, f"ckpt_path={train_sweep}",
               f"hydra.run.dir={tmp_path / 'lost'}", cwd=tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("config error: ckpt_path:") and "train.steps" in last, last


def test_an_unfinished_checkpoint_is_refused_with_the_way_to_finish_it(trained, tmp_path):
    out, _ = trained
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    unfinished = tmp_path / "unfinished.pt"
    torch.save({**state, "step": 100, "losses": state["losses"][:100]}, unfinished)
    with pytest.raises(Exception) as info:
        job(TINY, tmp_path / "bad", ckpt_path=unfinished)
    assert config_error(info.value) == (f"ckpt_path: {unfinished} holds an unfinished run (step 100 of 300); finish "
                                        f"its training with resume={unfinished}")
