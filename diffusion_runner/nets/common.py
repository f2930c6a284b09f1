"""Checks and activations the backbones share."""

from __future__ import annotations

import math

from torch import nn

from diffusion_runner.errors import ConfigError

ACTIVATIONS = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ConfigError(f"model.backbone.activation: '{name}' is not one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.backbone.{key}: must be an integer >= 1, got {value!r}")
    return value


def size(shape: tuple[int, ...]) -> int:
    """Entries in one sample."""
    return math.prod(shape)
