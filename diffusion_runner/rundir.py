"""What a job's run directory holds before the job starts, and what the job does about it.

One job at a time holds a directory: `RunLock` takes an OS-level lock (fcntl) on its `.lock` file, released when
the process ends, kill -9 included; a second job into a held directory is refused in one line naming the holder.
Then, from what the directory holds (`prepare`):

- nothing of a run, or only a failed job's record (no results): start;
- this run's own results (metrics.json says ok, same configuration): nothing to do;
- this run's unfinished attempt (same configuration): continue from its checkpoint.pt, or start over without one
  (a job sampling a loaded model, `ckpt_path=`, has none: the `.lock` file names the last job that started here);
- another run's outputs: refused, unless overwrite=true, which removes them first.

A job refused here, or failing before it starts, leaves the directory exactly as it was: Hydra writes no .hydra/
(hydra.output_subdir is null) and the log file opens only once the job starts (diffusion_runner.runlog); the job
writes its own .hydra/ record (`write_job_record`) when it starts. "Same configuration" ignores what cannot change
the results (RUN_IGNORED).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from diffusion_runner import checkpoints
from diffusion_runner.atomic import write_text
from diffusion_runner.errors import ConfigError, one_line

log = logging.getLogger(__name__)

METRICS = "metrics.json"
LOCK = ".lock"  # held by the job running in the directory; names it (pid, host, command) and its run_digest
RECORD = ".hydra"  # the job's composed config, Hydra's config and the command-line overrides
OUTPUTS = (METRICS, checkpoints.FILE, "samples.npy", "labels.npy", "learning_curve.json", "wandb")
PICTURES = ("*.png", "*.gif")  # every job's and every family's figures
# metrics.json: these fields hold text (or null); every other field a finite number (or null).
TEXT_FIELDS = {"status", "error", "stage", "run_digest", "device", "ckpt_path", "nll_divergence", "nll_kind",
               "label_shares"}
MAX_MAGNITUDE = 1e12  # no number a job records comes near this: a larger one is a hand edit or a corrupt file
SWEEP_INTERRUPTED = ".interrupted"  # in a sweep directory: a job was interrupted, start no more (cleared per sweep)
# Top-level keys that do not change the results.
RUN_IGNORED = ("logger", "threads", "device", "resume", "overwrite", "optimized_metric")


class RunDirInUse(ConfigError):
    """The run directory holds another run's outputs; they are left as they are."""


@dataclass
class Previous:
    done: bool = False  # this run finished ok here already
    state: dict[str, Any] | None = None  # a training state to continue from


def digest(config: dict[str, Any]) -> str:
    """A hash of the configuration that determines a run's results (stored in metrics.json as run_digest)."""
    kept = {k: v for k, v in config.items() if k not in RUN_IGNORED}
    for key in checkpoints.IGNORED:
        section, name = key.split(".")
        kept[section] = {k: v for k, v in kept.get(section, {}).items() if k != name}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_metrics(path: Path) -> dict[str, Any]:
    """A job's metrics.json; {} if there is none (the job never finished). A failed status naming the file if it
    cannot be read or is not a job's record; a failed status naming the file and the key if a value is of the wrong
    type or out of range (text where a number belongs, NaN, infinity, |x| > MAX_MAGNITUDE), with the bad values
    dropped and the rest kept."""
    if not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or metrics.get("status") not in ("ok", "failed", "interrupted"):
            raise ValueError("no status ok / failed / interrupted")
    except Exception as e:
        log.warning("%s: unreadable, read as a failed job (%s)", path, one_line(e))
        return {"status": "failed", "error": f"unreadable {path.name}: {one_line(e)}"}
    bad = {key: problem for key, value in metrics.items() if (problem := _bad_value(key, value))}
    if bad:
        first = next(iter(bad))
        error = f"{path}: {first}: {bad[first]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        log.warning("%s, read as a failed job", error)
        metrics = {k: v for k, v in metrics.items() if k not in bad}
        metrics.update(status="failed", error=error)
    return metrics


def _bad_value(key: str, value: Any) -> str | None:
    """Why a metrics.json value cannot be read as what its key holds; None if it can."""
    if value is None:
        return None
    if key in TEXT_FIELDS:
        return None if isinstance(value, str) else f"must be text, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number, got {value!r}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value}"
    if abs(value) > MAX_MAGNITUDE:
        return f"{value:g} is out of range (|x| <= {MAX_MAGNITUDE:g})"
    return None


def outputs(out_dir: Path) -> list[str]:
    """The names of a run's outputs: OUTPUTS and the pictures (PICTURES) in out_dir."""
    pictures = sorted({p.name for pattern in PICTURES for p in out_dir.glob(pattern)})
    return [*OUTPUTS, *pictures]


def remove_outputs(out_dir: Path, keep: tuple[str, ...] = ()) -> list[str]:
    removed = []
    for name in outputs(out_dir):
        path = out_dir / name
        if name in keep or not (path.exists() or path.is_symlink()):
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        removed.append(name)
    return removed


def prepare(out_dir: Path, config: dict[str, Any], overwrite: bool, owner: str | None = None) -> Previous:
    """Decide, from what `out_dir` holds, whether this job skips, continues or starts; clear what it replaces.
    `owner`: the run_digest of the last job that started in the directory (RunLock.owner), if known."""
    present = [name for name in outputs(out_dir) if (out_dir / name).exists()]
    if not present:
        return Previous()
    if overwrite:
        log.warning("overwrite=true: removed the previous run's %s from %s", ", ".join(remove_outputs(out_dir)),
                    out_dir)
        return Previous()
    mine = digest(config)
    metrics = read_metrics(out_dir / METRICS)
    if metrics.get("status") == "ok" and metrics.get("run_digest") == mine:
        return Previous(done=True)
    if present == [METRICS] and metrics.get("status") == "failed":
        log.info("%s held only a failed job's record (%s): replaced", out_dir, metrics.get("error", "no error"))
        remove_outputs(out_dir)
        return Previous()
    where = f"hydra.run.dir: {out_dir} already holds"
    if (out_dir / checkpoints.FILE).is_file():
        try:
            state = checkpoints.load(out_dir / checkpoints.FILE)
        except ConfigError as e:
            raise RunDirInUse(f"{where} an unreadable checkpoint ({e}); add overwrite=true to start over") from e
        keys = tuple(sorted((state["config"].keys() | config.keys()) - set(RUN_IGNORED)))
        diffs = checkpoints.differences(state["config"], config, keys)
        if diffs:
            raise RunDirInUse(f"{where} another run (its {'; '.join(diffs[:3])}); pick a new directory, or add "
                              f"overwrite=true to replace it")
        remove_outputs(out_dir, keep=(checkpoints.FILE,))
        return Previous(state=state)
    if mine in (metrics.get("run_digest"), owner):  # this run failed or stopped with no checkpoint to continue from
        remove_outputs(out_dir)
        return Previous()
    raise RunDirInUse(f"{where} {', '.join(present)} of another run; pick a new directory, or add overwrite=true to "
                      f"replace them")


def resume_from(path: str, config: dict[str, Any]) -> dict[str, Any]:
    """resume=PATH: the training state in PATH (a checkpoint file or run directory) of a run with this job's
    training configuration."""
    file = Path(path) / checkpoints.FILE if Path(path).is_dir() else Path(path)
    if not file.is_file():
        raise ConfigError(f"resume: {path} is neither a checkpoint file nor a run directory holding {checkpoints.FILE}")
    try:
        state = checkpoints.load(file)
    except ConfigError as e:
        raise ConfigError(str(e).replace("ckpt_path:", "resume:", 1)) from e
    diffs = checkpoints.differences(state["config"], config, checkpoints.training_keys(config))
    if diffs:
        raise ConfigError(f"resume: {file} was trained with another configuration: {'; '.join(diffs[:3])}")
    if "optimizer" not in state:
        raise ConfigError(f"resume: {file} holds no training state (a model without parameters?)")
    return state


class RunLock:
    """The lock of one run directory, held by the job running there: fcntl.flock on `out_dir/.lock`, which the OS
    releases when the process ends (kill -9 included). The file names its holder (pid, host, command) and, once
    the job starts (`start`), the run_digest of what the job writes there, so a later job with the same
    configuration can continue an attempt that left no checkpoint.

    A job refused before it starts (`release` without `start`) puts back the file as it found it: restored, or
    removed if it made it, so the directory is left exactly as it was. As a context manager: acquire, then release.
    """

    def __init__(self, out_dir: Path, command: str):
        self.path, self.command = Path(out_dir) / LOCK, command
        self.fd: int | None = None
        self.before: bytes | None = None  # the file's bytes before this job took it; None if it made the file
        self.holder: dict[str, Any] = {}  # what the file says of this job
        self.fresh = False  # the directory held nothing at all before this job
        self.started = False

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, or raise RunDirInUse naming the job that holds it."""
        while True:
            try:
                fd, made = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), True
            except FileExistsError:
                try:  # never through a symbolic link: a shared directory's .lock could point at any file
                    fd, made = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK), False
                except FileNotFoundError:  # removed between the two calls by a job that was refused: try again
                    continue
                except OSError:  # a symbolic link (ELOOP) or something else that is not a file
                    fd, made = None, False
            if fd is None or not stat.S_ISREG(os.fstat(fd).st_mode):
                if fd is not None:
                    os.close(fd)
                raise RunDirInUse(f"hydra.run.dir: {self.path} is not a regular file; remove it, or pick "
                                  f"another directory")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = os.pread(fd, 4096, 0)
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                raise RunDirInUse(f"hydra.run.dir: {self.path.parent} is in use by {_describe(holder)}; wait for "
                                  f"it to end, or pick another directory") from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:  # not a file a refused job removed after this one opened it
                break
            os.close(fd)
        self.fd = fd
        self.before = None if made else os.pread(fd, 1 << 16, 0)
        self.fresh = all(p.name == LOCK for p in self.path.parent.iterdir())
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self._write(self.holder)

    @property
    def owner(self) -> str | None:
        """The run_digest the last job that started here recorded, if any."""
        try:
            return json.loads(self.before or b"{}").get("run_digest")
        except (ValueError, AttributeError):
            return None

    def start(self, run_digest: str | None) -> None:
        """The job starts here: the file keeps naming it, with the digest of the run it writes."""
        self.started = True
        self._write({**self.holder, "run_digest": run_digest})

    def release(self) -> None:
        if self.fd is None:
            return
        if not self.started:
            if self.before is None:
                self.path.unlink(missing_ok=True)
            else:
                self._write_bytes(self.before)
        os.close(self.fd)
        self.fd = None

    def _write(self, holder: dict[str, Any]) -> None:
        self._write_bytes(json.dumps(holder).encode() + b"\n")

    def _write_bytes(self, data: bytes) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)


def _describe(holder: bytes) -> str:
    """'job <pid> on <host> since <time> (<command>)' from a lock file's contents."""
    try:
        info = json.loads(holder)
        return f"job {info['pid']} on {info['host']} since {info['since']} ({info['command']})"
    except (ValueError, KeyError, TypeError):
        return "another job (starting)"


def write_job_record(out_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> None:
    """.hydra/config.yaml, hydra.yaml and overrides.yaml as Hydra writes them, once the job starts in `out_dir`."""
    record = Path(out_dir) / RECORD
    if record.is_symlink():  # the record is written here, never through a link to another directory
        record.unlink()
    record.mkdir(exist_ok=True)
    hydra_node = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg, resolve=False)})
    write_text(record / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(record / "hydra.yaml", OmegaConf.to_yaml(hydra_node))
    write_text(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))


def record_lost(out_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig, error: str) -> bool:
    """A job its launcher lost (a scheduler cancelled it before it started, or killed it with no chance to record
    itself: SIGKILL, out of memory, a node failure) gets the record the job would have written: `.hydra/` if it
    never started, so the sweep's report finds it, and a failed metrics.json with `error`, keeping the digest the job
    started under, so running the sweep again continues it (from its checkpoint, if it saved one). What a job
    recorded itself is kept, and a directory still held by a live job is left alone. True if it was recorded."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = RunLock(out_dir, f"the launcher's record of a lost job ({error})")
        lock.acquire()
    except RunDirInUse as exc:
        log.warning("%s: not recorded as lost (%s)", out_dir, exc)
        return False
    try:
        if read_metrics(out_dir / METRICS):
            return False
        if not (out_dir / RECORD / "overrides.yaml").exists():
            write_job_record(out_dir, cfg, hydra_cfg)
        write_text(out_dir / METRICS, json.dumps({"status": "failed", "stage": "scheduler", "error": error,
                                                  "run_digest": lock.owner}, indent=2) + "\n")
        return True
    finally:
        lock.release()
