"""Training-loop overhead per backbone: the runner's train() against a bare PyTorch loop, in one process.

For each model both loops fit the same network (same initialisation) on the same training set with the same batch
size, optimiser, cosine learning-rate schedule and EMA of the weights, on the same objective: DSM with t ~ U[eps, T]
and the inverse-variance weighting, i.e. mean || s(t) s_theta(x_t, t) + z ||^2 (the script sets loss.t_sampling=uniform,
loss.coverage=0 and loss.stable_target=0; importance sampling and the stable target are costs of the objective, not
of the loop). The bare loop writes that out by hand; the runner adds what is its own: the Loss object, the per-step
loss record and its finiteness check, the stop-signal poll, and the job's callbacks (train.callbacks): progress
reports (ten a run), the tqdm bar (drawn to stderr even when it is not a terminal, so its cost is counted) and
checkpoints of the whole training state (to a temporary directory, every train.checkpoint_every steps and at the
end). Repeats alternate the two
loops; the script prints, per model, the median steps/s of each and the median of the per-repeat ratios
runner / bare (robust to a machine that speeds up or slows down during the run), then a markdown table.

The other families (--models family=vae,family=chain) run their own objective in both loops, so the ratio is the
loop's overhead alone.

    python scripts/bench_train.py [--models mlp,resmlp,transformer,hypernet] [--steps 2000] [--repeats 5]
                                  [key=value config overrides ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from diffusion_runner import checkpoints
from diffusion_runner.build import build, build_loss
from diffusion_runner.callbacks import Context
from diffusion_runner.interrupts import StopSignals
from diffusion_runner.train import TrainOptions, train

CONF = Path(__file__).resolve().parents[1] / "conf"
PLAIN_DSM = ["loss.t_sampling=uniform", "loss.coverage=0", "loss.stable_target=0", "weighting=inv_var"]
BACKBONES = "mlp,resmlp,transformer,hypernet"


def bare_loop(model, sde, data, cfg, steps):
    """The minimal loop: batch, t ~ U[eps, T], noise, eps-space DSM loss, optimiser and schedule step, EMA lerp; for
    another family (sde None), the family's own objective in place of the hand-written DSM."""
    objective = None if sde is not None else build_loss(cfg, model)
    generator = torch.Generator().manual_seed(0)
    optimizer = instantiate(cfg.train.optimizer)(model.parameters())
    scheduler = instantiate(cfg.train.scheduler, T_max=steps)(optimizer)
    live = [p.detach() for p in model.parameters()]
    ema = [p.clone() for p in live]
    n, batch_size = data.shape[0], cfg.train.batch_size
    start = time.perf_counter()
    for step in range(steps):
        x0 = data[torch.randint(n, (batch_size,))]
        if objective is not None:
            objective.set_step(step)
            loss = objective(model, x0, generator)
        else:
            t = sde.eps + (sde.T - sde.eps) * torch.rand(batch_size)
            z = torch.randn_like(x0)
            m, s = sde.marginal(t)
            m, s = m[:, None], s[:, None]
            loss = (s * model.score(m * x0 + s * z, t) + z).pow(2).sum(1).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        torch._foreach_lerp_(ema, live, 1.0 - min(cfg.train.ema_decay, (2 + step) / (11 + step)))
    return steps / (time.perf_counter() - start)


def runner_loop(model, sde, data, cfg, steps):
    with tempfile.TemporaryDirectory() as tmp, StopSignals() as stop, stop.deferred():
        options = TrainOptions(steps=steps, batch_size=cfg.train.batch_size,
                               optimizer=instantiate(cfg.train.optimizer),
                               scheduler=instantiate(cfg.train.scheduler, T_max=steps), grad_clip=cfg.train.grad_clip,
                               ema_decay=cfg.train.ema_decay)
        callbacks = [instantiate(node) for node in cfg.train.callbacks.values()]
        context = Context(save=lambda state: checkpoints.save(Path(tmp) / checkpoints.FILE, state),
                          interactive=True)  # the bar draws (to stderr) even when it is not a terminal
        fit = train(model, build_loss(cfg, model), data, options, generator=torch.Generator().manual_seed(0),
                    callbacks=callbacks, context=context, stop=stop.requested)
    return fit.steps_per_second


def compare(name: str, overrides: list[str], steps: int, repeats: int) -> dict:
    """`name`: a score-family model option, or family=NAME for another family with its own objective."""
    choice = [name] if name.startswith("family=") else [*PLAIN_DSM, f"model={name}"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*choice, f"train.log_every={max(1, steps // 10)}", *overrides])
    if cfg.train.grad_clip is not None or not cfg.train.ema_decay or cfg.train.scheduler is None:
        raise SystemExit("bench_train compares loops with EMA, a scheduler and no gradient clipping")
    parts = build(cfg)
    dataset, sde = parts.dataset, getattr(parts.model, "sde", None)
    data = torch.as_tensor(dataset.sample(cfg.train.n_data, np.random.default_rng(0)))

    def fresh():
        torch.manual_seed(0)
        return build(cfg).model

    params = sum(p.numel() for p in fresh().parameters())
    print(f"model {name}: {params} parameters, batch {cfg.train.batch_size}, {steps} steps x {repeats} repeats")
    bare_loop(fresh(), sde, data, cfg, max(50, steps // 10))  # warm-up
    runner, bare = [], []
    for r in range(repeats):
        bare.append(bare_loop(fresh(), sde, data, cfg, steps))
        runner.append(runner_loop(fresh(), sde, data, cfg, steps))
        print(f"  repeat {r + 1}: bare {bare[-1]:.0f} steps/s, runner {runner[-1]:.0f} steps/s")
    ratio = statistics.median(rn / b for rn, b in zip(runner, bare, strict=True))
    row = {"model": name, "params": params, "bare": statistics.median(bare), "runner": statistics.median(runner),
           "ratio": ratio}
    print(f"  median: bare {row['bare']:.0f} steps/s, runner {row['runner']:.0f} steps/s; "
          f"median per-repeat ratio runner/bare = {ratio:.3f}")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=BACKBONES, help="comma-separated score-family model options, or "
                        "family=vae, family=chain for another family's default model and objective")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; overrides {PLAIN_DSM + args.overrides}")
    rows = [compare(name, args.overrides, args.steps, args.repeats) for name in args.models.split(",")]
    print("\n| model | parameters | bare loop steps/s | runner steps/s | runner / bare (median of repeats) |\n"
          "|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['params']:,} | {row['bare']:.0f} | {row['runner']:.0f} | {row['ratio']:.3f} |")


if __name__ == "__main__":
    main()
