"""Time the exact likelihood (probability-flow ODE, exact divergence) of 10,000 fresh gmm8 points under a trained
model and under the oracle; the median time over repeats, with Hutchinson's estimator alongside. kl_ode is the mean
over the repeats (each draws its own points and probes) with its pooled standard error.

    python scripts/bench_likelihood.py [RUN_DIR] [--points 10000] [--repeats 3] [--tolerances 1e-5 1e-4]

Each tolerance is the solver's rtol = atol; the job's default is eval.metrics.likelihood.rtol = atol = 1e-5.

RUN_DIR is a finished job of `python -m diffusion_runner` (its checkpoint and config are used); without it the
script runs the default job first, into a temporary directory.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from diffusion_runner.build import build
from diffusion_runner.metrics import EvalContext
from diffusion_runner.pipeline import restore
from diffusion_runner.score import Oracle
from diffusion_runner.score.likelihood import ODELikelihood as Likelihood


def timed(metric: Likelihood, ctx_of, repeats: int) -> tuple[float, dict]:
    """(median seconds, the estimates of the last repeat with kl_ode and its standard error pooled over every
    repeat): each repeat draws its own points and probes, so the repeats' means average to a tighter estimate."""
    seconds, outs = [], []
    for r in range(repeats):
        ctx = ctx_of(r)
        start = time.perf_counter()
        outs.append(metric(ctx))
        seconds.append(time.perf_counter() - start)
    pooled = {"kl_ode": statistics.mean(o["kl_ode"] for o in outs),
              "kl_ode_se": sum(o["kl_ode_se"] ** 2 for o in outs) ** 0.5 / len(outs)}
    return statistics.median(seconds), {**outs[-1], **pooled}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-5, 1e-4])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir
        if run_dir is None:
            run_dir = Path(tmp) / "job"
            print("$ python -m diffusion_runner ~eval.metrics.likelihood", f"hydra.run.dir={run_dir}", flush=True)
            subprocess.run([sys.executable, "-m", "diffusion_runner", "~eval.metrics.likelihood",
                            f"hydra.run.dir={run_dir}"], check=True, stdout=subprocess.DEVNULL)
        cfg = OmegaConf.load(run_dir / ".hydra/config.yaml")
        cfg.ckpt_path = str(run_dir)
        parts = build(cfg)
        model, _ = restore(cfg, parts)
        model.eval().requires_grad_(False)
        models = {"learned": model, "oracle": Oracle(parts.model.sde, parts.dataset)}
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.points} points; model from "
              f"{run_dir}; median of {args.repeats}")
        print(f"{'model':8s} {'divergence':11s} {'tol':>6s} {'seconds':>8s} {'nfe':>5s} {'nll':>8s} {'kl_ode':>8s} "
              f"{'± se':>7s}")
        for name, scored in models.items():
            for divergence in ("exact", "hutchinson"):
                for tol in args.tolerances:
                    metric = Likelihood(n_points=args.points, divergence=divergence, rtol=tol, atol=tol)
                    seconds, out = timed(metric, lambda r, m=scored: EvalContext(
                        np.empty((0, 2)), parts.dataset, np.random.default_rng([0, r]), m, "cpu"),
                        args.repeats)
                    print(f"{name:8s} {divergence:11s} {tol:6.0e} {seconds:8.1f} {out['nll_nfe']:5.0f} "
                          f"{out['nll']:8.4f} {out['kl_ode']:8.4f} {out['kl_ode_se']:7.4f}", flush=True)


if __name__ == "__main__":
    main()
