"""The writeup's transformer: one token per coordinate and one for the time features, a few attention layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from diffusion_runner.errors import ConfigError
from diffusion_runner.nets.common import positive_int, size


class Transformer(nn.Module):
    """Tokens: coordinate i -> x_i w + p_i (w, p_i learned, `dim` entries) and the features -> Linear; `layers`
    pre-norm encoder layers (`heads` heads, feed-forward `ff_mult` x dim, GELU); each coordinate's token -> Linear ->
    that coordinate of the output. No norm stands before the output layer, which would bound the output whatever
    the input's scale (see ResMLP).

    Attention runs on PyTorch's math kernel, the one with a second derivative (ISM/SSM differentiate the
    divergence of the output); for a handful of tokens it is also the fastest on CPU.
    """

    def __init__(self, shape: tuple[int, ...], features: int, dim: int = 32, heads: int = 4, layers: int = 3,
                 ff_mult: int = 4):
        super().__init__()
        dim, heads = positive_int(dim, "dim"), positive_int(heads, "heads")
        layers, ff_mult = positive_int(layers, "layers"), positive_int(ff_mult, "ff_mult")
        if dim % heads:
            raise ConfigError(f"model.backbone.dim: must be a multiple of model.backbone.heads, got {dim} and {heads}")
        self.shape = tuple(shape)
        self.value = nn.Linear(1, dim)
        self.position = nn.Parameter(torch.randn(size(shape), dim) * 0.02)
        self.time = nn.Linear(features, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, ff_mult * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: Tensor, features: Tensor) -> Tensor:
        tokens = torch.cat([self.time(features)[:, None], self.value(x.flatten(1)[..., None]) + self.position], dim=1)
        with sdpa_kernel(SDPBackend.MATH):
            tokens = self.encoder(tokens)
        return self.head(tokens[:, 1:]).view(-1, *self.shape)
