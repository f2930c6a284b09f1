"""Time the exact likelihood (the model's ODE, exact divergence) of 10,000 fresh gmm8 points under a trained model
(a score model's probability-flow ODE, or a flow's own) and, for the score family, under the oracle; the median time
over repeats, with Hutchinson's estimator alongside. kl_ode is the mean
over the repeats (each draws its own points and probes) with its pooled standard error.

    python scripts/bench_likelihood.py [RUN_DIR] [--points 10000] [--repeats 3] [--steps 15 20 25]
                                       [--tolerances 1e-5 1e-4]

Each solver runs on the same points in a repeat: rk4 with each of --steps (the job's default, 25 steps in log sigma)
(a flow's: even in t) and the adaptive RK45 with rtol = atol = each of --tolerances, the first of which is the
reference: `diff` is the
mean over repeats of the per-point difference log p(solver) - log p(reference), with its pooled standard error, so
a solver's error shows apart from the sampling noise of kl_ode.

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
from hydra.utils import get_class
from omegaconf import OmegaConf

from diffusion_runner.build import build
from diffusion_runner.likelihood import FlowLikelihood
from diffusion_runner.metrics import EvalContext
from diffusion_runner.pipeline import restore
from diffusion_runner.score import Oracle, ScoreModel


def pooled_mean(values: list[float], errors: list[float]) -> tuple[float, float]:
    """The mean of per-repeat estimates and its standard error."""
    return statistics.mean(values), sum(e**2 for e in errors) ** 0.5 / len(values)


def timed(metric: FlowLikelihood, ctx_of, repeats: int) -> tuple[float, dict, list[np.ndarray]]:
    """(median seconds, the estimates of the last repeat with kl_ode and its standard error pooled over every
    repeat, each repeat's per-point log p): each repeat draws its own points and probes, so the repeats' means
    average to a tighter estimate."""
    seconds, outs, log_ps = [], [], []
    for r in range(repeats):
        ctx = ctx_of(r)
        x = torch.as_tensor(ctx.dataset.sample(metric.n_points, ctx.rng))
        start = time.perf_counter()
        log_p, extras = metric.log_p(ctx, x, torch.Generator().manual_seed(r))
        seconds.append(time.perf_counter() - start)
        log_p = log_p["ode"].numpy()
        log_q = ctx.dataset.log_prob(x.double()).numpy()
        n = len(log_p)
        outs.append({**extras, "nll": float(-log_p.mean()), "kl_ode": float((log_q - log_p).mean()),
                     "kl_ode_se": float((log_q - log_p).std(ddof=1) / n**0.5)})
        log_ps.append(log_p)
    kl, se = pooled_mean([o["kl_ode"] for o in outs], [o["kl_ode_se"] for o in outs])
    return statistics.median(seconds), {**outs[-1], "kl_ode": kl, "kl_ode_se": se}, log_ps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, nargs="+", default=[15, 20, 25])
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
        metric_cls = get_class(cfg.eval.metrics.likelihood._target_)  # the family's likelihood metric
        models = {"learned": model}
        if isinstance(model, ScoreModel):
            models["oracle"] = Oracle(parts.model.sde, parts.dataset)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.points} points; model from "
              f"{run_dir}; median of {args.repeats}")
        print(f"{'model':8s} {'divergence':11s} {'solver':12s} {'seconds':>8s} {'nfe':>5s} {'nll':>8s} "
              f"{'kl_ode':>8s} {'± se':>7s} {'diff':>9s} {'± se':>7s}")
        solvers = [(f"RK45 {tol:.0e}", {"method": "RK45", "rtol": tol, "atol": tol}) for tol in args.tolerances]
        solvers += [(f"rk4 {steps}", {"method": "rk4", "steps": steps}) for steps in args.steps]
        for name, scored in models.items():
            for divergence in ("exact", "hutchinson"):
                reference = None
                for label, solver in solvers:
                    metric = metric_cls(n_points=args.points, divergence=divergence, **solver)
                    seconds, out, log_ps = timed(metric, lambda r, m=scored: EvalContext(
                        np.empty((0, 2)), parts.dataset, np.random.default_rng([0, r]), m, "cpu"),
                        args.repeats)
                    reference = reference or log_ps
                    diffs = [a - b for a, b in zip(log_ps, reference, strict=True)]
                    diff, diff_se = pooled_mean([float(d.mean()) for d in diffs],
                                                [float(d.std(ddof=1) / len(d) ** 0.5) for d in diffs])
                    print(f"{name:8s} {divergence:11s} {label:12s} {seconds:8.1f} {out['nll_nfe']:5.0f} "
                          f"{out['nll']:8.4f} {out['kl_ode']:8.4f} {out['kl_ode_se']:7.4f} {diff:9.5f} "
                          f"{diff_se:7.5f}", flush=True)


if __name__ == "__main__":
    main()
