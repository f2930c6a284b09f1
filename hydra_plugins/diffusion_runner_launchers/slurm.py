"""`hydra/launcher=slurm`: hydra-submitit-launcher's Slurm launcher, except that a job the scheduler ends without
a result does not end the sweep.

Hydra's launcher collects the jobs' results in order, and the first job that has none (cancelled by scancel before
it started, killed at its time limit or for its memory, lost with its node) raises in the sweep's process: the jobs
after it are no longer waited for and no report is written. Here such a job is recorded as failed in its run
directory (diffusion_runner.rundir.record_lost), the other jobs are waited for, and the sweep ends with its report.
A running job that scancel ends records itself (SIGTERM: failed, with its checkpoint kept).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.errors import CompactHydraException
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
from omegaconf import OmegaConf, open_dict

from diffusion_runner.errors import one_line

log = logging.getLogger(__name__)


class SubmissionRefused(CompactHydraException):
    """sbatch refused the sweep's jobs; printed as one line."""


class SlurmLauncher(BaseSubmititLauncher):
    _EXECUTOR = "slurm"

    def executor(self) -> Any:
        """A submitit executor with this launcher's parameters, as Hydra's launcher builds it."""
        import submitit

        init = {"folder": self.params["submitit_folder"]}
        if "max_num_timeout" in self.params:
            init["slurm_max_num_timeout"] = self.params["max_num_timeout"]
        executor = submitit.AutoExecutor(cluster=self._EXECUTOR, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in self.params.items()
                                      if k not in ("submitit_folder", "max_num_timeout")})
        return executor

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:  # hydra.sweep.mode, as Hydra's launchers honour it
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        log.info("Submitit 'slurm' sweep output dir : %s", sweep_dir)
        params = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", num, " ".join(filter_overrides(overrides)))
            params.append((list(overrides), "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state()))
        try:
            jobs = self.executor().map_array(self, *zip(*params, strict=True))
        except submitit.core.utils.FailedJobError as exc:  # sbatch refused: no controller, limits, a bad option
            raise SubmissionRefused(f"hydra/launcher=slurm: the sweep was not submitted: {one_line(exc)}") from exc
        returns = []
        for (overrides, _, num, _, _), job in zip(params, jobs, strict=True):
            try:
                returns.append(job.results()[0])
            except submitit.core.utils.UncompletedJobError as exc:
                returns.append(self.lost(overrides, num, job, exc))
        return returns

    def lost(self, overrides: list[str], num: int, job: Any, exc: Exception) -> JobReturn:
        """The record of job `num`, which ended with no result, and its JobReturn: completed with no value (as a job
        that records its own failure returns), so the sweeper goes on."""
        from diffusion_runner import rundir

        config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(config.hydra.job):
            config.hydra.job.num, config.hydra.job.id = num, job.job_id
        out_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        error = f"Slurm job {job.job_id} ended with no result (state {job.state}): {one_line(exc)}"
        task = OmegaConf.masked_copy(config, [k for k in config if k != "hydra"])
        if rundir.record_lost(out_dir, task, config.hydra, error):
            log.error("job #%d: %s; recorded as failed in %s", num, error, out_dir / rundir.METRICS)
        result = JobReturn(overrides=overrides, cfg=task, hydra_cfg=config, working_dir=str(out_dir))
        result.status = JobStatus.COMPLETED
        result.return_value = float("nan") if config.get("optimized_metric") else None  # NaN: a failed trial
        return result
