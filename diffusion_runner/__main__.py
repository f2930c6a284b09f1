"""Entry point: `python -m diffusion_runner [group=option ...] [key=value ...]` (add -m to sweep).

Every job that starts ends with metrics.json: status "ok"; "failed" with the error and the stage it failed in;
or "interrupted" (SIGINT/SIGTERM) with the checkpoint saved. On the terminal a failure is one line, naming the
key where there is one and the log holding the traceback (HYDRA_FULL_ERROR=1 prints it). A single run exits non-zero
(128 + the signal's number when interrupted); in a sweep the job is recorded and the sweep goes on, or after an
interrupt skips the jobs not yet started (whichever process runs them) and writes its report.

A run directory that already holds results is handled by diffusion_runner.rundir: skipped when this run finished
there, continued from its checkpoint when it did not, refused when it holds another run (unless overwrite=true).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion_runner import (
    config,  # noqa: F401  (registers the config schema)
    rundir,
)
from diffusion_runner.errors import ConfigError, Interrupted
from diffusion_runner.interrupts import StopSignals
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run, write_json
from diffusion_runner.validate import validate

log = logging.getLogger("diffusion_runner")

def config_error(exc: BaseException) -> str | None:
    """A one-line message if the exception is a config mistake: a ConfigError (instantiate wraps those raised in
    constructors), or any other error instantiate met building a config node, named by its key."""
    for cause in (exc, exc.__cause__):
        if isinstance(cause, ConfigError):
            return str(cause)
    if isinstance(exc, InstantiationException):
        key = re.search(r"full_key: (\S+)", str(exc))
        cause = exc.__cause__ or exc
        return f"{key.group(1) if key else 'config'}: {type(cause).__name__}: {cause}"
    return None


def to_log_file(level: int, message: str, exc_info: BaseException | None = None) -> None:
    """Write a record to the job's log file (run.log) only, not to the terminal."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), (type(exc_info), exc_info,
                            exc_info.__traceback__) if exc_info else None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def log_file() -> str:
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return files[0] if files else "the job's log"


def continue_command(out_dir: Path) -> str:
    """The command that continues this job in its run directory."""
    task = [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.run.dir=")]
    return shlex.join(["python", "-m", "diffusion_runner", *task, f"hydra.run.dir={out_dir}"])


def record(out_dir: Path, values: dict) -> str:
    """Write metrics.json; if the directory takes no writes (full, read-only), say so instead of failing again."""
    try:
        write_json(out_dir / rundir.METRICS, values)
    except OSError as e:
        return f"; metrics.json not written either ({e.strerror or e})"
    return ""


def log_failure(message: str, exc: BaseException, multirun: bool) -> None:
    """The one-line message and the traceback into run.log; in a sweep the line also on the terminal (a single run
    prints it as it exits)."""
    if multirun:
        log.error(message)
        to_log_file(logging.ERROR, "traceback", exc)
    else:
        to_log_file(logging.ERROR, message, exc)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    stopped = Path(hydra_cfg.sweep.dir) / rundir.SWEEP_INTERRUPTED
    if multirun and stopped.exists():
        log.warning("not started: the sweep was interrupted")
        return
    start = time.perf_counter()
    logger = NoLogger()
    results: dict = {}
    with StopSignals() as stop:
        try:
            validate(cfg)  # before the logger, which may reach out to a server
            run_config = OmegaConf.to_container(cfg, resolve=True)
            previous = rundir.prepare(out_dir, run_config, cfg.overwrite)
            if previous.done:
                log.info("%s already holds this run's results (metrics.json: ok): nothing to do (overwrite=true "
                         "runs it again)", out_dir)
                return
            # This directory's own checkpoint is newer than the one resume= started it from.
            resume = previous.state or (rundir.resume_from(cfg.resume, run_config) if cfg.resume else None)
            results["run_digest"] = rundir.digest(run_config)
            make_logger = instantiate(cfg.logger, _partial_=True)
            logger = make_logger(run_config=run_config, out_dir=out_dir,
                                 job_name=hydra_cfg.job.override_dirname or out_dir.name,
                                 sweep_dir=Path(hydra_cfg.sweep.dir) if multirun else None)
            run(cfg, out_dir, logger, results, resume=resume, stop=stop)
            results["stage"] = "record"
            write_json(out_dir / rundir.METRICS, {**{k: v for k, v in results.items() if k != "stage"},
                                                  "status": "ok", "wall_seconds": time.perf_counter() - start})
        except Interrupted as exc:
            stage = results.pop("stage", "start")
            signum = exc.signal or stop.signal or signal.SIGINT
            at = f" at step {exc.step}" if exc.step else ""
            unsaved = record(out_dir, {**results, "status": "interrupted", "stage": stage,
                                       "error": f"interrupted: {exc}", "interrupted_at_step": exc.step,
                                       "wall_seconds": time.perf_counter() - start})
            logger.finish(failed=True)
            message = (f"interrupted by {signal.Signals(signum).name} in stage {stage}{at}; "
                       f"continue with: {continue_command(out_dir)}{unsaved}")
            if multirun:
                stopped.touch()
                log.warning(message)
                return
            to_log_file(logging.WARNING, message)
            print(message, file=sys.stderr)
            sys.exit(128 + signum)
        except Exception as exc:
            stage = results.pop("stage", "start")
            bad_config = config_error(exc)
            if isinstance(exc, rundir.RunDirInUse):  # its files belong to another run: write nothing there
                log_failure(f"config error: {bad_config}", exc, multirun)
                if multirun:
                    return
                sys.exit(f"config error: {bad_config}")
            error = f"ConfigError: {bad_config}" if bad_config else f"{type(exc).__name__}: {exc}"
            unsaved = record(out_dir, {**results, "status": "failed", "stage": stage, "error": error,
                                       "wall_seconds": time.perf_counter() - start})
            logger.finish(failed=True)
            message = (f"config error: {bad_config}" if bad_config else
                       f"job failed in stage {stage}: {error.splitlines()[0] if error else ''} "
                       f"(traceback in {log_file()}){unsaved}")
            log_failure(message, exc, multirun)
            if multirun:
                return
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            sys.exit(message)
    results.pop("stage")
    results.update(status="ok", wall_seconds=time.perf_counter() - start)
    logger.summary(results)
    logger.finish()
    log.info("done in %.1f s: %s", results["wall_seconds"], out_dir / rundir.METRICS)


if __name__ == "__main__":
    main()
