"""The training loop: minibatches of a fixed training set held on the device, for any family's objective.

The hot path is index -> loss -> backward -> (clip) -> step -> (EMA) with no DataLoader and no per-step Python
bookkeeping beyond storing the loss tensor and checking it is finite: on CPU every step, before the update (a host
read of the scalar costs ~0.2 us there); on CUDA, where a per-step read would stall the device, every
CUDA_CHECK_EVERY steps and before any callback runs. Everything else (progress, checkpoints) is a callback
(diffusion_runner.callbacks), called only on the steps it asks for.

A checkpoint holds Loop.state() (weights, EMA and its update count, optimiser, scheduler, every random stream, step,
loss history); training given that state as `resume` continues to the same weights, bit for bit on CPU, as if it
had never stopped.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from diffusion_runner.callbacks import Callback, Context
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


@dataclass(frozen=True)
class TrainOptions:
    """How to train: `steps` optimiser steps on batches of `batch_size`; the partials optimizer(params) and
    scheduler(optimizer) (stepped once a step; None: a constant learning rate); the max gradient norm `grad_clip`
    (None: no clipping); the EMA decay of the weights sampled with (None: the raw weights)."""

    steps: int
    batch_size: int
    optimizer: Callable
    scheduler: Callable | None = None
    grad_clip: float | None = None
    ema_decay: float | None = None

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"train: steps and batch_size must be >= 1, got {self.steps}, {self.batch_size}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ConfigError(f"train.ema_decay: must be in (0, 1) or null, got {self.ema_decay}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"train.grad_clip: must be a positive max norm or null, got {self.grad_clip}")


@dataclass
class Loop:
    """What the callbacks see: `step` steps done of `steps` (`first` of them before this run of the loop), the loss
    of every step so far in `losses[:step]`, the online `model`, its `ema` (or None), the optimiser and scheduler,
    the `context` the job lends the callbacks (diffusion_runner.callbacks.Context) and the callbacks themselves,
    whose state_dict()s the training state keeps."""

    model: Model
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    losses: torch.Tensor
    steps: int
    first: int
    step: int
    context: Context
    generator: torch.Generator | None
    callbacks: Sequence[Callback] = ()

    def state(self) -> dict[str, Any]:
        """The whole training state after `step` steps: weights (the EMA's as `model`), EMA update count, optimiser,
        scheduler, every random stream, the step and the losses; train(resume=...) continues from it."""
        if self.ema is not None:
            self.ema.copy_buffers()
        out = {"model": (self.ema.module if self.ema is not None else self.model).state_dict(),
               "optimizer": self.optimizer.state_dict(), "step": self.step, "losses": self.losses[:self.step].cpu(),
               "rng": _rng_state(self.generator)}
        if self.ema is not None:
            out.update(online_model=self.model.state_dict(), ema_updates=self.ema.updates)
        if self.scheduler is not None:
            out["scheduler"] = self.scheduler.state_dict()
        kept = {type(c).__name__: state for c in self.callbacks if (state := c.state_dict()) is not None}
        if kept:
            out["callbacks"] = kept
        return out


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


def _check_finite(losses: torch.Tensor, checked: int, done: int) -> None:
    """Raise FloatingPointError naming the first step in losses[checked:done] whose loss is not finite."""
    window = losses[checked:done]
    if not bool(torch.isfinite(window).all()):
        bad = checked + int((~torch.isfinite(window)).nonzero()[0])
        raise diverged(float(losses[bad]), bad + 1)


def train(model: Model, loss_fn: Loss, data: torch.Tensor, options: TrainOptions, *,
          labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
          callbacks: Sequence[Callback] = (), context: Context | None = None, resume: dict[str, Any] | None = None,
          stop: Callable[[], bool] | None = None) -> TrainResult:
    """Run options.steps optimiser steps on batches drawn uniformly with replacement from `data` (with their
    `labels` for a conditional model, passed through model.drop_labels), calling the `callbacks` (progress,
    checkpoints, ...) with `context`. When stop() is true after a step, the callbacks' on_stop runs (a Checkpoint saves)
    and Interrupted is raised. `resume`, a state from Loop.state(), continues from its step. A non-finite loss
    raises FloatingPointError naming its step, before any callback sees a state holding it."""
    if len(data) < 1:
        raise ConfigError("train.n_data: the training set is empty")
    try:
        optimizer = options.optimizer(model.parameters())
        scheduler = options.scheduler(optimizer) if options.scheduler is not None else None
    except (TypeError, ValueError) as e:
        raise ConfigError(f"train.optimizer / train.scheduler: {e}") from e
    steps, batch_size, grad_clip = options.steps, options.batch_size, options.grad_clip
    ema = EMA(model, options.ema_decay) if options.ema_decay else None
    loop = Loop(model, ema, optimizer, scheduler, torch.empty(steps, device=data.device), steps, 0, 0,
                context or Context(), generator, callbacks)
    if resume is not None:
        loop.first = loop.step = int(resume["step"])
        model.load_state_dict(resume["online_model" if ema is not None else "model"])
        if ema is not None:
            ema.module.load_state_dict(resume["model"])
            ema.updates = int(resume["ema_updates"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(resume["scheduler"])
        _set_rng_state(resume["rng"], generator)
        loop.losses[:loop.first] = resume["losses"].to(data.device)
        for callback in callbacks:
            if type(callback).__name__ in resume.get("callbacks", {}):
                callback.load_state_dict(resume["callbacks"][type(callback).__name__])
        log.info("resuming training at step %d/%d", loop.first, steps)

    on_cpu = host_reads_are_cheap(data.device)
    n, losses, first = data.shape[0], loop.losses, loop.first
    model.train()
    try:
        for callback in callbacks:
            callback.on_start(loop)
        periodic = [c for c in callbacks if c.every]
        checked = first  # on CUDA: losses[:checked] are known to be finite
        start = time.perf_counter()
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
            done = loop.step = step + 1
            stopping = stop is not None and done < steps and stop()
            due = [c for c in periodic if done % c.every == 0 or done == steps]
            if not on_cpu and (due or stopping or done % CUDA_CHECK_EVERY == 0):
                _check_finite(losses, checked, done)
                checked = done
            for callback in due:
                callback.on_step(loop)
            if stopping:
                for callback in callbacks:
                    callback.on_stop(loop)
                raise Interrupted(f"training stopped after step {done}/{steps}", step=done)
        seconds = time.perf_counter() - start
        if not on_cpu:
            _check_finite(losses, checked, steps)
        for callback in callbacks:
            callback.on_end(loop)
    finally:
        for callback in callbacks:
            callback.on_close(loop)
    if ema is not None:
        ema.copy_buffers()
    trained = ema.module if ema is not None else model
    trained.eval()
    return TrainResult(trained, losses.cpu().numpy(), optimizer, seconds, steps - first)
