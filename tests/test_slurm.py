"""A sweep through a real Slurm scheduler (a one-node cluster of scripts/slurm_cluster.sh): one job cancelled while
it runs and one while it waits are each recorded as failed, the sweep does not hang and ends with its report, and
every daemon the test started is stopped.

It needs Slurm's Debian packages (`scripts/slurm_cluster.sh install`) and root to start the daemons, or a cluster
already running; elsewhere it is skipped with the reason. `.ci/run` installs the packages and sets
DIFFUSION_RUNNER_SLURM=required, under which a missing cluster is a failure, not a skip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import TINY

SCRIPT = Path(__file__).resolve().parents[1] / "scripts/slurm_cluster.sh"


def controller_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return ping.returncode == 0 and "is UP" in ping.stdout


def why_not() -> str | None:
    """Why no cluster can be had here, or None."""
    if controller_up():
        return None
    if shutil.which("slurmctld") is None:
        return "Slurm is not installed (scripts/slurm_cluster.sh install, as root; .ci/run does it)"
    if os.geteuid() != 0:
        return "no Slurm controller is running and starting one needs root (scripts/slurm_cluster.sh start)"
    return None


@pytest.fixture(scope="module")
def cluster():
    reason = why_not()
    if reason:
        if os.environ.get("DIFFUSION_RUNNER_SLURM") == "required":
            pytest.fail(f"DIFFUSION_RUNNER_SLURM=required, but {reason}")
        pytest.skip(reason)
    started = not controller_up()
    if started:
        subprocess.run([str(SCRIPT), "start"], check=True, timeout=120)
    yield
    if started:
        subprocess.run([str(SCRIPT), "stop"], check=True, timeout=120)
        status = subprocess.run([str(SCRIPT), "status"], capture_output=True, text=True, check=True).stdout
        assert "running" not in status, status


def squeue(name: str) -> dict[str, str]:
    """{job id: state} of the jobs named `name`."""
    out = subprocess.run(["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True).stdout
    return dict(line.split() for line in out.splitlines())


def test_cancelled_jobs_are_recorded_as_failed_and_the_sweep_ends_with_its_report(cluster, tmp_path):
    sweep, name = tmp_path / "sweep", f"diffusion-runner-test-{uuid.uuid4().hex[:8]}"
    tiny = [o for o in TINY if not o.startswith("train.steps=")]
    # 2 CPUs a job fill a 2-core node: the jobs run one at a time, so job 2 waits while the long job 1 runs.
    proc = subprocess.Popen([sys.executable, "-m", "diffusion_runner", "-m", "hydra/launcher=slurm", *tiny,
                             "train.steps=200,1000000,201", f"hydra.launcher.name={name}",
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 180
        while not (sweep / "1/run.log").exists():  # job 1 has started: its signal handlers are in place
            assert proc.poll() is None and time.monotonic() < end, "job 1 never started"
            time.sleep(0.2)
        jobs = squeue(name)
        running = next(job for job, state in jobs.items() if job.endswith("_1") and state == "RUNNING")
        array = running.split("_")[0]
        subprocess.run(["scancel", f"{array}_1", f"{array}_2"], check=True)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["scancel", "-n", name])
    assert proc.returncode == 1 and "2 of 3 jobs did not finish ok" in stderr, stderr[-3000:]
    records = [json.loads((sweep / f"{n}/metrics.json").read_text()) for n in range(3)]
    assert [r["status"] for r in records] == ["ok", "failed", "failed"]
    assert records[1]["error"].startswith(f"SchedulerEnded: Slurm job {array}_1 ended by the scheduler (SIGTERM)")
    assert records[2]["stage"] == "scheduler" and f"Slurm job {array}_2" in records[2]["error"]
    assert "CANCELLED" in records[2]["error"]
    report = (sweep / "results.md").read_text()
    assert report.count("| failed |") == 2 and "train.steps=201" in report
    assert squeue(name) == {}
