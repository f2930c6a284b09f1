"""A points file of 10^6 rows: its load time, its peak memory against the array's own size, and training steps/s
on it against gmm8 (the same default job, one process, the two alternating over repeats).

    python scripts/bench_points_file.py [--rows 1000000] [--repeats 3] [--steps 2000]

The file is a .csv of 10^6 draws of gmm8 (x, y), written to a temporary directory. The load is PointsFile's
constructor (parse, check, shuffle, standardise, split), timed untraced; its peak is the largest tracemalloc total
during one more load (numpy's allocations are traced) against rows x columns x 4 bytes, the float32 array it
keeps.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from diffusion_runner.data import PointsFile, ring_mixture
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import fit, setup

CONF = Path(__file__).resolve().parents[1] / "conf"


def load(path: Path) -> float:
    start = time.perf_counter()
    PointsFile(str(path), columns=["x", "y"])
    return time.perf_counter() - start


def traced_peak(path: Path) -> int:
    """The largest traced allocation total (bytes) while the file loads (tracing slows it: timed apart)."""
    tracemalloc.start()
    PointsFile(str(path), columns=["x", "y"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def steps_per_second(overrides: list[str], steps: int, out: Path) -> float:
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"train.steps={steps}", "train.checkpoint_every=null", *overrides])
    job = setup(cfg)
    out.mkdir(parents=True, exist_ok=True)
    _, results = fit(cfg, job.parts, job.device, out, NoLogger())
    return results["train_steps_per_s"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "points.csv"
        points = ring_mixture().sample(args.rows, np.random.default_rng(0))
        np.savetxt(path, points, delimiter=",", header="x,y", comments="", fmt="%.7g")
        del points
        print(f"{path.name}: {args.rows} rows, {path.stat().st_size / 2**20:.1f} MiB on disk", flush=True)
        seconds = statistics.median(load(path) for _ in range(args.repeats))
        peak, size = traced_peak(path), args.rows * 2 * 4
        print(f"load: median {seconds:.2f} s over {args.repeats}; peak traced memory {peak / 2**20:.1f} MiB = "
              f"{peak / size:.2f} x the array's {size / 2**20:.1f} MiB", flush=True)
        rates = {"file": [], "gmm8": []}
        for k in range(args.repeats):
            for name, overrides in (("file", ["dataset=file", f"dataset.path={path}", f"train.n_data={args.rows}"]),
                                    ("gmm8", [])):
                rates[name].append(steps_per_second(overrides, args.steps, Path(tmp) / f"{name}{k}"))
                print(f"  {name}: {rates[name][-1]:.1f} steps/s", flush=True)
        file, gmm8 = statistics.median(rates["file"]), statistics.median(rates["gmm8"])
        print(f"training: file {file:.1f} steps/s, gmm8 {gmm8:.1f} steps/s (medians over {args.repeats}): "
              f"ratio {file / gmm8:.3f}")


if __name__ == "__main__":
    main()
