"""The training loop: minibatches of a fixed training set held on the device, for any family's objective.

The hot path is index -> loss -> backward -> (clip) -> step -> (EMA) with no DataLoader and no per-step Python
bookkeeping beyond storing the loss tensor and checking it is finite: on CPU every step, before the update (a host
read of the scalar costs ~0.2 us there); on CUDA, where a per-step read would stall the device, every
CUDA_CHECK_EVERY steps and before every save.

Training state (weights, EMA and its update count, optimiser, scheduler, every random stream, step, loss history) is
handed to `save` every `checkpoint_every` steps, at the end and when `stop()` turns true; training given that state
as `resume` continues to the same weights, bit for bit on CPU, as if it had never stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffusion_runner.errors import ConfigError, Interrupted
from diffusion_runner.family import Loss, Model

log = logging.getLogger(__name__)

CUDA_CHECK_EVERY = 100  # steps between finiteness checks of the loss on CUDA


class EMA:
    """p_ema <- d_n p_ema + (1 - d_n) p after update n = 1, 2, ..., with the warm-up
    d_n = min(decay, (1 + n) / (10 + n)), so a short run does not sample from weights still near their initialisation.

    One foreach lerp over parameter lists held here: ~5x cheaper per step than AveragedModel.update_parameters,
    which rebuilds those lists every call.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay, self.updates, self._source = decay, 0, model
        self._ema = [p.detach() for p in self.module.parameters()]
        self._live = [p.detach() for p in model.parameters()]

    def copy_buffers(self) -> None:
        """Buffers (e.g. batch-norm running statistics) are not averaged: take the live model's."""
        for ema_buffer, buffer in zip(self.module.buffers(), self._source.buffers(), strict=True):
            ema_buffer.copy_(buffer)

    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._ema, self._live, 1.0 - decay)


@dataclass
class TrainResult:
    model: Model  # the model to sample with: the EMA copy when EMA is on
    losses: np.ndarray  # loss of every step, including those before a resume
    optimizer: torch.optim.Optimizer
    seconds: float  # of this run of the loop
    steps_run: int  # steps taken in this run of the loop (fewer than len(losses) after a resume)

    @property
    def steps_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 and self.steps_run else float("nan")


def host_reads_are_cheap(device: torch.device) -> bool:
    """On CPU reading a scalar back costs nothing; on an accelerator it waits for the queued work."""
    return device.type == "cpu"


def diverged(loss: float, step: int) -> FloatingPointError:
    return FloatingPointError(f"training diverged: the loss is {loss} at step {step}")


def _rng_state(generator: torch.Generator | None) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if generator is not None:
        state["train"] = generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], generator: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    if generator is not None:
        generator.set_state(state["train"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(model: Model, loss_fn: Loss, data: torch.Tensor, *, labels: torch.Tensor | None = None,
          optimizer: Callable, steps: int, batch_size: int, scheduler: Callable | None = None,
          grad_clip: float | None = None, ema_decay: float | None = None, log_every: int = 1000,
          generator: torch.Generator | None = None,
          on_progress: Callable[[int, float, float], None] | None = None,
          checkpoint_every: int | None = None, save: Callable[[dict[str, Any]], None] | None = None,
          resume: dict[str, Any] | None = None, stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run `steps` optimiser steps on batches drawn uniformly with replacement from `data` (with their `labels`
    for a conditional model, passed through model.drop_labels); the partials
    optimizer(params) and scheduler(optimizer) (stepped once per step) build the optimiser and its schedule.

    on_progress(step, mean loss since the last report, steps/s) is called every `log_every` steps.
    save(state) gets the training state every `checkpoint_every` steps (null: never before the end), after the last
    step, and when stop() is true after a step, which then raises Interrupted. `resume`, a state saved so, continues
    from its step. A non-finite loss raises FloatingPointError naming its step, before any state holding it is saved.
    """
    if steps < 1 or batch_size < 1 or log_every < 1:
        raise ConfigError(f"train: steps, batch_size and log_every must be >= 1, "
                          f"got {steps}, {batch_size}, {log_every}")
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ConfigError(f"train.checkpoint_every: must be >= 1 or null, got {checkpoint_every}")
    if ema_decay is not None and not 0 < ema_decay < 1:
        raise ConfigError(f"train.ema_decay: must be in (0, 1) or null, got {ema_decay}")
    if grad_clip is not None and not grad_clip > 0:
        raise ConfigError(f"train.grad_clip: must be a positive max norm or null, got {grad_clip}")
    if len(data) < 1:
        raise ConfigError("train.n_data: the training set is empty")
    try:
        optimizer = optimizer(model.parameters())
        scheduler = scheduler(optimizer) if scheduler is not None else None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.optimizer / train.scheduler: {e}") from e
    ema = EMA(model, ema_decay) if ema_decay else None
    losses = torch.empty(steps, device=data.device)

    def state(step: int) -> dict[str, Any]:
        if ema is not None:
            ema.copy_buffers()
        out = {"model": (ema.module if ema is not None else model).state_dict(), "optimizer": optimizer.state_dict(),
               "step": step, "losses": losses[:step].cpu(), "rng": _rng_state(generator)}
        if ema is not None:
            out.update(online_model=model.state_dict(), ema_updates=ema.updates)
        if scheduler is not None:
            out["scheduler"] = scheduler.state_dict()
        return out

    first = 0
    if resume is not None:
        first = int(resume["step"])
        model.load_state_dict(resume["online_model" if ema is not None else "model"])
        if ema is not None:
            ema.module.load_state_dict(resume["model"])
            ema.updates = int(resume["ema_updates"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        _set_rng_state(resume["rng"], generator)
        losses[:first] = resume["losses"].to(data.device)
        log.info("resuming training at step %d/%d", first, steps)

    on_cpu = host_reads_are_cheap(data.device)
    n = data.shape[0]
    model.train()
    start = last_time = time.perf_counter()
    last_step = first - first % log_every  # the first report averages the same steps as without a stop
    checked = first  # on CUDA: losses[:checked] are known to be finite
    for step in range(first, steps):
        idx = torch.randint(n, (batch_size,), generator=generator, device=data.device)
        y = None if labels is None else model.drop_labels(labels[idx], generator)
        loss_fn.set_step(step)
        loss = loss_fn(model, data[idx], generator, y)
        if on_cpu and not math.isfinite(loss.item()):  # a host read costs ~0.2 us on CPU: check before the update
            raise diverged(loss.item(), step + 1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update()
        losses[step] = loss.detach()
        done = step + 1
        stopping = stop is not None and done < steps and stop()
        saving = save is not None and (done == steps or stopping or bool(checkpoint_every and
                                                                          done % checkpoint_every == 0))
        if not on_cpu and (done % CUDA_CHECK_EVERY == 0 or saving or done % log_every == 0 or done == steps):
            window = losses[checked:done]
            if not bool(torch.isfinite(window).all()):
                bad = checked + int((~torch.isfinite(window)).nonzero()[0])
                raise diverged(float(losses[bad]), bad + 1)
            checked = done
        if done % log_every == 0 or done == steps:
            mean = float(losses[last_step:done].mean())
            now = time.perf_counter()
            rate = (done - max(last_step, first)) / (now - last_time)
            log.info("step %d/%d  loss %.4f  %.0f steps/s", done, steps, mean, rate)
            if on_progress is not None:
                on_progress(done, mean, rate)
            last_step, last_time = done, now
        if saving:
            save(state(done))
        if stopping:
            raise Interrupted(f"training stopped after step {done}/{steps}", step=done)
    seconds = time.perf_counter() - start
    if first == steps and save is not None:  # resumed from a finished run: its state, saved here too
        save(state(steps))
    if ema is not None:
        ema.copy_buffers()
    trained = ema.module if ema is not None else model
    trained.eval()
    return TrainResult(trained, losses.cpu().numpy(), optimizer, seconds, steps - first)
