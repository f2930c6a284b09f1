"""Experiment loggers: `none` keeps everything in the run directory; `wandb` also sends it to wandb."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class NoLogger:
    """Logs nothing beyond the run directory."""

    def __init__(self, run_config: dict | None = None, out_dir: Path | None = None, job_name: str | None = None,
                 sweep_dir: Path | None = None, choices: dict[str, str] | None = None):
        pass

    def log(self, values: dict[str, float], step: int | None = None) -> None:
        pass

    def log_images(self, images: dict[str, Path]) -> None:
        pass

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        pass

    def summary(self, values: dict[str, Any]) -> None:
        pass

    def finish(self, failed: bool = False) -> None:
        pass


class WandbLogger(NoLogger):
    """One wandb run per job, written under the job's directory; offline unless mode=online.

    The run is named after the job's overrides and, in a sweep, grouped by the sweep directory's name,
    unless `name` or `group` are given. The job's choices of config group (`choices`: {"sde": "ddpm", ...}) go into
    its config as `choices` and, as "group=option" tags beside `tags`, with "seed=N", so a dashboard groups runs by
    them. Per-step curves come from the training callbacks (train/loss, train/lr, ...). An online run that cannot
    start (no network, no key, a server that does not answer within about `init_timeout` seconds) falls back to an
    offline run, with a warning saying how to upload it.
    """

    def __init__(self, run_config: dict, out_dir: Path, job_name: str | None = None, sweep_dir: Path | None = None,
                 project: str = "diffusion_runner", mode: str = "offline", entity: str | None = None,
                 group: str | None = None, name: str | None = None, tags: list[str] | None = None,
                 init_timeout: float = 15.0, choices: dict[str, str] | None = None):
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        import wandb

        self._wandb = wandb
        choices = dict(choices or {})
        tags = [*(tags or []), *(f"{key}={option}" for key, option in choices.items())]
        if "seed" in run_config:
            tags.append(f"seed={run_config['seed']}")
        start = dict(project=project, entity=entity, dir=str(out_dir), config={**run_config, "choices": choices},
                     group=group or (Path(sweep_dir).name if sweep_dir else None),
                     name=name or job_name or out_dir.name, tags=tags, reinit="finish_previous")
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=init_timeout), **start)
        except wandb.errors.Error as e:
            if mode != "online":
                raise
            self.run = wandb.init(mode="offline", **start)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            log.warning("wandb: the online run did not start (%s); logging offline instead, upload it later with: "
                        "wandb sync %s", reason, Path(self.run.dir).parent)

    def log(self, values, step=None):
        self.run.log(values, step=step)

    def log_images(self, images):
        """PNGs as images, GIFs (the reverse process's animation) as videos, which wandb plays."""
        self.run.log({k: (self._wandb.Video if Path(p).suffix == ".gif" else self._wandb.Image)(str(p))
                      for k, p in images.items()})

    def log_table(self, name, columns, rows):
        self.run.log({name: self._wandb.Table(columns=columns, data=rows)})

    def summary(self, values):
        self.run.summary.update(values)

    def finish(self, failed=False):
        self.run.finish(exit_code=1 if failed else 0)
