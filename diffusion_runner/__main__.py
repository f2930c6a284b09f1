"""Entry point: `python -m diffusion_runner [group=option ...] [key=value ...]` (add -m to sweep).

Every job that starts ends with metrics.json: status "ok"; "failed" with the error and the stage it failed in;
or "interrupted" (SIGINT/SIGTERM) with the checkpoint saved. A sweep's job that its Slurm scheduler ends
(SIGTERM: scancel, a time limit) has failed, with its checkpoint saved, and the sweep's other jobs go on. On the
terminal a failure is one line, naming the key where there is one and the log holding the traceback
(HYDRA_FULL_ERROR=1 prints it). A single run exits non-zero (128 + the signal's number when interrupted); in a
sweep the job is recorded and the sweep goes on, or after an interrupt skips the jobs not yet started (whichever
process runs them) and writes its report.

A run directory is held by one job at a time (an fcntl lock) and what it already holds is handled by
diffusion_runner.rundir: skipped when this run finished there, continued when it did not, refused when it holds
another run (unless overwrite=true). Everything that can refuse a job runs before the job starts, and a job that
does not start writes nothing into a directory that holds anything (into an empty one, only its failed record).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path

import hydra
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from diffusion_runner import rundir, runlog
from diffusion_runner.errors import ConfigError, Interrupted, SchedulerEnded
from diffusion_runner.interrupts import StopSignals, scheduler_job
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run, setup, write_json

log = logging.getLogger("diffusion_runner")
SHOW_TRACEBACKS = os.environ.get("HYDRA_FULL_ERROR") == "1"  # as the user set it, before cli() sets it for Hydra

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


def command_line() -> str:
    """This job's command: `python -m diffusion_runner` and its task overrides."""
    return shlex.join(["python", "-m", "diffusion_runner", *HydraConfig.get().overrides.task])


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


def failure_line(exc: BaseException, stage: str, where: str = "") -> tuple[str, str]:
    """(the one-line message for the terminal, the error for metrics.json)."""
    bad_config = config_error(exc)
    error = f"ConfigError: {bad_config}" if bad_config else f"{type(exc).__name__}: {exc}"
    if bad_config:
        return f"config error: {bad_config}", error
    return f"job failed in stage {stage}: {error.splitlines()[0] if error else ''}{where}", error


def leave(message: str, multirun: bool, code: int = 1) -> None:
    """End a job with one line: logged in a sweep (which goes on), else printed as the command exits."""
    if multirun:
        log.error(message)
        return
    print(message, file=sys.stderr)
    sys.exit(code)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One job; its `optimized_metric`, if set, is returned for a sweeper that optimises it."""
    job(cfg)
    return objective(cfg.get("optimized_metric"), Path(HydraConfig.get().runtime.output_dir))


def objective(name: str | None, out_dir: Path) -> float | None:
    """The job's `name` metric from its metrics.json for an optimising sweeper (Optuna's); NaN when the job did not
    finish ok or did not report it, which Optuna records as a failed trial; None without a name."""
    if name is None:
        return None
    metrics = rundir.read_metrics(out_dir / rundir.METRICS)
    value = metrics.get(name)
    if metrics.get("status") != "ok" or not isinstance(value, int | float):
        log.warning("optimized_metric %s: the job %s; the sweeper gets NaN", name,
                    f"ended {metrics.get('status', 'without a record')}" if metrics.get("status") != "ok"
                    else "did not report it")
        return float("nan")
    return float(value)


def job(cfg: DictConfig) -> None:
    """Start, run and record the job in Hydra's output directory (see the module's docstring)."""
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    stopped = Path(hydra_cfg.sweep.dir) / rundir.SWEEP_INTERRUPTED
    if multirun and stopped.exists():
        log.warning("not started: the sweep was interrupted")
        return
    start = time.perf_counter()
    with StopSignals() as stop:
        lock = rundir.RunLock(out_dir, command_line())
        try:
            lock.acquire()
        except rundir.RunDirInUse as exc:
            return leave(f"config error: {exc}", multirun)
        try:
            # Before the job starts: check and build everything, decide what the directory's files mean. Nothing
            # is written, so a job refused here leaves the directory as it was.
            try:
                job = setup(cfg)
                run_config = OmegaConf.to_container(cfg, resolve=True)
                previous = rundir.prepare(out_dir, run_config, cfg.overwrite, lock.owner)
                # This directory's own checkpoint is newer than the one resume= started it from.
                resume = previous.state or (rundir.resume_from(cfg.resume, run_config) if cfg.resume else None)
            except (Exception, Interrupted) as exc:
                if SHOW_TRACEBACKS and not multirun and not isinstance(exc, Interrupted):
                    raise
                if isinstance(exc, rundir.RunDirInUse | Interrupted) or not lock.fresh:
                    message = failure_line(exc, "start")[0] if isinstance(exc, Exception) else f"interrupted: {exc}"
                    code = 128 + (exc.signal or signal.SIGINT) if isinstance(exc, Interrupted) else 1
                    return leave(message, multirun, code)
                # An empty directory: the job's record says why it did not start (the next job there replaces it).
                with contextlib.suppress(OSError):  # a directory that takes no writes: fail() says so
                    begin(out_dir, cfg, hydra_cfg, lock, None)
                return fail(exc, "start", out_dir, {}, start, NoLogger(), multirun)
            if previous.done:
                log.info("%s already holds this run's results (metrics.json: ok): nothing to do (overwrite=true "
                         "runs it again)", out_dir)
                return
            results: dict = {"run_digest": rundir.digest(run_config)}
            try:
                begin(out_dir, cfg, hydra_cfg, lock, results["run_digest"])
            except OSError as exc:  # a directory that takes no writes (full, read-only)
                return fail(exc, "start", out_dir, results, start, NoLogger(), multirun)
            execute(cfg, job, out_dir, run_config, results, resume, stop, start, multirun)
        finally:
            lock.release()


def begin(out_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig, lock: rundir.RunLock, run_digest: str | None) -> None:
    """The job starts in its directory: it holds it under its digest, its log file opens, .hydra/ records it."""
    lock.start(run_digest)
    runlog.start()
    rundir.write_job_record(out_dir, cfg, hydra_cfg)


def job_choices(hydra_cfg: DictConfig) -> dict[str, str]:
    """The job's option of every config group it chose (family, dataset, sde, ...), Hydra's own groups left out."""
    return {group: str(option) for group, option in hydra_cfg.runtime.choices.items()
            if option is not None and not group.startswith("hydra")}


def execute(cfg: DictConfig, job, out_dir: Path, run_config: dict, results: dict, resume, stop: StopSignals,
            start: float, multirun: bool) -> None:
    """Run the started job to its metrics.json: ok, failed or interrupted."""
    hydra_cfg = HydraConfig.get()
    logger = NoLogger()
    try:
        make_logger = instantiate(cfg.logger, _partial_=True)
        logger = make_logger(run_config=run_config, out_dir=out_dir,
                             job_name=hydra_cfg.job.override_dirname or out_dir.name,
                             sweep_dir=Path(hydra_cfg.sweep.dir) if multirun else None,
                             choices=job_choices(hydra_cfg))
        run(cfg, out_dir, logger, results, resume=resume, stop=stop, job=job)
        results["stage"] = "record"
        write_json(out_dir / rundir.METRICS, {**{k: v for k, v in results.items() if k != "stage"},
                                              "status": "ok", "wall_seconds": time.perf_counter() - start})
    except Interrupted as exc:
        stage = results.pop("stage", "start")
        signum = exc.signal or stop.signal or signal.SIGINT
        at = f" at step {exc.step}" if exc.step else ""
        slurm = scheduler_job()
        if multirun and slurm and signum == signal.SIGTERM:  # scancel, a time limit: this job ends, the sweep goes on
            ended = SchedulerEnded(f"Slurm job {slurm} ended by the scheduler (SIGTERM){at}"
                                   f"{'; its checkpoint is kept, run the sweep again to continue' if exc.step else ''}")
            return fail(ended, stage, out_dir, {**results, "interrupted_at_step": exc.step}, start, logger, multirun)
        unsaved = record(out_dir, {**results, "status": "interrupted", "stage": stage,
                                   "error": f"interrupted: {exc}", "interrupted_at_step": exc.step,
                                   "wall_seconds": time.perf_counter() - start})
        logger.finish(failed=True)
        message = (f"interrupted by {signal.Signals(signum).name} in stage {stage}{at}; "
                   f"continue with: {continue_command(out_dir)}{unsaved}")
        if multirun:
            (Path(hydra_cfg.sweep.dir) / rundir.SWEEP_INTERRUPTED).touch()
            log.warning(message)
            return
        runlog.to_file(logging.WARNING, message)
        print(message, file=sys.stderr)
        sys.exit(128 + signum)
    except Exception as exc:
        return fail(exc, results.pop("stage", "start"), out_dir, results, start, logger, multirun)
    results.pop("stage")
    results.update(status="ok", wall_seconds=time.perf_counter() - start)
    logger.summary(results)
    logger.finish()
    log.info("done in %.1f s: %s", results["wall_seconds"], out_dir / rundir.METRICS)


def fail(exc: Exception, stage: str, out_dir: Path, results: dict, start: float, logger, multirun: bool) -> None:
    """Record a failure of the started job in metrics.json and run.log (with the traceback), and say it in one line."""
    message, error = failure_line(exc, stage, f" (traceback in {runlog.path()})")
    unsaved = record(out_dir, {**results, "status": "failed", "stage": stage, "error": error,
                               "wall_seconds": time.perf_counter() - start})
    logger.finish(failed=True)
    runlog.failure(message + unsaved, exc, multirun)
    if multirun:
        return
    if SHOW_TRACEBACKS:
        raise exc
    sys.exit(message + unsaved)


def yaml_error(exc: BaseException) -> yaml.MarkedYAMLError | None:
    """The YAML syntax error behind an exception, if there is one."""
    while exc is not None and not isinstance(exc, yaml.MarkedYAMLError):
        exc = exc.__cause__ or exc.__context__
    return exc


def foreign_group(exc: BaseException, args: list[str]) -> str | None:
    """The one-line config error for a group override the job's family does not have (`family=vae sde=ou`: the VAE
    has no sde), or None if the exception is another."""
    found = re.match(r"Could not override '([^']+)'\. No match in the defaults list", str(exc))
    if not found:
        return None
    family = next((a.split("=", 1)[1] for a in args if a.startswith("family=")), "score")
    return (f"config error: {found.group(1)}: not a config group of family {family} (each family's groups are in "
            f"the defaults of conf/family/{family}.yaml)")


def cli() -> None:
    """`python -m diffusion_runner`: Hydra's main, with Hydra's own errors printed as Hydra prints them, except a
    YAML syntax error in a config file, which is one line naming the file, line and column instead of a traceback.
    HYDRA_FULL_ERROR=1 shows every traceback."""
    if SHOW_TRACEBACKS:
        return main()
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises what it would print, so that it reaches this function
    try:
        main()
    except CompactHydraException as exc:
        foreign = foreign_group(exc, sys.argv[1:])
        if foreign:
            sys.exit(foreign)
        cause = f"\n{exc.__cause__}" if isinstance(exc.__cause__, OmegaConfBaseException) else ""
        sys.exit(f"{exc}{cause}")
    except Exception as exc:
        bad = yaml_error(exc)
        if bad is None:
            raise
        mark = bad.problem_mark or bad.context_mark
        where = f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}" if mark else "a config file"
        context = f" ({bad.context})" if bad.context else ""
        sys.exit(f"config error: {where}: YAML syntax: {bad.problem}{context}")


if __name__ == "__main__":
    cli()
