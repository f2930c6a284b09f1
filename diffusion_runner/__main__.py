"""Entry point: `python -m diffusion_runner [group=option ...] [key=value ...]` (add -m to sweep).

Every job ends with metrics.json: status "ok", or "failed" with the error. A failed job exits non-zero
in a single run; in a sweep it is recorded and the sweep goes on to the next job.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from diffusion_runner import config  # noqa: F401  (registers the config schema)
from diffusion_runner.errors import ConfigError
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


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    start = time.perf_counter()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    logger = NoLogger()
    results: dict = {}
    try:
        validate(cfg)  # before the logger, which may reach out to a server
        make_logger = instantiate(cfg.logger, _partial_=True)
        logger = make_logger(run_config=OmegaConf.to_container(cfg, resolve=True), out_dir=out_dir,
                             job_name=hydra_cfg.job.override_dirname or out_dir.name,
                             sweep_dir=Path(hydra_cfg.sweep.dir) if multirun else None)
        run(cfg, out_dir, logger, results)
    except Exception as exc:
        bad_config = config_error(exc)
        if bad_config is not None:
            log.error("config error: %s", bad_config)
        else:
            log.exception("job failed")
        error = f"ConfigError: {bad_config}" if bad_config else f"{type(exc).__name__}: {exc}"
        write_json(out_dir / "metrics.json", {**results, "status": "failed", "error": error,
                                              "wall_seconds": time.perf_counter() - start})
        logger.finish(failed=True)
        if multirun:
            return
        if bad_config is not None:
            sys.exit(f"config error: {bad_config}")
        raise
    results.update(status="ok", wall_seconds=time.perf_counter() - start)
    write_json(out_dir / "metrics.json", results)
    logger.summary(results)
    logger.finish()
    log.info("done in %.1f s: %s", results["wall_seconds"], out_dir / "metrics.json")


if __name__ == "__main__":
    main()
