"""Training callbacks: what runs around the training loop's hot path, chosen in the config (`train.callbacks`).

A callback sees the loop (diffusion_runner.train.Loop: the step, the losses, the model, its EMA, the optimiser and
the whole training state) at the start, after every `every`-th step and the last one (`every` None: never between
the ends), when a stop request ends training early, at the end, and, whatever happened, when the loop closes. The
loop checks the losses so far are finite before it calls any callback, so none sees a state holding a non-finite
loss. `Context` is what the job around the loop lends them: its logger, how to save a training state, whether a
progress bar may draw.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from diffusion_runner import plots, progress
from diffusion_runner.atomic import write_text
from diffusion_runner.errors import ConfigError
from diffusion_runner.loggers import NoLogger

if TYPE_CHECKING:
    from diffusion_runner.train import Loop

log = logging.getLogger(__name__)


@dataclass
class Context:
    """What the job lends the callbacks: the experiment logger, `save(state)` writing a training state (a
    checkpoint) or None, `interactive`: whether progress bars may draw (a terminal, not a multirun worker),
    `evaluate(model)`: the learning curve's metrics of a model, and `out_dir`, the run
    directory (None: write no files)."""

    logger: Any = None
    save: Callable[[dict[str, Any]], None] | None = None
    interactive: bool = False
    evaluate: Callable[[Any], dict[str, float]] | None = None
    out_dir: Path | None = None

    def __post_init__(self):
        self.logger = self.logger or NoLogger()


def _every(every: int | None, key: str, allow_none: bool = True) -> int | None:
    if every is None and allow_none:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"{key}: must be an integer >= 1{' or null' if allow_none else ''}, got {every!r}")
    return every


class Callback:
    """The hooks, each a no-op here. `every`: steps between on_step calls (the last step always calls it)."""

    every: int | None = None

    def on_start(self, loop: Loop) -> None:
        """Before the first step of this run of the loop (loop.step is the step resumed from)."""

    def on_step(self, loop: Loop) -> None:
        """After step loop.step, every `every` steps and at the last."""

    def on_stop(self, loop: Loop) -> None:
        """A stop request ends training after step loop.step (then the loop raises Interrupted)."""

    def on_end(self, loop: Loop) -> None:
        """After the last step (also when resumed from a finished run, with no step taken)."""

    def on_close(self, loop: Loop) -> None:
        """Always last, also after an error: release what on_start took."""

    def state_dict(self) -> dict[str, Any] | None:
        """What the callback needs to continue after a resume, saved in the training state under its class name
        (None: nothing)."""
        return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state_dict() of a stopped run."""


class LogProgress(Callback):
    """Every `every` steps: a log line with the mean loss since the last one and the steps/s, and to the job's
    logger `train/loss`, `train/steps_per_s`, `train/lr` (the first parameter group's) and `train/grad_norm` (the
    2-norm of the last step's gradients over every parameter, before clipping is applied to the next)."""

    def __init__(self, every: int = 2000):
        self.every = _every(every, "train.callbacks.progress.every", allow_none=False)

    def on_start(self, loop):
        self._last_step = loop.step - loop.step % self.every  # the first report averages the same steps as unstopped
        self._last_time, self._first = time.perf_counter(), loop.step

    def on_step(self, loop):
        done, now = loop.step, time.perf_counter()
        mean = float(loop.losses[self._last_step:done].mean())
        rate = (done - max(self._last_step, self._first)) / (now - self._last_time)
        log.info("step %d/%d  loss %.4f  %.0f steps/s", done, loop.steps, mean, rate)
        grads = [p.grad for p in loop.model.parameters() if p.grad is not None]
        values = {"train/loss": mean, "train/steps_per_s": rate, "train/lr": loop.optimizer.param_groups[0]["lr"]}
        if grads:
            values["train/grad_norm"] = float(torch.nn.utils.get_total_norm(grads))
        loop.context.logger.log(values, step=done)
        self._last_step, self._last_time = done, now


class Checkpoint(Callback):
    """Hands the whole training state to the job's `save` every `every` steps (null: only at the end), after the
    last step, and when a stop request ends training, so that a job started again continues bit for bit."""

    def __init__(self, every: int | None = 5000):
        self.every = _every(every, "train.callbacks.checkpoint.every")
        self._saved = None

    def on_start(self, loop):
        self._saved = None

    def _save(self, loop):
        if loop.context.save is not None:
            loop.context.save(loop.state())
        self._saved = loop.step

    def on_step(self, loop):
        self._save(loop)

    def on_stop(self, loop):
        self._save(loop)

    def on_end(self, loop):
        if self._saved != loop.step:  # every = null, or resumed from a finished run with no step taken
            self._save(loop)


class ProgressBar(Callback):
    """A tqdm bar of the steps with the steps/s and the mean loss since its last update, updated every `every`
    steps, drawn only where the job is interactive (diffusion_runner.progress); elsewhere it does nothing."""

    def __init__(self, every: int = 25):
        self.every = _every(every, "train.callbacks.bar.every", allow_none=False)
        self._stack = self._shown = None

    def on_start(self, loop):
        self._stack = ExitStack()
        self._shown = self._stack.enter_context(progress.bar(loop.steps, "train", loop.context.interactive,
                                                             unit="step", initial=loop.step, leave=True))
        self._last = loop.step

    def on_step(self, loop):
        if self._shown is None:
            return
        loss = float(loop.losses[self._last:loop.step].mean())
        self._shown.set_postfix_str(f"loss {loss:.4f}", refresh=False)
        self._shown.update(loop.step - self._last)
        self._last = loop.step

    def on_close(self, loop):
        if self._stack is not None:
            self._stack.close()
            self._stack = self._shown = None


class LearningCurve(Callback):
    """Every `every` steps: the job's `evaluate` on the model sampled with (the EMA weights), a cheap evaluation
    on few samples (eval.curve_samples) by the metrics in eval.curve_metrics. Each point {step, seconds, metric:
    value, ...} (seconds: of training since the job began) is logged as eval/<metric> and rewritten to
    learning_curve.json; learning_curve.png plots each metric against step and against seconds. Its points are
    part of the training state, so a resumed run continues the same curve."""

    FILE = "learning_curve.json"

    def __init__(self, every: int):
        self.every = _every(every, "eval.every", allow_none=False)
        self.points: list[dict[str, float]] = []

    def on_start(self, loop):
        self._start = time.perf_counter() - (self.points[-1]["seconds"] if self.points else 0.0)

    def on_step(self, loop):
        if loop.context.evaluate is None or any(p["step"] == loop.step for p in self.points):
            return
        began = time.perf_counter()
        model = loop.ema.module if loop.ema is not None else loop.model
        values = loop.context.evaluate(model)
        self._start += time.perf_counter() - began  # the curve's seconds are training seconds
        self.points.append({"step": loop.step, "seconds": time.perf_counter() - self._start, **values})
        loop.context.logger.log({f"eval/{k}": v for k, v in values.items()}, step=loop.step)
        log.info("learning curve at step %d: %s", loop.step, ", ".join(f"{k} = {v:.4f}" for k, v in values.items()))
        if loop.context.out_dir is not None:
            write_text(loop.context.out_dir / self.FILE, json.dumps(self.points, indent=1) + "\n")

    def on_end(self, loop):
        if loop.context.out_dir is not None and self.points:
            plots.learning_curve(self.points, loop.context.out_dir / "learning_curve.png")

    def state_dict(self):
        return {"points": list(self.points)}

    def load_state_dict(self, state):
        self.points = list(state["points"])
