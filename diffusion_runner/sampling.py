"""What every family's sampler shares: one entry point, the result, and the trajectory callback.

generate(model, shape, labels, generator, device, callback) -> SampleResult draws a batch from a trained model;
callback({"i", "n", "t", "x"}) sees the starting state (i = 0) and the state after each of the n updates, so the
trajectory plot is made by one (Snapshots), never by code inside a sampler.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Model
from diffusion_runner.request import Request

Callback = Callable[[dict], None]


@dataclass
class SampleResult:
    x: Tensor  # the samples
    nfe: int  # network evaluations


def integer_option(value, key: str, minimum: int = 1) -> int:
    """An integer option >= minimum, else a ConfigError naming `key`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{key}: must be an integer >= {minimum}, got {value!r}")
    return value


class Sampler(ABC):
    """`label` and `guidance` say what to sample from a conditional model (diffusion_runner.request.Request)."""

    def __init__(self, label=None, guidance: float = 0.0):
        self.request = Request.parse(label, guidance)

    @abstractmethod
    def generate(self, model: Model, shape: tuple[int, ...], labels: Tensor | None,
                 generator: torch.Generator | None, device: torch.device | str,
                 callback: Callback | None = None) -> SampleResult:
        """A batch of `shape` (batch, ...) from the model in evaluation mode; `labels` (batch,) the label each sample
        is requested with (None: unconditional), guided by request.guidance."""


class Snapshots:
    """A callback keeping `count` states evenly spaced over the updates, the start and the result included."""

    def __init__(self, count: int, key: str = "eval.snapshots"):
        self.count = integer_option(count, key, minimum=2)
        self.states: list[tuple[float, Tensor]] = []

    def __call__(self, info: dict) -> None:
        n = info["n"]
        if info["i"] in {round(k * n / (self.count - 1)) for k in range(self.count)}:
            self.states.append((info["t"], info["x"].clone()))
