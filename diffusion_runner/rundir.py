"""What a job's run directory holds before the job starts, and what the job does about it.

- nothing of a run: start;
- this run's own results (metrics.json says ok, same configuration): nothing to do;
- this run's unfinished attempt (same configuration): continue from its checkpoint.pt, or start over without one;
- another run's outputs: refused, unless overwrite=true, which removes them first.

"Same configuration" ignores what cannot change the results (RUN_IGNORED). Hydra rewrites .hydra/ and appends to
run.log before a job starts; every other file here belongs to one run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusion_runner import checkpoints
from diffusion_runner.errors import ConfigError, one_line

log = logging.getLogger(__name__)

METRICS = "metrics.json"
OUTPUTS = (METRICS, checkpoints.FILE, "samples.npy", "labels.npy", "samples.png", "density.png", "trajectory.png",
           "loss.png", "wandb")
SWEEP_INTERRUPTED = ".interrupted"  # in a sweep directory: a job was interrupted, start no more (cleared per sweep)
RUN_IGNORED = ("logger", "threads", "device", "resume", "overwrite")  # sections that do not change the results


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
    """A job's metrics.json; {} if there is none (the job never finished); a failed status naming the file if it
    cannot be read or is not a job's record."""
    if not path.exists():
        return {}
    try:
        metrics = json.loads(path.read_text())
        if not isinstance(metrics, dict) or metrics.get("status") not in ("ok", "failed", "interrupted"):
            raise ValueError("no status ok / failed / interrupted")
    except Exception as e:
        log.warning("%s: unreadable, read as a failed job (%s)", path, one_line(e))
        return {"status": "failed", "error": f"unreadable {path.name}: {one_line(e)}"}
    return metrics


def remove_outputs(out_dir: Path, keep: tuple[str, ...] = ()) -> list[str]:
    removed = []
    for name in OUTPUTS:
        path = out_dir / name
        if name in keep or not (path.exists() or path.is_symlink()):
            continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        removed.append(name)
    return removed


def prepare(out_dir: Path, config: dict[str, Any], overwrite: bool) -> Previous:
    """Decide, from what `out_dir` holds, whether this job skips, continues or starts; clear what it replaces."""
    present = [name for name in OUTPUTS if (out_dir / name).exists()]
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
    if metrics.get("run_digest") == mine:  # this run failed or stopped before it saved a checkpoint
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
    diffs = checkpoints.differences(state["config"], config, checkpoints.TRAINING_KEYS)
    if diffs:
        raise ConfigError(f"resume: {file} was trained with another configuration: {'; '.join(diffs[:3])}")
    if "optimizer" not in state:
        raise ConfigError(f"resume: {file} holds no training state (a model without parameters?)")
    return state
