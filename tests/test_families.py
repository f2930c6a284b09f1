"""Every family on the one seam: each composes, runs a short job to status ok, ends bit-identical after kill -9 and a
restart, and refuses a key of another family or a bad value of its own in one line naming the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diffusion_runner.__main__ import config_error
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from diffusion_runner.validate import validate
from tests.conftest import FAMILIES, TINY, compose_config
from tests.test_resume import kill_mid_training, metrics, results

# A short job of each family (TINY's sampler.steps and likelihood solver settings are the score family's).
SHARED = [o for o in TINY if not o.startswith(("sampler.steps=", "eval.metrics.likelihood.steps"))]
SMALL = {
    "score": list(TINY),
    "vae": SHARED + ["eval.metrics.purity.n_points=1000"],
    "chain": SHARED + ["model.schedule.T=50"],
    "flow": SHARED + ["sampler.steps=20", "eval.metrics.likelihood.steps=5", "eval.metrics.transport.n=300",
                      "eval.metrics.transport.steps=20"],
}


def test_every_family_has_its_short_job():
    assert sorted(SMALL) == FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_a_short_job_of_every_family_runs_to_ok(family, tmp_path):
    results_ = {}
    run(compose_config([f"family={family}", *SMALL[family]]), tmp_path, NoLogger(), results_)
    assert results_["nll_kind"] == {"score": "ode", "vae": "exact", "chain": "elbo", "flow": "ode"}[family]
    for name in ("samples.npy", "samples.png", "density.png", "trajectory.png", "loss.png", "checkpoint.pt"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "confusion.png").exists() == (family == "vae")
    assert (tmp_path / "paths.png").exists() == (family == "flow")


# The flow's bridge between two datasets: its source rows, entropic pairs and score network resume with it (a step
# costs more, with Sinkhorn and a second network, so it runs 400: still a checkpoint every 50).
BRIDGE = ["matcher=sb_cfm", "source=moons", "dataset=swiss_roll"]


@pytest.mark.parametrize("family,extra,steps", [("vae", [], 1000), ("chain", [], 1000), ("flow", BRIDGE, 400)],
                         ids=["vae", "chain", "flow"])
def test_kill_9_then_restart_of_every_family_gives_bit_identical_metrics(family, extra, steps, tmp_path):
    long = [f"family={family}", *(o for o in SMALL[family] if not o.startswith(("train.steps=", "train.log_every="))),
            *extra, f"train.steps={steps}", f"train.log_every={steps // 4}", "train.checkpoint_every=50"]
    straight = tmp_path / "straight"
    proc = subprocess.run([sys.executable, "-m", "diffusion_runner", *long, f"hydra.run.dir={straight}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "killed"
    saved = kill_mid_training(*long, out=out, cwd=tmp_path)
    assert 0 < saved < steps
    again = subprocess.run([sys.executable, "-m", "diffusion_runner", *long, f"hydra.run.dir={out}"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics(out)["resumed_at_step"] == saved
    assert results(out) == results(straight)


@pytest.mark.parametrize("overrides,message", [
    (["family=vae", "+sde=ou"], "sde: unknown key (family diffusion_runner.vae.VAE takes model, loss, sampler)"),
    (["model=chain"], "model: diffusion_runner.chain.ChainModel is not a diffusion_runner.score.model.ScoreModel"),
    (["family=chain", "model=oracle"], "model: diffusion_runner.score.Oracle is not a "
                                       "diffusion_runner.chain.model.ReverseChain"),
    (["family=vae", "loss.tau=0"], "loss.tau: must be a number > 0, got 0"),
    (["family=vae", "loss.tau_min=-1"], "loss.tau_min: must be a number > 0, got -1"),
    (["family=vae", "model.categories=1"], "model.categories: must be an integer >= 2, got 1"),
    (["family=vae", "model.decoder_std=0"], "model.decoder_std: must be a number > 0, or null to learn it, got 0"),
    (["family=vae", "model.encoder._target_=diffusion_runner.nets.Transformer", "~model.encoder.width",
      "~model.encoder.depth", "~model.encoder.activation"], "model.encoder: this backbone maps x"),
    (["family=chain", "model.schedule.T=0"], "model.schedule.T: must be an integer >= 1, got 0"),
    (["family=chain", "schedule=constant_alpha", "model.schedule.alpha=1.0"],
     "model.schedule.alpha: must be a number in (0, 1), got 1.0"),
    (["family=chain", "schedule=constant_alpha", "model.schedule.alpha=0"],
     "model.schedule.alpha: must be a number in (0, 1), got 0"),
    (["family=chain", "model.schedule.beta_end=1.5"], "model.schedule.beta_end: must be a number in (0, 1), got 1.5"),
    (["family=chain", "model.parameterization=v"], "model.parameterization: 'v' is not one of ['eps', 'x0']"),
    (["family=chain", "loss.objective=hybrid"], "loss.objective: hybrid trains a learned variance"),
    (["family=chain", "sampler.steps=0"], "sampler.steps: must be an integer >= 1, or null for all T steps, got 0"),
])
def test_a_bad_family_value_or_a_foreign_key_is_one_line_naming_it(overrides, message, tmp_path):
    with pytest.raises(Exception) as info:
        family = overrides[0].split("=")[1] if overrides[0].startswith("family=") else "score"
        run(compose_config([*SMALL[family], *overrides]), tmp_path, NoLogger(), {})
    line = config_error(info.value)
    assert line is not None and "\n" not in line and line.startswith(message), line


def test_a_group_of_another_family_on_the_command_line_is_one_line_naming_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "diffusion_runner", "family=vae", "sde=ou"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "config error: sde: not a config group of family vae (each family's groups are in the defaults of "
        "conf/family/vae.yaml)"]
    assert not (tmp_path / "outputs").exists()


def test_every_family_validates_with_its_defaults():
    for family in FAMILIES:
        validate(compose_config([f"family={family}"]))


def test_the_default_job_is_the_score_family():
    cfg = compose_config([])
    assert cfg.family._target_ == "diffusion_runner.score.Score" and cfg.sde._target_.endswith("VP")


@pytest.mark.parametrize("family,sampling", [("vae", "sampler.noise=false"), ("chain", "sampler.steps=10"),
                                             ("flow", "sampler.method=euler")])
def test_a_trained_model_of_every_family_samples_again_from_its_checkpoint(family, sampling, tmp_path):
    first, again = tmp_path / "trained", tmp_path / "again"
    first.mkdir(), again.mkdir()
    trained = {}
    run(compose_config([f"family={family}", *SMALL[family]]), first, NoLogger(), trained)
    results = {}
    run(compose_config([f"family={family}", *SMALL[family], sampling, f"ckpt_path={first}"]), again, NoLogger(),
        results)
    assert results["ckpt_step"] == 200 and not (again / "checkpoint.pt").exists()
    assert results["nll"] == trained["nll"]  # the same model: the likelihood does not depend on the sampler
