"""What a job does with the run directory it is given: start, skip its own finished run, continue its unfinished
one, refuse another run's files (unless overwrite), refuse an unreadable checkpoint; and a directory it cannot
write to (read-only, injected: this suite may run as root, whom permissions do not stop) fails in one line with no
partial file under a final name."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from diffusion_runner import rundir
from diffusion_runner.errors import ConfigError
from tests.conftest import TINY, compose_config, tiny_with


def config(*overrides):
    return OmegaConf.to_container(compose_config([*TINY, *overrides]), resolve=True)


def finished(out, cfg, status="ok"):
    out.mkdir(exist_ok=True)
    (out / "samples.npy").write_bytes(b"x")
    (out / "metrics.json").write_text(json.dumps({"status": status, "run_digest": rundir.digest(cfg)}))


def test_an_empty_directory_starts(tmp_path):
    assert rundir.prepare(tmp_path, config(), overwrite=False) == rundir.Previous()


def test_this_runs_finished_results_are_kept_and_the_job_skipped(tmp_path):
    cfg = config()
    finished(tmp_path, cfg)
    assert rundir.prepare(tmp_path, config("train.log_every=7", "threads=1"), overwrite=False).done
    assert (tmp_path / "samples.npy").exists()


def test_this_runs_failed_attempt_without_a_checkpoint_is_cleared_and_started_again(tmp_path):
    cfg = config()
    finished(tmp_path, cfg, status="failed")
    assert rundir.prepare(tmp_path, cfg, overwrite=False) == rundir.Previous()
    assert not any(tmp_path.iterdir())


def test_this_runs_checkpoint_is_continued_and_the_rest_cleared(tmp_path):
    cfg = config()
    finished(tmp_path, cfg, status="interrupted")
    torch.save({"config": cfg, "model": {}, "step": 5}, tmp_path / "checkpoint.pt")
    previous = rundir.prepare(tmp_path, cfg, overwrite=False)
    assert previous.state["step"] == 5 and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


@pytest.mark.parametrize("with_checkpoint", [True, False])
def test_another_runs_files_are_refused_as_they_are_unless_overwrite(tmp_path, with_checkpoint):
    theirs = config("sde=ou")
    finished(tmp_path, theirs)
    if with_checkpoint:
        torch.save({"config": theirs, "model": {}, "step": 5}, tmp_path / "checkpoint.pt")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(rundir.RunDirInUse, match="already holds .*another run.*overwrite=true") as refused:
        rundir.prepare(tmp_path, config(), overwrite=False)
    assert ("sde._target_" in str(refused.value)) == with_checkpoint
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert rundir.prepare(tmp_path, config(), overwrite=True) == rundir.Previous()
    assert not any(tmp_path.iterdir())


class Payload:
    def __reduce__(self):
        return (print, ("a pickled object ran",))


@pytest.mark.parametrize("kind", ["truncated", "pickled", "config not a mapping"])
def test_an_unreadable_checkpoint_is_refused_and_nothing_is_loaded_from_it(tmp_path, kind, capsys):
    cfg = config()
    path = tmp_path / "checkpoint.pt"
    if kind == "truncated":
        torch.save({"config": cfg, "model": {"w": torch.zeros(1000)}, "step": 5}, path)
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "pickled":
        torch.save({"config": cfg, "model": {}, "step": 5, "extra": Payload()}, path, pickle_module=pickle)
    else:
        torch.save({"config": ["not", "a", "mapping"], "model": {}, "step": 5}, path)
    problem = ("is not a diffusion_runner checkpoint \\(its config is a list, not a dict\\)"
               if kind == "config not a mapping" else "is not a readable checkpoint")
    with pytest.raises(rundir.RunDirInUse, match=f"unreadable checkpoint.*{problem}"):
        rundir.prepare(tmp_path, cfg, overwrite=False)
    with pytest.raises(ConfigError, match=f"^resume: {path} {problem}"):
        rundir.resume_from(str(path), cfg)
    assert "a pickled object ran" not in capsys.readouterr().out


READ_ONLY = """
import errno, os, runpy
def read_only(src, dst):
    raise OSError(errno.EROFS, "Read-only file system", str(dst))
os.replace = read_only  # every output file is renamed into place: none can be
runpy.run_module("diffusion_runner", run_name="__main__")
"""


def test_a_read_only_run_directory_fails_in_one_line_with_no_partial_file(tmp_path):
    out = tmp_path / "job"
    proc = subprocess.run([sys.executable, "-c", READ_ONLY, *TINY, "train.steps=20", f"hydra.run.dir={out}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("job failed in stage start: OSError: [Errno 30] Read-only file system")
    assert ".hydra/config.yaml" in line and f"traceback in {out / 'run.log'}" in line
    assert "metrics.json not written either" in line
    assert sorted(p.name for p in out.iterdir()) == [".hydra", ".lock", "run.log"]
    assert not any((out / ".hydra").iterdir())


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "diffusion_runner", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def snapshot(directory):
    """Every file under the directory (.hydra/, run.log and the lock included) -> its bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


ORACLE = ["model=oracle", *TINY]


def test_a_refused_command_leaves_a_finished_run_byte_identical(tmp_path):
    out = tmp_path / "job"
    assert cli(*ORACLE, f"hydra.run.dir={out}", cwd=tmp_path).returncode == 0
    before = snapshot(out)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", ".lock", "run.log", "metrics.json"} <= before.keys()
    for typo in ("+train.stepz=5", "seed=-1", "sampler.steps=0", "sde=ou"):
        refused = cli(*ORACLE, typo, f"hydra.run.dir={out}", cwd=tmp_path)
        assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr[-2000:]
        assert snapshot(out) == before, typo
    again = cli(*ORACLE, f"hydra.run.dir={out}", cwd=tmp_path)  # the right command: nothing to do
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert snapshot(out) == before


def test_a_typo_into_a_ckpt_path_run_leaves_it_to_the_right_command(tmp_path):
    trained, out = tmp_path / "trained", tmp_path / "job"
    assert cli(*TINY, f"hydra.run.dir={trained}", cwd=tmp_path).returncode == 0
    job = [*tiny_with("sampler", "ode"), f"ckpt_path={trained}", "sampler=ode"]
    assert cli(*job, f"hydra.run.dir={out}", cwd=tmp_path).returncode == 0
    before = snapshot(out)
    assert cli(*job, "+eval.n_samplez=5", f"hydra.run.dir={out}", cwd=tmp_path).returncode == 1
    assert snapshot(out) == before
    again = cli(*job, f"hydra.run.dir={out}", cwd=tmp_path)
    assert again.returncode == 0 and "nothing to do" in again.stdout


def test_a_job_that_cannot_start_records_why_in_an_empty_directory_and_the_next_job_replaces_it(tmp_path):
    out = tmp_path / "job"
    refused = cli(*ORACLE, "+train.stepz=5", f"hydra.run.dir={out}", cwd=tmp_path)
    assert refused.returncode == 1
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "failed" and record["stage"] == "start" and "train.stepz" in record["error"]
    assert (out / ".hydra/overrides.yaml").exists()
    proc = cli(*ORACLE, "sde=ou", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
    assert "sde=ou" in (out / ".hydra/overrides.yaml").read_text()


def test_two_jobs_started_at_once_into_one_directory_one_runs_and_the_other_names_it(tmp_path):
    out = tmp_path / "job"
    args = [*TINY, "train.steps=1500", f"hydra.run.dir={out}"]
    procs = [subprocess.Popen([sys.executable, "-m", "diffusion_runner", *args, f"seed={seed}"], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (0, 1)]
    ends = [(p, *p.communicate(timeout=300)) for p in procs]
    assert sorted(p.returncode for p, _, _ in ends) == [0, 1]
    (winner, _, _), (loser, _, stderr) = sorted(ends, key=lambda e: e[0].returncode)
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"config error: hydra.run.dir: {out} is in use by job {winner.pid} on ")
    assert "python -m diffusion_runner" in line and "wait for it to end" in line
    assert line.endswith(f"seed={OmegaConf.load(out / '.hydra/config.yaml').seed}); wait for it to end, or pick "
                         f"another directory")  # the holder's command, not its own
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"


HOLD = """
import sys, time
from diffusion_runner.rundir import RunLock
lock = RunLock(sys.argv[1], "holder command")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_the_lock_is_freed_when_its_holder_is_killed_with_sigkill(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(rundir.RunDirInUse, match=f"in use by job {holder.pid} on .*holder command"):
            rundir.RunLock(tmp_path, "second").acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = rundir.RunLock(tmp_path, "third")
    lock.acquire()
    lock.start("abc")
    lock.release()
    assert json.loads((tmp_path / ".lock").read_text())["run_digest"] == "abc"


def test_a_lock_taken_by_a_job_that_does_not_start_is_put_back_as_it_was(tmp_path):
    with rundir.RunLock(tmp_path, "refused") as lock:
        assert lock.fresh
    assert not any(tmp_path.iterdir())
    (tmp_path / ".lock").write_text('{"run_digest": "mine"}\n')
    with rundir.RunLock(tmp_path, "refused") as lock:
        assert lock.owner == "mine" and lock.fresh  # the lock file alone holds no run
    assert (tmp_path / ".lock").read_text() == '{"run_digest": "mine"}\n'


def test_nothing_is_written_through_a_symbolic_link_a_shared_directory_holds(tmp_path):
    """A downloaded run directory whose .lock, run.log and .hydra point elsewhere: the job refuses the lock and
    writes nothing through the others."""
    victim, elsewhere = tmp_path / "victim.txt", tmp_path / "elsewhere"
    victim.write_text("untouched\n")
    elsewhere.mkdir()
    out = tmp_path / "job"
    out.mkdir()
    (out / ".lock").symlink_to(victim)
    proc = cli(*ORACLE, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1 and f"{out / '.lock'} is not a regular file" in proc.stderr
    (out / ".lock").unlink()
    (out / "run.log").symlink_to(victim)
    (out / ".hydra").symlink_to(elsewhere, target_is_directory=True)
    proc = cli(*ORACLE, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 1 and "stage start: OSError" in proc.stderr and "run.log" in proc.stderr
    assert victim.read_text() == "untouched\n" and not any(elsewhere.iterdir())
    (out / "run.log").unlink()
    (out / "metrics.json").unlink()  # the failed record of the attempt above
    proc = cli(*ORACLE, f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / ".hydra").is_dir() and not (out / ".hydra").is_symlink() and not any(elsewhere.iterdir())


def lost(out, error="Slurm job 4_2 ended with no result (state CANCELLED)"):
    hydra_cfg = OmegaConf.create({"overrides": {"task": ["seed=3"]}})
    return rundir.record_lost(out, compose_config([*TINY, "seed=3"]), hydra_cfg, error)


def test_a_job_lost_before_it_started_gets_its_record_and_the_next_job_there_replaces_it(tmp_path):
    out = tmp_path / "2"
    assert lost(out)
    record = rundir.read_metrics(out / "metrics.json")
    assert record["status"] == "failed" and record["stage"] == "scheduler" and "CANCELLED" in record["error"]
    assert OmegaConf.load(out / ".hydra/overrides.yaml") == ["seed=3"] and not (out / ".lock").exists()
    assert rundir.prepare(out, config("seed=3"), overwrite=False) == rundir.Previous()
    assert not (out / "metrics.json").exists()


def test_a_lost_job_that_started_keeps_its_digest_so_the_same_run_there_starts_again(tmp_path):
    cfg = config()
    with rundir.RunLock(tmp_path, "job") as lock:
        lock.start(rundir.digest(cfg))
    (tmp_path / "samples.npy").write_bytes(b"x")  # killed after sampling, with no checkpoint to continue from
    assert lost(tmp_path)
    assert rundir.read_metrics(tmp_path / "metrics.json")["run_digest"] == rundir.digest(cfg)
    assert rundir.prepare(tmp_path, cfg, overwrite=False) == rundir.Previous()
    with pytest.raises(rundir.RunDirInUse, match="of another run"):  # the record still tells runs apart
        lost_other = tmp_path / "other"
        lost_other.mkdir()
        (lost_other / "samples.npy").write_bytes(b"x")
        lost(lost_other)
        rundir.prepare(lost_other, cfg, overwrite=False)


def test_what_a_lost_job_recorded_itself_is_kept_and_a_held_directory_is_left_alone(tmp_path):
    finished(tmp_path, config(), status="failed")
    before = (tmp_path / "metrics.json").read_bytes()
    assert not lost(tmp_path) and (tmp_path / "metrics.json").read_bytes() == before
    held = tmp_path / "held"
    with rundir.RunLock(held.mkdir() or held, "a live job"):
        assert not lost(held)
    assert not (held / "metrics.json").exists()
