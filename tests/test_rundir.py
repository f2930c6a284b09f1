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
from tests.conftest import TINY, compose_config


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


@pytest.mark.parametrize("kind", ["truncated", "pickled"])
def test_an_unreadable_checkpoint_is_refused_and_nothing_is_loaded_from_it(tmp_path, kind, capsys):
    cfg = config()
    path = tmp_path / "checkpoint.pt"
    if kind == "truncated":
        torch.save({"config": cfg, "model": {"w": torch.zeros(1000)}, "step": 5}, path)
        path.write_bytes(path.read_bytes()[:500])
    else:
        torch.save({"config": cfg, "model": {}, "step": 5, "extra": Payload()}, path, pickle_module=pickle)
    with pytest.raises(rundir.RunDirInUse, match="unreadable checkpoint.*not a readable checkpoint"):
        rundir.prepare(tmp_path, cfg, overwrite=False)
    with pytest.raises(ConfigError, match=f"^resume: {path} is not a readable checkpoint"):
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
    assert line.startswith("job failed in stage train: OSError: [Errno 30] Read-only file system")
    assert "checkpoint.pt" in line and f"traceback in {out / 'run.log'}" in line
    assert sorted(p.name for p in out.iterdir()) == [".hydra", "run.log"]
