"""One job in-process for every option of every group: it runs to completion and writes its files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner.__main__ import config_error
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from tests.conftest import GROUPS, TESTED_APART, compose_config, options, tiny_with


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in options(g)
                                          if g != "logger" and o not in TESTED_APART])
def test_job_runs_for_every_option(group, option, tmp_path):
    """Loggers run through the command line (test_cli.py), as they need Hydra's runtime."""
    cfg = compose_config([f"{group}={option}", *tiny_with(group, option)])
    results = {}
    run(cfg, tmp_path, NoLogger(), results)
    samples = np.load(tmp_path / "samples.npy")
    assert samples.dtype == np.float32 and samples.shape == (cfg.eval.n_samples, instantiate(cfg.dataset).dim)
    assert np.isfinite(samples).all()
    for name in ("checkpoint.pt", "samples.png", "density.png", "trajectory.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    trained = option != "oracle"
    assert (tmp_path / "loss.png").exists() == trained
    for key in ("chamfer", "emd", "nll", "nll_bpd", "train_seconds", "sample_seconds", "eval_seconds", "nfe"):
        assert np.isfinite(results[key]), key
    has_density = cfg.dataset._target_.endswith(("ring_mixture", "GaussianMixture"))
    for key in ("kl_kde", "kl_kde_floor", "kl_ode", "data_entropy"):
        assert (key in results) == has_density, key
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ckpt["config"]["seed"] == cfg.seed and "model" in ckpt
    json.dumps(results)  # everything is JSON-serialisable


def test_same_seed_same_samples(tiny, tmp_path):
    cfg = compose_config([*tiny, "train.steps=50"])
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        run(cfg, tmp_path / name, NoLogger(), {})
    assert np.array_equal(np.load(tmp_path / "a/samples.npy"), np.load(tmp_path / "b/samples.npy"))


@pytest.mark.parametrize("override,key", [
    ("train.grad_clip=-1", "train.grad_clip"), ("train.grad_clip=0", "train.grad_clip"),
    ("train.n_data=0", "train.n_data"), ("seed=-1", "seed"), ("threads=0", "threads"),
    ("sampler.steps=abc", "sampler.steps"), ("eval.snapshots=1", "eval.snapshots"),
    ("+sampler.stepz=5", "sampler"), ("sde.theta=abc", "sde"), ("train.optimizer.lr=-1", "train.optimizer"),
    ("train.optimizer._target_=torch.optim.RMSprop", "train.optimizer"), ("dataset.std=0", "dataset"),
    ("eval.metrics.emd.n=0", "eval.metrics.emd.n"), ("eval.metrics.chamfer.n_clouds=0", "eval.metrics.chamfer"),
    ("train.ema_decay=1.5", "train.ema_decay"),
])
def test_config_mistakes_give_one_line_naming_the_key(override, key, tiny, tmp_path):
    overrides = [*tiny, override] + (["sde=ou"] if override.startswith("sde.theta") else [])
    with pytest.raises(Exception) as info:
        run(compose_config(overrides), tmp_path, NoLogger(), {})
    message = config_error(info.value)
    assert message is not None and "\n" not in message and key in message, message


def test_prior_mismatch_is_warned(tiny, tmp_path, caplog):
    run(compose_config([*tiny, "sde=ou", "sde.T=0.5", "model=oracle"]), tmp_path, NoLogger(), {})
    assert "samples start from the wrong distribution" in caplog.text
    caplog.clear()
    run(compose_config([*tiny, "sde=ou", "model=oracle"]), tmp_path, NoLogger(), {})
    assert "wrong distribution" not in caplog.text


def test_a_kde_metric_in_high_dimension_is_skipped_with_a_warning(tiny, tmp_path, caplog):
    means = "[" + ",".join("[" + ",".join(["3" if i == k else "0" for i in range(10)]) + "]" for k in range(2)) + "]"
    results = {}
    run(compose_config([*tiny, "dataset=gmm", f"dataset.means={means}", "dataset.stds=0.5", "~dataset.weights",
                        "model=oracle"]), tmp_path, NoLogger(), results)
    assert "kl_kde" not in results and "metric kl_kde skipped: 10-D data" in caplog.text
    assert np.isfinite(results["chamfer"]) and np.isfinite(results["kl_ode"])


def test_a_full_disk_leaves_no_partial_file_under_a_final_name(tiny, tmp_path, monkeypatch):
    """torch.save writes part of the checkpoint, then the disk is full: no checkpoint.pt, no temporary file."""
    real_save = torch.save

    def save_then_fail(state, path, *args, **kwargs):
        real_save({"partial": torch.zeros(10)}, path)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        run(compose_config([*tiny, "train.steps=20"]), tmp_path, NoLogger(), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_every_output_file_is_written_atomically(tiny, tmp_path, monkeypatch):
    """Every file of a job passes through atomic_path: renamed into place, never written under its final name."""
    import diffusion_runner.atomic as atomic

    renamed = []
    real_replace = atomic.os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (renamed.append(Path(dst).name), real_replace(src, dst)))
    run(compose_config([*tiny, "train.steps=20"]), tmp_path, NoLogger(), {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(renamed)
