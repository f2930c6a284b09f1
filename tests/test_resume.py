"""Nothing lost around a long run, on the real command line: a job killed with -9, interrupted by SIGINT or SIGTERM
and started again on its run directory ends with the same metrics, bit for bit, as one never stopped; an
interrupted sweep reports what finished and its re-run finishes it; a run directory holding another run is refused
and left as it was."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import TINY

LONG = [*(o for o in TINY if not o.startswith(("train.steps=", "train.log_every="))), "train.steps=1000",
        "train.log_every=250", "train.checkpoint_every=50"]
TIMINGS = ("train_seconds", "train_steps_per_s", "sample_seconds", "eval_seconds", "wall_seconds", "resumed_at_step")


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "diffusion_runner", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def start(*args, cwd):
    return subprocess.Popen([sys.executable, "-m", "diffusion_runner", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(path, timeout=120):
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def metrics(job_dir):
    return json.loads((job_dir / "metrics.json").read_text())


def results(job_dir):
    """metrics.json without what differs between any two runs (timings) or tells a resumed one apart."""
    return {k: v for k, v in metrics(job_dir).items() if k not in TIMINGS}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("straight") / "job"
    proc = cli(*LONG, f"hydra.run.dir={out}", cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results(out)


def test_a_job_killed_with_sigkill_and_restarted_ends_bit_identical(uninterrupted, tmp_path):
    out = tmp_path / "job"
    saved = kill_mid_training(*LONG, out=out, cwd=tmp_path)
    assert 0 < saved < 1000
    again = cli(*LONG, f"hydra.run.dir={out}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics(out)["resumed_at_step"] == saved
    assert results(out) == uninterrupted


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_job_records_it_saves_a_loadable_checkpoint_and_continues(uninterrupted, tmp_path, sig):
    out = tmp_path / "job"
    proc = start(*LONG, f"hydra.run.dir={out}", cwd=tmp_path)
    wait_for(out / "checkpoint.pt")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr[-3000:]
    record = metrics(out)
    assert record["status"] == "interrupted" and record["stage"] == "train"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == record["interrupted_at_step"] < 1000 and len(state["losses"]) == state["step"]
    (line,) = stderr.strip().splitlines()
    assert f"interrupted by {sig.name} in stage train" in line and f"hydra.run.dir={out}" in line
    if sig == signal.SIGTERM:
        return  # continuing is the same as after SIGINT
    again = cli(*line.split("continue with: python -m diffusion_runner ")[1].split(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert results(out) == uninterrupted


def test_an_interrupted_sweep_reports_what_finished_and_its_rerun_finishes_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = start("-m", *LONG, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(sweep / "0/checkpoint.pt")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert metrics(sweep / "0")["status"] == "interrupted" and not (sweep / "1/metrics.json").exists()
    report = (sweep / "results.md").read_text()
    assert "| interrupted |" in report and "| missing |" in report
    command = stderr.strip().splitlines()[-1].split("finish the sweep with: ")[1]
    assert command in report and command.startswith("python -m diffusion_runner -m ")
    finished = cli(*command.split()[3:], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [metrics(sweep / n)["status"] for n in "01"] == ["ok", "ok"]
    assert "resumed_at_step" in metrics(sweep / "0") and "resumed_at_step" not in metrics(sweep / "1")
    before = (sweep / "0/metrics.json").read_bytes()
    done = cli(*command.split()[3:], cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.count("already holds this run's results") == 2
    assert (sweep / "0/metrics.json").read_bytes() == before


def test_a_sweep_job_its_slurm_scheduler_ends_has_failed_the_others_run_and_a_rerun_continues_it(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_runner", "-m", *LONG, "seed=0,1",
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "0"})
    wait_for(sweep / "0/checkpoint.pt")
    proc.send_signal(signal.SIGTERM)  # what scancel sends the job's processes
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "1 of 2 jobs did not finish ok" in stderr, stderr[-3000:]
    record = metrics(sweep / "0")
    assert record["status"] == "failed" and record["stage"] == "train"
    assert record["error"].startswith("SchedulerEnded: Slurm job 77_0 ended by the scheduler (SIGTERM) at step ")
    assert metrics(sweep / "1")["status"] == "ok"
    again = cli("-m", *LONG, "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert metrics(sweep / "0")["resumed_at_step"] == record["interrupted_at_step"]


ORACLE = ["model=oracle", *TINY]


def test_a_run_directory_holding_another_run_is_refused_untouched_unless_overwrite(tmp_path):
    out = tmp_path / "job"
    assert cli(*ORACLE, "sde=ou", f"hydra.run.dir={out}", cwd=tmp_path).returncode == 0
    files = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "run.log"}
    refused = cli(*ORACLE, "sde=ddpm", f"hydra.run.dir={out}", cwd=tmp_path)
    assert refused.returncode == 1
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith(f"config error: hydra.run.dir: {out} already holds another run") and "sde" in line
    assert "overwrite=true" in line
    assert {n: (out / n).read_bytes() for n in files} == files
    replaced = cli(*ORACLE, "sde=ddpm", "overwrite=true", f"hydra.run.dir={out}", cwd=tmp_path)
    assert replaced.returncode == 0 and "removed the previous run's" in replaced.stdout
    assert metrics(out)["status"] == "ok" and (out / "metrics.json").read_bytes() != files["metrics.json"]


def kill_mid_training(*args, out, cwd):
    """Start a job, kill -9 it once it has saved a checkpoint; the step saved."""
    proc = start(*args, f"hydra.run.dir={out}", cwd=cwd)
    wait_for(out / "checkpoint.pt")
    proc.kill()
    proc.wait()
    assert not (out / "metrics.json").exists()  # killed mid-training
    return torch.load(out / "checkpoint.pt", weights_only=True)["step"]


def test_resume_continues_another_directorys_unfinished_run_and_its_own_once_it_has_one(uninterrupted, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    kill_mid_training(*LONG, out=first, cwd=tmp_path)
    kill_mid_training(*LONG, f"resume={first}", out=second, cwd=tmp_path)
    saved = torch.load(second / "checkpoint.pt", weights_only=True)["step"]
    proc = cli(*LONG, f"resume={first}", f"hydra.run.dir={second}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert metrics(second)["resumed_at_step"] == saved  # its own checkpoint, newer than first's
    assert results(second) == uninterrupted
    mismatch = cli(*LONG, "sde=ou", f"resume={first}", f"hydra.run.dir={tmp_path / 'third'}", cwd=tmp_path)
    (line,) = mismatch.stderr.strip().splitlines()
    assert mismatch.returncode == 1 and line.startswith("config error: resume: ") and "sde" in line


# Sampling a loaded model long enough to be killed in each stage: a slow sampler, then a slow likelihood.
FROM_CKPT = [*(o for o in TINY if not o.startswith(("sampler.steps=", "eval.n_samples=", "eval.metrics.likelihood.n"))),
             "sampler=euler_maruyama", "sampler.steps=400", "eval.n_samples=4000",
             "eval.metrics.likelihood.n_points=2000"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A trained run, and the results of sampling it with FROM_CKPT uninterrupted."""
    root = tmp_path_factory.mktemp("ckpt")
    assert cli(*TINY, f"hydra.run.dir={root / 'trained'}", cwd=root).returncode == 0
    out = root / "straight"
    proc = cli(*FROM_CKPT, f"ckpt_path={root / 'trained'}", f"hydra.run.dir={out}", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "trained", results(out)


def wait_for_text(path, text, timeout=120):
    end = time.monotonic() + timeout
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < end, f"{text!r} never appeared in {path}"
        time.sleep(0.02)


@pytest.mark.parametrize("stage", ["sample", "evaluate"])
def test_a_ckpt_path_job_killed_with_sigkill_continues_to_identical_metrics(checkpoint, tmp_path, stage):
    trained, straight = checkpoint
    out = tmp_path / "job"
    args = (*FROM_CKPT, f"ckpt_path={trained}", f"hydra.run.dir={out}")
    proc = start(*args, cwd=tmp_path)
    if stage == "sample":
        wait_for_text(out / "run.log", "no training")
    else:
        wait_for(out / "samples.npy")
    proc.kill()
    proc.wait()
    assert not (out / "metrics.json").exists()
    assert (out / "samples.npy").exists() == (stage == "evaluate")  # killed in the stage it was in
    again = cli(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert results(out) == straight


def test_a_killed_sampler_sweep_over_one_checkpoint_finishes_from_its_printed_command(checkpoint, tmp_path):
    trained, straight = checkpoint
    sweep = tmp_path / "sweep"
    proc = start("-m", *FROM_CKPT, f"ckpt_path={trained}", "sampler=euler_maruyama,ddim",
                 f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    wait_for(sweep / "0/samples.npy")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    report = subprocess.run([sys.executable, "-m", "diffusion_runner.report", str(sweep)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 1
    command = report.stdout.strip().splitlines()[-1].split("finish the sweep with: ")[1]
    finished = cli(*shlex.split(command)[3:], cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert [metrics(sweep / n)["status"] for n in "01"] == ["ok", "ok"]
    assert results(sweep / "0") == straight
