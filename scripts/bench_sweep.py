"""The writeup-table sweep end to end: wall time of the whole multirun, the time each stage took, and every
learned configuration's kl_kde against its SDE's oracle row, and its kl_ode.

    python scripts/bench_sweep.py [SWEEP_DIR] [-- extra overrides ...]

SWEEP_DIR defaults to outputs/sweeps/writeup_table/bench-<time>; the sweep's own report (results.md, ...)
is left there.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from diffusion_runner.report import load_jobs, summarise

STAGES = ("train_seconds", "sample_seconds", "eval_seconds", "wall_seconds")


def main():
    args = sys.argv[1:]
    extra = args[args.index("--") + 1:] if "--" in args else []
    positional = args[: args.index("--")] if "--" in args else args
    default = f"outputs/sweeps/writeup_table/bench-{time.strftime('%Y%m%d-%H%M%S')}"
    sweep = Path(positional[0] if positional else default)
    command = [sys.executable, "-m", "diffusion_runner", "-m", "experiment=writeup_table", *extra,
               f"hydra.sweep.dir={sweep}"]
    print("$", " ".join(command[1:]))
    start = time.perf_counter()
    proc = subprocess.run(command, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    jobs, _ = load_jobs(sweep)
    print(f"sweep wall time: {wall:.0f} s ({wall / 60:.1f} min) for {len(jobs)} jobs, exit status {proc.returncode}")
    for stage in STAGES:
        values = np.array([j.metrics.get(stage, np.nan) for j in jobs], dtype=float)
        print(f"  {stage:15s} total {np.nansum(values):7.0f} s   per job mean {np.nanmean(values):6.1f} s   "
              f"max {np.nanmax(values):6.1f} s")
    print(f"{'configuration':22s}{'ok':>4s}{'kl_kde mean':>13s}{'std':>9s}{'/ oracle':>10s}"
          f"{'kl_ode mean':>13s}{'std':>9s}")
    for row in summarise(jobs):
        mean, std, _ = row.stats.get("kl_kde", (np.nan, np.nan, 0))
        ode_mean, ode_std, _ = row.stats.get("kl_ode", (np.nan, np.nan, 0))
        print(f"{row.key:22s}{row.count('ok'):4d}{mean:13.4f}{std:9.4f}{row.ratio('kl_kde'):10.3f}"
              f"{ode_mean:13.4f}{ode_std:9.4f}")
    print(f"report: {sweep / 'results.md'}")


if __name__ == "__main__":
    main()
