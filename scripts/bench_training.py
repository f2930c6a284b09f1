"""What each training change buys on the writeup's four learned cells: kl_ode (mean ± std over seeds) and the
training seconds per job, for a path of settings from the previous defaults to today's.

    python scripts/bench_training.py [--out DIR] [--seeds 0,1,2] [--only NAME,...]

Every setting is one sweep of the real command line (joblib launcher, two jobs at a time), sampled with Heun-25
and evaluated by the likelihood alone, so it measures the model; a setting whose DIR/<name>/results.csv exists is
read, not re-run. kl_ode = E_q[log q - log p_theta] in nats, by the probability-flow ODE (docs/RESULTS.md).

The sweeps' own train seconds drift with the machine from one sweep to the next, so the training time of the
first and the last setting is also measured alternately in one process (one torch thread, as each job of the
sweep gets; `--time-steps` steps per repeat, median rate over `--repeats`) and projected to their full steps.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from diffusion_runner.report import load_jobs

CONF = Path(__file__).resolve().parents[1] / "conf"

CELLS = ("ou_uniform", "ou_inv_var", "ddpm_uniform", "ddpm_inv_var")
PREVIOUS = ["loss.coverage=0", "loss.stable_target=0", "train.batch_size=512", "train.steps=20000",
            "train.optimizer.betas=[0.9,0.999]"]
# name -> overrides of today's defaults; each setting adds one change to the one before it.
SETTINGS = {
    "previous defaults": PREVIOUS,
    "+ coverage 0.5": PREVIOUS[1:],
    "+ stable target 256": PREVIOUS[2:],
    "+ batch 256 x 25k steps": PREVIOUS[4:],
    "+ Adam beta2 0.99 (today)": [],
}
EVAL = ["sampler=heun", "eval.n_samples=2000", "~eval.metrics.kl_kde", "~eval.metrics.chamfer", "~eval.metrics.emd"]


def run_setting(name: str, overrides: list[str], args) -> Path:
    sweep = args.out / re.sub(r"[^A-Za-z0-9.-]+", "_", name.replace("+", "plus")).strip("_")
    if (sweep / "results.csv").exists():
        print(f"{name}: reusing {sweep}", flush=True)
        return sweep
    command = [sys.executable, "-m", "diffusion_runner", "-m", "hydra/launcher=joblib", f"+row={','.join(CELLS)}",
               f"seed={args.seeds}", *EVAL, *overrides, f"hydra.sweep.dir={sweep}"]
    print("$", " ".join(f"'{c}'" if "[" in c or "~" in c else c for c in command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return sweep


def training_seconds(settings: dict[str, list[str]], steps: int, repeats: int) -> dict[str, float]:
    """name -> projected seconds to train the setting's full train.steps, from its median rate over alternating
    short runs of the real job (sampling and evaluation cut to nothing)."""
    torch.set_num_threads(1)
    short = [f"train.steps={steps}", "threads=1", "eval.n_samples=100", "sampler.steps=5",
             *(f"~eval.metrics.{name}" for name in ("kl_kde", "chamfer", "emd", "likelihood"))]
    rates: dict[str, list[float]] = {name: [] for name in settings}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        full = {name: compose("config", overrides=overrides).train.steps for name, overrides in settings.items()}
        jobs = {name: compose("config", overrides=[*overrides, *short]) for name, overrides in settings.items()}
    for _ in range(repeats):
        for name, cfg in jobs.items():
            results: dict = {}
            with tempfile.TemporaryDirectory() as out:
                run(cfg, Path(out), NoLogger(), results)
            rates[name].append(results["train_steps_per_s"])
    return {name: full[name] / statistics.median(r) for name, r in rates.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path(f"outputs/sweeps/training/{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default=None, help="comma-separated setting names (default: all)")
    parser.add_argument("--time-steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SETTINGS)
    lines = []
    for name in names:
        jobs, _ = load_jobs(run_setting(name, SETTINGS[name], args))
        cells = []
        for cell in CELLS:
            values = np.array([j.metrics["kl_ode"] for j in jobs if f"+row={cell}" in j.overrides and
                               j.metrics.get("status") == "ok"])
            cells.append(f"{values.mean():.4f} ± {values.std(ddof=1):.4f}" if len(values) > 1 else "n/a")
        seconds = np.mean([j.metrics["train_seconds"] for j in jobs if "train_seconds" in j.metrics])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seconds:.1f} |")
    print("\n".join(["| setting | " + " | ".join(CELLS) + " | train s / job |", "|---" * (len(CELLS) + 2) + "|",
                     *lines]))
    first, last = list(SETTINGS)[0], list(SETTINGS)[-1]
    seconds = training_seconds({first: SETTINGS[first], last: SETTINGS[last]}, args.time_steps, args.repeats)
    print(f"\ntraining time, alternating in one process (1 thread, median of {args.repeats} x {args.time_steps} "
          f"steps, projected to the full run): {first} {seconds[first]:.1f} s, {last} {seconds[last]:.1f} s, "
          f"ratio {seconds[last] / seconds[first]:.3f}")


if __name__ == "__main__":
    main()
