"""Training-loop overhead: the runner's train() against a bare PyTorch loop, in one process.

Both loops fit the same MLP with the same batch size, optimiser, learning rate and plain DSM objective on the
same training set (the script sets loss.stable_target=0 and loss.coverage=0: the stable target's extra matrix
product is a cost of the loss, not of the loop); the runner adds what its default config asks for
(importance-sampled t, cosine schedule, gradient clipping if set, EMA, per-step loss record, progress reports).
Repeats alternate the two loops; the script prints the median of each and the median of the per-repeat ratios
(robust to a machine that speeds up or slows down during the run).

    python scripts/bench_train.py [--steps 2000] [--repeats 7] [key=value config overrides ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import diffusion_runner.config  # noqa: F401  (registers the schema)
from diffusion_runner.build import build_loss
from diffusion_runner.train import train

CONF = Path(__file__).resolve().parents[1] / "conf"
PLAIN_DSM = ["loss.stable_target=0", "loss.coverage=0"]  # the objective the bare loop computes


def bare_loop(model, sde, data, make_optimizer, steps, batch_size):
    """The minimal loop: batch, t ~ U[eps, T], noise, eps-space DSM loss, optimiser step."""
    optimizer = make_optimizer(model.parameters())
    n = data.shape[0]
    start = time.perf_counter()
    for _ in range(steps):
        x0 = data[torch.randint(n, (batch_size,))]
        t = sde.eps + (sde.T - sde.eps) * torch.rand(batch_size)
        z = torch.randn_like(x0)
        m, s = sde.marginal(t)
        m, s = m[:, None], s[:, None]
        loss = (s * model.score(m * x0 + s * z, t) + z).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def runner_loop(cfg, model, sde, data, steps):
    scheduler = instantiate(cfg.train.scheduler, T_max=steps) if cfg.train.scheduler else None
    fit = train(model, build_loss(cfg, sde), data, optimizer=instantiate(cfg.train.optimizer), steps=steps,
                batch_size=cfg.train.batch_size, scheduler=scheduler, grad_clip=cfg.train.grad_clip,
                ema_decay=cfg.train.ema_decay, log_every=max(1, steps // 10),
                generator=torch.Generator().manual_seed(0))
    return fit.steps_per_second


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*PLAIN_DSM, *args.overrides])
    dataset, sde = instantiate(cfg.dataset), instantiate(cfg.sde)
    data = torch.as_tensor(dataset.sample(cfg.train.n_data, np.random.default_rng(0)))
    fresh = lambda: instantiate(cfg.model, sde=sde, dataset=dataset)  # noqa: E731
    make_optimizer = instantiate(cfg.train.optimizer)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; model {cfg.model._target_} "
          f"width {cfg.model.get('width')} depth {cfg.model.get('depth')}; batch {cfg.train.batch_size}; "
          f"optimiser {dict(cfg.train.optimizer)}; {args.steps} steps x {args.repeats} repeats")
    bare_loop(fresh(), sde, data, make_optimizer, 200, cfg.train.batch_size)  # warm-up
    runner, bare = [], []
    for r in range(args.repeats):
        bare.append(bare_loop(fresh(), sde, data, make_optimizer, args.steps, cfg.train.batch_size))
        runner.append(runner_loop(cfg, fresh(), sde, data, args.steps))
        print(f"repeat {r + 1}: bare {bare[-1]:.0f} steps/s, runner {runner[-1]:.0f} steps/s")
    b, rn = statistics.median(bare), statistics.median(runner)
    ratio = statistics.median(r / b for r, b in zip(runner, bare, strict=True))
    print(f"median: bare {b:.0f} steps/s, runner {rn:.0f} steps/s; median per-repeat ratio runner/bare = {ratio:.3f}")


if __name__ == "__main__":
    main()
