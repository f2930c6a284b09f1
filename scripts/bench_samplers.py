"""Samplers against each other on trained checkpoints: sampler x steps -> NFE, kl_kde, chamfer, sampling seconds,
for the oracle and a learned model of each SDE, with kl_kde's excess over Euler-Maruyama-1000 paired by seed.

    python scripts/bench_samplers.py TRAIN_SWEEP [--out DIR] [--rows ROW,...] [--seeds 0,1,2] [--only NAME,...]

TRAIN_SWEEP is a sweep directory with checkpoints, e.g. that of `python -m diffusion_runner -m
experiment=writeup_table`. Every sampler setting is one sweep of the real command line,
`python -m diffusion_runner -m +row=ROWS seed=SEEDS ckpt_path=TRAIN_SWEEP sampler=...`, run with the basic launcher
(one job at a time, so the sampling times compare) into DIR/<setting>/, where its own report is written too. The
script then prints one markdown table over all settings (kl_kde and chamfer as differences from the first setting,
em-1000, paired by seed: the same checkpoint, prior seed and evaluation references), a summary of each setting's
largest mean relative difference over the rows, and each learned model's kl_ode from TRAIN_SWEEP.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from diffusion_runner.report import format_stat, load_jobs, rows_by

# name -> overrides; the first is the reference the others are compared with.
SETTINGS = {
    "em-1000": ["sampler=euler_maruyama", "sampler.steps=1000"],
    "em-100": ["sampler=euler_maruyama", "sampler.steps=100"],
    "reverse_diffusion-1000": ["sampler=reverse_diffusion", "sampler.steps=1000"],
    "reverse_diffusion-100": ["sampler=reverse_diffusion", "sampler.steps=100"],
    "pc-500x2": ["sampler=pc", "sampler.steps=500"],
    "pc-50x2": ["sampler=pc", "sampler.steps=50"],
    "ancestral-1000": ["sampler=ancestral", "sampler.steps=1000"],
    "ancestral-100": ["sampler=ancestral", "sampler.steps=100"],
    "ancestral-100-log": ["sampler=ancestral", "sampler.steps=100", "sampler/grid=log"],
    "annealed_langevin-20x50": ["sampler=annealed_langevin"],
    "ddim-10": ["sampler=ddim", "sampler.steps=10"],
    "ddim-25": ["sampler=ddim", "sampler.steps=25"],
    "ddim-50": ["sampler=ddim", "sampler.steps=50"],
    "ddim-50-uniform": ["sampler=ddim", "sampler.steps=50", "sampler/grid=uniform"],
    "heun-5": ["sampler=heun", "sampler.steps=5"],
    "heun-10": ["sampler=heun", "sampler.steps=10"],
    "heun-25": ["sampler=heun", "sampler.steps=25"],
    "heun-25-log": ["sampler=heun", "sampler.steps=25", "sampler/grid=log"],
    "heun-25-uniform": ["sampler=heun", "sampler.steps=25", "sampler/grid=uniform"],
    "dpm2-10": ["sampler=dpm_solver", "sampler.order=2"],
    "dpm2-10-lof": ["sampler=dpm_solver", "sampler.order=2", "sampler.lower_order_final=true"],
    "dpm3-10": ["sampler=dpm_solver"],
    "dpm3-10-lof": ["sampler=dpm_solver", "sampler.lower_order_final=true"],
    "dpm3-10-karras": ["sampler=dpm_solver", "sampler/grid=karras"],
    "dpm3-10-uniform": ["sampler=dpm_solver", "sampler/grid=uniform"],
    "dpm2-15": ["sampler=dpm_solver", "sampler.order=2", "sampler.steps=15"],
    "dpm3-15": ["sampler=dpm_solver", "sampler.steps=15"],
    "dpm2-20": ["sampler=dpm_solver", "sampler.order=2", "sampler.steps=20"],
    "dpm3-20": ["sampler=dpm_solver", "sampler.steps=20"],
    "dpm3-30": ["sampler=dpm_solver", "sampler.steps=30"],
    "dpm3-40": ["sampler=dpm_solver", "sampler.steps=40"],
    "ode-rtol1e-3": ["sampler=ode", "sampler.rtol=1e-3", "sampler.atol=1e-3"],
    "ode-rtol1e-5": ["sampler=ode"],
}
KEYS = ("nfe", "kl_kde", "chamfer", "sample_seconds")


def run_setting(name: str, overrides: list[str], args) -> Path:
    sweep = args.out / name
    if (sweep / "results.csv").exists():
        print(f"{name}: reusing {sweep}", flush=True)
        return sweep
    command = [sys.executable, "-m", "diffusion_runner", "-m", f"+row={args.rows}", f"seed={args.seeds}",
               f"ckpt_path={args.train_sweep}", *overrides, "~eval.metrics.likelihood", f"hydra.sweep.dir={sweep}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return sweep


def relative_change(entry, reference, metric: str) -> dict[int, float]:
    """seed -> 100 (metric / reference's metric - 1) over the seeds both finished (the same evaluation references)."""
    mine, theirs = entry.by_seed(metric), reference.by_seed(metric)
    return {s: 100 * (mine[s] / theirs[s] - 1) for s in sorted(mine.keys() & theirs.keys())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("train_sweep", type=Path)
    parser.add_argument("--out", type=Path, default=Path(f"outputs/sweeps/samplers/{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("--rows", default="ddpm_inv_var,ddpm_oracle,ou_inv_var,ou_oracle")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default=None, help="comma-separated setting names (default: all)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SETTINGS)
    names = [next(iter(SETTINGS)), *[n for n in names if n != next(iter(SETTINGS))]]
    results = {name: rows_by(run_setting(name, SETTINGS[name], args), "+row") for name in names}
    reference = results[names[0]]
    print(f"\nSettings: {args.rows} x seeds {args.seeds}; checkpoints from {args.train_sweep}\n")
    print("| sampler | row | NFE | kl_kde | kl_kde − em-1000 (paired) | kl_kde Δ% per seed | chamfer | chamfer Δ% per "
          "seed | sampling s |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst: dict[str, dict[str, float]] = {}  # setting -> metric -> the largest |mean Δ%| over the rows
    for row in args.rows.split(","):
        for name in names:
            entry = results[name].get(row)
            if entry is None:
                continue
            stats, first = entry.stats, name == names[0]
            paired = entry.excess_over(reference[row], "kl_kde")
            cells = []
            for metric in ("kl_kde", "chamfer"):
                changes = relative_change(entry, reference[row], metric)
                if not first and changes:
                    mean = float(np.mean(list(changes.values())))
                    worst.setdefault(name, {})[metric] = max(worst.get(name, {}).get(metric, 0.0), abs(mean))
                    cells.append(f"{mean:+.1f} ({', '.join(f'{v:+.1f}' for v in changes.values())})")
                else:
                    cells.append("")
            print(f"| {name} | {row} | {stats['nfe'][0]:.0f} | {format_stat(stats.get('kl_kde'))} | "
                  f"{format_stat(paired) if not first else ''} | {cells[0]} | {format_stat(stats.get('chamfer'))} | "
                  f"{cells[1]} | {format_stat(stats.get('sample_seconds'), 2)} |")
    print(f"\nThe largest |mean Δ%| against {names[0]} over the rows (the goal: both within 2%):\n")
    print("| sampler | NFE (first row) | kl_kde | chamfer |")
    print("|---|---|---|---|")
    for name, by_metric in worst.items():
        nfe = next(iter(results[name].values())).stats["nfe"][0]
        print(f"| {name} | {nfe:.0f} | {by_metric.get('kl_kde', math.nan):.1f}% | "
              f"{by_metric.get('chamfer', math.nan):.1f}% |")
    train_jobs, _ = load_jobs(args.train_sweep)
    print("\nkl_ode of each model (from its training job, mean ± std over seeds):")
    for row in args.rows.split(","):
        values = [j.metrics["kl_ode"] for j in train_jobs if f"+row={row}" in j.overrides and "kl_ode" in j.metrics]
        if values:
            print(f"  {row}: {np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else np.nan:.4f}")


if __name__ == "__main__":
    main()
