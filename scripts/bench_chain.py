"""The chain's two ELBO estimators on a trained chain: the denoising-matching form (the likelihood metric's) and the
notes' first form with consistency terms on one simulated trajectory; their means, and their noise for a fixed x_0.

    python scripts/bench_chain.py RUN_DIR [--points 4000]

RUN_DIR is a finished family=chain job (a job directory of experiment=chain, say). Each estimator is drawn twice
on the same fresh points with independent noise: the spread of the per-point -ELBO over the points (the data's and
the estimator's together) and the estimator's own noise, var(draw 1 - draw 2) / 2 per point, with the seconds per
draw. Both estimate the same -ELBO, in nats.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from diffusion_runner.build import build
from diffusion_runner.chain.likelihood import consistency_elbo, elbo_terms
from diffusion_runner.pipeline import restore


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--points", type=int, default=4000)
    args = parser.parse_args()
    cfg = OmegaConf.load(args.run_dir / ".hydra/config.yaml")
    cfg.ckpt_path = str(args.run_dir)
    parts = build(cfg)
    model, _ = restore(cfg, parts)
    model.eval().requires_grad_(False)
    x0 = torch.as_tensor(parts.dataset.sample(args.points, np.random.default_rng(12345)))
    estimators = {"denoising (the metric's)": lambda g: sum(elbo_terms(model, x0, g).values()),
                  "consistency (notes' first form)": lambda g: consistency_elbo(model, x0, g)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.points} points; model from "
          f"{args.run_dir} (T = {model.T})")
    print("\n| estimator | -ELBO (nats) ± se | spread over points (std) | estimator noise per point (std) | "
          "seconds per draw |\n|---|---|---|---|---|")
    for name, estimate in estimators.items():
        draws, seconds = [], []
        for seed in (1, 2):
            start = time.perf_counter()
            draws.append(estimate(torch.Generator().manual_seed(seed)).double())
            seconds.append(time.perf_counter() - start)
        a, b = draws
        noise = float(((a - b).var() / 2).sqrt())
        print(f"| {name} | {float(a.mean()):.4f} ± {float(a.std()) / math.sqrt(len(a)):.4f} | {float(a.std()):.3f} "
              f"| {noise:.3f} | {sum(seconds) / 2:.1f} |")


if __name__ == "__main__":
    main()
