"""Checkpoints: what a job saves after training, and how a later job finds and loads one (`ckpt_path=`).

A checkpoint is a dict written with torch.save and read with torch.load(weights_only=True), so tensors and plain
containers only, never arbitrary pickled objects: `config` (the job's composed config, resolved), `model` (the
weights sampled with: the EMA copy when EMA is on), `step`, and for a trained model the rest of the training state
(diffusion_runner.train): `online_model`, `ema_updates`, `optimizer`, `scheduler`, `rng`, `losses`. It is written
every train.checkpoint_every steps and at the end, so an unfinished run can be continued from it.

`ckpt_path` may name a checkpoint file, a run directory, or a sweep directory; in a sweep directory the job whose
training configuration (training_keys) equals this job's is used, so a sweep over samplers or metrics reuses one
trained model per (configuration, seed). A stored config is only compared, never built: the model is always this
job's own, from this job's config.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import OmegaConf

from diffusion_runner.atomic import atomic_path
from diffusion_runner.errors import ConfigError, one_line

log = logging.getLogger(__name__)

FILE = "checkpoint.pt"
# Keys that change the log, the saves and the progress shown, not the weights (the shipped callbacks only watch).
IGNORED = {"train.log_every", "train.checkpoint_every", "train.callbacks"}


def ignored(key: str) -> bool:
    """Whether a dotted key is one of IGNORED or inside one."""
    return any(key == name or key.startswith(f"{name}.") for name in IGNORED)


def model_keys(config: dict[str, Any]) -> tuple[str, ...]:
    """The sections of this job's (validated) config that its weights' meaning depends on."""
    return ("dataset", "family", *get_class(config["family"]["_target_"]).model_sections)


def training_keys(config: dict[str, Any]) -> tuple[str, ...]:
    """The sections of this job's config that training produced its weights from."""
    return (*model_keys(config), *get_class(config["family"]["_target_"]).training_sections, "train", "seed")


def save(path: Path, state: dict[str, Any]) -> None:
    """Write atomically (diffusion_runner.atomic): a reader never sees a partial checkpoint under `path`."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated file, not a checkpoint, or a pickled object weights_only refuses
        raise ConfigError(f"ckpt_path: {path} is not a readable checkpoint ({one_line(e)})") from e
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise ConfigError(f"ckpt_path: {path} is not a diffusion_runner checkpoint (no model weights and config)")
    for key, kind in (("config", dict), ("model", dict), ("step", int)):
        value = state.get(key)
        if key in state and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(f"ckpt_path: {path} is not a diffusion_runner checkpoint (its {key} is a "
                              f"{type(value).__name__}, not a {kind.__name__})")
    return state


def _flatten(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out or {prefix: {}}
    return {prefix: value}


def differences(theirs: dict[str, Any], mine: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """'key: their value (checkpoint) vs my value (this job)' for every leaf of the given sections that differs."""
    a = {k: v for key in keys for k, v in _flatten(theirs.get(key), key).items()}
    b = {k: v for key in keys for k, v in _flatten(mine.get(key), key).items()}
    return [f"{k}: {a.get(k, '(unset)')} (checkpoint) vs {b.get(k, '(unset)')} (this job)"
            for k in sorted(a.keys() | b.keys()) if not ignored(k) and a.get(k) != b.get(k)]


def _job_config(job_dir: Path) -> dict[str, Any] | None:
    """A job directory's stored config with its interpolations resolved (read as data: nothing in it is built);
    None, with a warning, if it cannot be read."""
    try:
        config = OmegaConf.to_container(OmegaConf.load(job_dir / ".hydra/config.yaml"), resolve=True)
        if not isinstance(config, dict):
            raise ValueError("not a mapping")
        return config
    except Exception as e:
        log.warning("ckpt_path: %s: unreadable, not considered (%s)", job_dir / ".hydra/config.yaml", one_line(e))
        return None


def find(ckpt_path: str, config: dict[str, Any]) -> Path:
    """The checkpoint `ckpt_path` names for a job with this (resolved) config."""
    path = Path(ckpt_path)
    if path.is_file():
        return path
    if (path / FILE).is_file():
        return path / FILE
    if not path.is_dir():
        raise ConfigError(f"ckpt_path: {path} does not exist (give a checkpoint file, a run directory or a sweep "
                          f"directory)")
    jobs = sorted(p.parent.parent for p in path.glob("**/.hydra/config.yaml") if (p.parent.parent / FILE).is_file())
    if not jobs:
        raise ConfigError(f"ckpt_path: no {FILE} in {path} or in any job directory under it")
    stored = {job: _job_config(job) for job in jobs}
    jobs = [job for job in jobs if stored[job] is not None]
    if not jobs:
        raise ConfigError(f"ckpt_path: no job directory under {path} has a readable .hydra/config.yaml")
    diffs = {job: differences(stored[job], config, training_keys(config)) for job in jobs}
    best = min(jobs, key=lambda job: len(diffs[job]))
    if diffs[best]:
        raise ConfigError(f"ckpt_path: none of the {len(jobs)} jobs under {path} was trained with this job's "
                          f"configuration; the closest, {best}, differs in {'; '.join(diffs[best][:3])}")
    return best / FILE


def check_fits(state: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """A ConfigError unless the checkpoint was trained with this job's dataset, family and model sections."""
    keys = model_keys(config)
    diffs = differences(state["config"], config, keys)
    if diffs:
        raise ConfigError(f"ckpt_path: {path} does not fit this job's {', '.join(keys)}: {'; '.join(diffs[:3])}"
                          f"{f' (and {len(diffs) - 3} more)' if len(diffs) > 3 else ''}")
