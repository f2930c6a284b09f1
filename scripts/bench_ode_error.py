"""How far each deterministic score sampler lands from the probability-flow ODE's exact solution, by steps: the
error at few network evaluations, and the observed order of convergence.

    python scripts/bench_ode_error.py [--points 4000] [--steps 5 10 15 20 40 80] [--sdes ddpm ou]

For each SDE, the exact score of gmm8 (`model=oracle`) and `--points` prior draws (seed 0): the reference is the
adaptive RK45 solution at rtol = atol = 1e-9 (`sampler=ode`), and each sampler setting starts from the same draws.
`error` is the mean Euclidean distance of its samples to the reference's (the data's modes have std 0.5);
`order` is log2 of the error's ratio between successive step counts, divided by log2 of their ratio.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from diffusion_runner.build import build

CONF = Path(__file__).resolve().parents[1] / "diffusion_runner" / "conf"
# name -> overrides of the job's config: each sampler with its own default grid
SETTINGS = {
    "ddim (karras)": ["sampler=ddim"],
    "heun (karras)": ["sampler=heun"],
    "dpm_solver order 2 (log)": ["sampler=dpm_solver", "sampler.order=2"],
    "dpm_solver order 3 (log)": ["sampler=dpm_solver", "sampler.order=3"],
    "dpm_solver order 3, lower_order_final (log)": ["sampler=dpm_solver", "sampler.order=3",
                                                    "sampler.lower_order_final=true"],
}


def parts_of(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return build(compose("config", overrides=["model=oracle", *overrides]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=4000)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 15, 20, 40, 80])
    parser.add_argument("--sdes", nargs="+", default=["ddpm", "ou"])
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.points} points of gmm8, exact score")
    for sde in args.sdes:
        reference = parts_of([f"sde={sde}", "sampler=ode", "sampler.rtol=1e-9", "sampler.atol=1e-9"])
        shape = (args.points, *reference.dataset.shape)
        exact = reference.sampler.sample(reference.model.score, reference.model.sde, shape,
                                         torch.Generator().manual_seed(0)).x
        print(f"\n{sde}: mean distance to the exact ODE solution (NFE; observed order)\n")
        print("| sampler | " + " | ".join(f"{n} steps" for n in args.steps) + " |")
        print("|---|" + "---|" * len(args.steps))
        for name, overrides in SETTINGS.items():
            cells, last = [], None
            for n in args.steps:
                parts = parts_of([f"sde={sde}", *overrides, f"sampler.steps={n}"])
                result = parts.sampler.sample(parts.model.score, parts.model.sde, shape,
                                              torch.Generator().manual_seed(0))
                error = float((result.x - exact).norm(dim=1).mean())
                order = "" if last is None else f"; {math.log2(last[1] / error) / math.log2(n / last[0]):.1f}"
                cells.append(f"{error:.4f} ({result.nfe}{order})")
                last = (n, error)
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
