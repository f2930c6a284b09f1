"""The real command line: one job end to end, a wandb-logged job, a bad option, a config error."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import torch
import yaml

from tests.conftest import TINY


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "diffusion_runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_job_end_to_end_writes_every_file(tmp_path):
    out = tmp_path / "job"
    proc = cli("sde=ddpm", "weighting=inv_var", "train.steps=300", *TINY[1:], f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert yaml.safe_load((out / ".hydra/overrides.yaml").read_text())[:2] == ["sde=ddpm", "weighting=inv_var"]
    assert (out / ".hydra/config.yaml").exists() and (out / ".hydra/hydra.yaml").exists()
    log = (out / "run.log").read_text()
    assert "step 300/300" in log and "steps/s" in log
    assert "\r" not in proc.stdout + proc.stderr  # not on a terminal: log lines, no progress bar
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "ok"
    assert metrics["nll_divergence"] == "exact"  # 2-D data: the exact divergence (auto)
    for key in ("kl_kde", "kl_kde_floor", "chamfer", "emd", "train_seconds", "sample_seconds", "eval_seconds"):
        assert isinstance(metrics[key], float) and np.isfinite(metrics[key]), key
    samples = np.load(out / "samples.npy")
    assert samples.shape == (1000, 2) and samples.dtype == np.float32
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["step"] == 300 and "optimizer" in ckpt and "online_model" in ckpt
    for png in ("samples", "density", "trajectory", "loss"):
        assert (out / f"{png}.png").read_bytes()[:4] == b"\x89PNG", png
    assert not (tmp_path / "outputs").exists()  # hydra.run.dir was honoured


def inspect(run_dir) -> tuple[dict, list[dict]]:
    """(the summary, config, tags and name of an offline wandb run; its history rows), read from the run's own file
    by `wandb leet inspect`."""
    def leet(*args):
        proc = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", *args, str(run_dir)],
                              capture_output=True, text=True, timeout=120, check=True)
        return proc.stdout

    records = [json.loads(line) for line in leet("--json").splitlines() if line.strip()]
    return json.loads(leet("--summary", "--json")), [r["history"]["item"] for r in records if r["type"] == "history"]


def test_wandb_logger_writes_one_offline_run_per_job_and_the_report_run_in_the_sweeps_group(tmp_path):
    sweep = tmp_path / "sweep_abc"
    proc = cli("-m", "logger=wandb", "sde=ddpm,ou", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for num, sde in ((0, "ddpm"), (1, "ou")):
        (run_dir,) = (sweep / str(num) / "wandb").glob("offline-run-*")
        summary, history = inspect(run_dir)
        assert f"sde={sde}" in summary["name"]  # name: the job's overrides
        assert {f"sde={sde}", "model=mlp", "loss=dsm", "weighting=inv_var", "sampler=ddim", "dataset=gmm8",
                "seed=0"} <= set(summary["tags"])
        assert summary["config"]["choices"]["sde"] == sde
        assert "kl_kde" in summary["summary"] and "train_seconds" in summary["summary"]  # the final metrics
        curves = [row for row in history if "train/loss" in row]
        assert [row["_step"] for row in curves] == [100, 200]  # train.log_every=100 of 200 steps
        for key in ("train/lr", "train/grad_norm", "train/steps_per_s"):
            assert all(row[key] >= 0 for row in curves), key
        images = {key.split(".")[0] for row in history for key in row if key.endswith("._type")}
        assert {"samples", "density", "trajectory", "loss", "animation"} <= images
        (gif,) = {row["animation._type"] for row in history if "animation._type" in row}
        assert gif == "video-file"
        assert json.loads((sweep / str(num) / "metrics.json").read_text())["status"] == "ok"
        # The offline run file also keeps the group, the sweep directory's name, as it is.
        assert b"sweep_abc" in next(run_dir.glob("run-*.wandb")).read_bytes()
    (report_dir,) = (sweep / "wandb").glob("offline-run-*")  # the report run
    summary, history = inspect(report_dir)
    assert summary["name"] == "report" and b"sweep_abc" in next(report_dir.glob("run-*.wandb")).read_bytes()
    (table,) = [row for row in history if row.get("results._type") == "table-file"]
    assert table["results.nrows"] == 2  # one row per configuration
    assert {"results_bars", "results_densities"} <= {k.split(".")[0] for row in history for k in row
                                                      if k.endswith("._type") and "image" in str(row[k])}


def test_unknown_option_lists_valid_ones(tmp_path):
    proc = cli("sampler=nope", cwd=tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'sampler/nope'" in proc.stderr and "euler_maruyama" in proc.stderr


def test_config_error_is_one_line_and_recorded(tmp_path):
    out = tmp_path / "job"
    proc = cli("dataset=swiss_roll", "model=oracle", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("config error: model=oracle needs")
    assert "Traceback" not in proc.stderr + proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "model=oracle" in metrics["error"]


def test_a_late_failure_keeps_what_was_done(tmp_path):
    """A sampler that overflows (VE with sigma_max = 1e30 in float32) fails the job after sampling: metrics.json
    says failed and keeps the results so far; the samples and the checkpoint are kept."""
    out = tmp_path / "job"
    proc = cli("model=oracle", "sde=ve", "sde.sigma_max=1e30", *TINY, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode != 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "non-finite samples" in metrics["error"]
    assert metrics["sample_seconds"] > 0 and metrics["nfe"] == 100 and "kl_kde" not in metrics
    assert (out / "samples.npy").exists() and (out / "checkpoint.pt").exists()


def test_a_runtime_failure_is_one_line_naming_the_stage_and_the_log_which_holds_the_traceback(tmp_path):
    out = tmp_path / "job"
    args = (*TINY, "train.optimizer.lr=1e9", f"hydra.run.dir={out}")
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert re.fullmatch(rf"job failed in stage train: FloatingPointError: training diverged: the loss is (nan|inf) "
                        rf"at step \d+ \(traceback in {re.escape(str(out / 'run.log'))}\)", line), line
    assert "Traceback (most recent call last)" in (out / "run.log").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["stage"] == "train"
    full = subprocess.run([sys.executable, "-m", "diffusion_runner", *args, "overwrite=true"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback (most recent call last)" in full.stderr


def test_wandb_online_without_a_server_falls_back_to_offline_and_says_so(tmp_path):
    out = tmp_path / "job"
    env = {**os.environ, "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": "a" * 40}  # nothing listens on 9
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "diffusion_runner", "model=oracle", *TINY, "logger=wandb",
                           "logger.mode=online", "logger.init_timeout=2", f"hydra.run.dir={out}"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - start < 60
    assert "the online run did not start" in proc.stdout and "wandb sync" in proc.stdout
    (run_file,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"kl_kde" in run_file.read_bytes()
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"


def test_a_yaml_syntax_error_in_a_config_file_is_one_line_naming_the_file_and_line(tmp_path):
    (tmp_path / "conf/experiment").mkdir(parents=True)
    bad = tmp_path / "conf/experiment/broken.yaml"
    bad.write_text("# @package _global_\ntrain:\n  steps: [1000, 2000\n  batch_size: 64\n")
    proc = cli(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "+experiment=broken", cwd=tmp_path)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"config error: {bad}, line 4, column ") and "YAML syntax" in line
    assert not (tmp_path / "outputs").exists()
    full = subprocess.run([sys.executable, "-m", "diffusion_runner", f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
                           "+experiment=broken"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback (most recent call last)" in full.stderr
