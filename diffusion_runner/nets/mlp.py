"""A multilayer perceptron on the input and the features side by side."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from diffusion_runner.nets.common import make_activation, positive_int, size


class MLP(nn.Module):
    """[x, features] -> `depth` hidden layers of `width` units -> x's shape (or `out_shape`)."""

    def __init__(self, shape: tuple[int, ...], features: int, width: int = 128, depth: int = 3,
                 activation: str = "silu", out_shape: tuple[int, ...] | None = None):
        super().__init__()
        width, depth = positive_int(width, "width"), positive_int(depth, "depth")
        self.shape = tuple(out_shape or shape)
        layers, n_in = [], size(shape) + features
        for _ in range(depth):
            layers += [nn.Linear(n_in, width), make_activation(activation)]
            n_in = width
        layers.append(nn.Linear(n_in, size(self.shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, features: Tensor) -> Tensor:
        return self.net(torch.cat([x.flatten(1), features], dim=-1)).view(-1, *self.shape)

