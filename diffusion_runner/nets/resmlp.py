"""A residual MLP: the writeup's "residual connections, batch norm"."""

from __future__ import annotations

from torch import Tensor, nn

from diffusion_runner.errors import ConfigError
from diffusion_runner.nets.common import make_activation, positive_int, size

NORMS = {"none": lambda width: nn.Identity(), "layer": nn.LayerNorm, "batch": nn.BatchNorm1d}


class ResidualBlock(nn.Module):
    """h <- h + W_2 act(W_1 act(norm(h)) + W_f features): pre-norm, the features added inside each block."""

    def __init__(self, width: int, features: int, norm: str, activation: str):
        super().__init__()
        self.norm, self.act = NORMS[norm](width), make_activation(activation)
        self.fc1, self.film, self.fc2 = nn.Linear(width, width), nn.Linear(features, width), nn.Linear(width, width)

    def forward(self, h: Tensor, features: Tensor) -> Tensor:
        return h + self.fc2(self.act(self.fc1(self.act(self.norm(h))) + self.film(features)))


class ResMLP(nn.Module):
    """x -> Linear -> `blocks` residual blocks of `width` units -> act -> Linear -> x's shape (or `out_shape`).

    `norm`: none | layer | batch, inside each block only. Batch norm normalises over the batch in training and with
    running statistics in evaluation; it couples the points of a training batch, so ISM/SSM's divergence then has a
    1/batch cross-term. No norm stands before the output layer: a layer norm there bounds the output whatever the
    input's scale, while the noise a point far out in the prior's tail needs grows with its distance, and such a
    point was left stranded (docs/RESULTS.md, backbones and losses).
    """

    def __init__(self, shape: tuple[int, ...], features: int, width: int = 64, blocks: int = 3,
                 norm: str = "layer", activation: str = "silu", out_shape: tuple[int, ...] | None = None):
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"model.backbone.norm: '{norm}' is not one of {list(NORMS)}")
        width, blocks = positive_int(width, "width"), positive_int(blocks, "blocks")
        self.shape = tuple(out_shape or shape)
        self.inp = nn.Linear(size(shape), width)
        self.blocks = nn.ModuleList(ResidualBlock(width, features, norm, activation) for _ in range(blocks))
        self.out = nn.Sequential(make_activation(activation), nn.Linear(width, size(self.shape)))

    def forward(self, x: Tensor, features: Tensor) -> Tensor:
        h = self.inp(x.flatten(1))
        for block in self.blocks:
            h = block(h, features)
        return self.out(h).view(-1, *self.shape)
