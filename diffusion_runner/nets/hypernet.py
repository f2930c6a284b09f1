"""The writeup's future work: a network whose layer weights are generated from the time features."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from diffusion_runner.nets.common import make_activation, positive_int, size


class HyperNet(nn.Module):
    """A target MLP x -> `depth` hidden layers of `width` units -> x's shape whose every weight matrix and bias is
    generated per point from the features (Ha et al. 2017): h = act(Linear(features)) with `hyper_width` units,
    then [W_l, b_l] = Linear_l(h) / sqrt(fan_in_l), so the generated layers start at the usual 1/sqrt(fan_in)
    scale. The target network sees only x; time (and label) enter through its weights."""

    def __init__(self, shape: tuple[int, ...], features: int, width: int = 32, depth: int = 2, hyper_width: int = 32,
                 activation: str = "silu"):
        super().__init__()
        width, depth = positive_int(width, "width"), positive_int(depth, "depth")
        hyper_width = positive_int(hyper_width, "hyper_width")
        self.shape = tuple(shape)
        self.dims = [size(shape)] + [width] * depth + [size(shape)]
        self.trunk = nn.Sequential(nn.Linear(features, hyper_width), make_activation(activation))
        self.heads = nn.ModuleList(nn.Linear(hyper_width, n_out * (n_in + 1))
                                   for n_in, n_out in zip(self.dims[:-1], self.dims[1:], strict=True))
        self.act = make_activation(activation)

    def forward(self, x: Tensor, features: Tensor) -> Tensor:
        h, out = self.trunk(features), x.flatten(1)
        for i, head in enumerate(self.heads):
            n_in, n_out = self.dims[i], self.dims[i + 1]
            wb = (head(h) / math.sqrt(n_in)).view(-1, n_out, n_in + 1)
            out = torch.baddbmm(wb[..., n_in:], wb[..., :n_in], out[..., None]).squeeze(-1)
            if i < len(self.heads) - 1:
                out = self.act(out)
        return out.view(-1, *self.shape)
