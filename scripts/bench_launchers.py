"""Optuna's sweeper and the Slurm launcher against the basic sweeper and launcher: the wall time of each whole
multirun and its overhead per job (the sweep's wall time less the jobs' own wall_seconds, over the jobs), so the
jobs' sizes cancel out.

    python scripts/bench_launchers.py [--jobs 4] [--slurm] [-- extra overrides ...]

First `python -m diffusion_runner -m experiment=tune hydra.sweeper.n_trials=N` with the overrides; then N jobs of
the first trial's parameters (seeds 0 .. N-1) as one `-m` command on the basic launcher and, with --slurm, the same
command with hydra/launcher=slurm (a cluster must be up: scripts/slurm_cluster.sh start). The sweep directories are
left under outputs/sweeps/bench_launchers/<time>/.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from diffusion_runner.report import load_jobs


def sweep(args: list[str], directory: Path) -> float:
    """Run one multirun into `directory`; its wall seconds."""
    command = [sys.executable, "-m", "diffusion_runner", "-m", *args, f"hydra.sweep.dir={directory}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def report(name: str, wall: float, directory: Path) -> None:
    jobs, _ = load_jobs(directory)
    own = sum(j.metrics.get("wall_seconds", 0.0) for j in jobs)
    print(f"{name:7s} {len(jobs)} jobs  sweep wall {wall:6.1f} s  jobs' own {own:6.1f} s  "
          f"overhead per job {(wall - own) / len(jobs):5.2f} s", flush=True)


def main():
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--slurm", action="store_true", help="also through hydra/launcher=slurm")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    root = Path("outputs/sweeps/bench_launchers") / time.strftime("%Y%m%d-%H%M%S")
    walls = {"optuna": sweep(["experiment=tune", f"hydra.sweeper.n_trials={args.jobs}", *extra], root / "optuna")}
    jobs, _ = load_jobs(root / "optuna")
    first = [o for o in jobs[0].overrides if o not in extra and not o.startswith("experiment=")]
    same = [*first, f"seed=range(0,{args.jobs})", *extra]
    walls["basic"] = sweep(same, root / "basic")
    if args.slurm:
        walls["slurm"] = sweep(["hydra/launcher=slurm", *same], root / "slurm")
    for name, wall in walls.items():
        report(name, wall, root / name)


if __name__ == "__main__":
    main()
