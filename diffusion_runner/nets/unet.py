"""A small U-Net for images (channels, height, width), with the features (time, label) in every residual block."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from diffusion_runner.errors import ConfigError
from diffusion_runner.nets.common import positive_int


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 8 groups where the channels allow it, else one group (a layer norm over C, H, W)."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)


class ResBlock(nn.Module):
    """h -> h' = skip(h) + conv(act(norm(conv(act(norm(h)))) * (1 + scale) + shift)), (scale, shift) a linear map
    of the features (FiLM); the second conv starts at zero, so a new block is the identity (up to skip)."""

    def __init__(self, c_in: int, c_out: int, features: int):
        super().__init__()
        self.norm1, self.conv1 = _norm(c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.film = nn.Linear(features, 2 * c_out)
        self.norm2, self.conv2 = _norm(c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, h: Tensor, features: Tensor) -> Tensor:
        out = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.film(features)[:, :, None, None].chunk(2, dim=1)
        out = self.conv2(F.silu(self.norm2(out) * (1 + scale) + shift))
        return self.skip(h) + out


class UNet(nn.Module):
    """(batch, C, H, W), (batch, features) -> (batch, C, H, W) (or `out_shape`, e.g. (2C, H, W) for a learned
    variance).

    Level i has `channels` x channel_mults[i] channels and `blocks` residual blocks; each level after the first
    halves H and W (a stride-2 conv), so H and W must be divisible by 2^(levels - 1). The way up mirrors it
    (nearest-neighbour upsampling and a conv), each block taking a way-down activation concatenated: the skip
    connections from the stem, each block and each downsampling. The features pass through an MLP (SiLU) first,
    shared by every block.
    """

    def __init__(self, shape: tuple[int, ...], features: int, channels: int = 16, channel_mults=(1, 2, 2),
                 blocks: int = 1, out_shape: tuple[int, ...] | None = None):
        super().__init__()
        shape = tuple(shape)
        if len(shape) != 3:
            raise ConfigError(f"model.backbone: the U-Net takes images (channels, height, width); this dataset's "
                              f"samples have shape {shape} (use an MLP, ResMLP or Transformer for points)")
        channels, blocks = positive_int(channels, "channels"), positive_int(blocks, "blocks")
        mults = [positive_int(m, "channel_mults") for m in channel_mults]
        if not mults:
            raise ConfigError("model.backbone.channel_mults: needs at least one level")
        c, height, width = shape
        factor = 2 ** (len(mults) - 1)
        if height % factor or width % factor:
            raise ConfigError(f"model.backbone.channel_mults: {len(mults)} levels halve the image {len(mults) - 1} "
                              f"times, so height and width must be divisible by {factor}; got {height} x {width} "
                              f"(use fewer levels)")
        self.out_shape = tuple(out_shape or shape)
        hidden = 4 * channels
        self.features = nn.Sequential(nn.Linear(features, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.stem = nn.Conv2d(c, channels * mults[0], 3, padding=1)
        widths = [channels * m for m in mults]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        now, skips = widths[0], [widths[0]]
        for i, w in enumerate(widths):
            if i:
                self.downsample.append(nn.Conv2d(now, now, 3, stride=2, padding=1))
                skips.append(now)
            level = nn.ModuleList()
            for _ in range(blocks):
                level.append(ResBlock(now, w, hidden))
                now = w
                skips.append(now)
            self.down.append(level)
        self.middle = nn.ModuleList([ResBlock(now, now, hidden), ResBlock(now, now, hidden)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, w in reversed(list(enumerate(widths))):
            level = nn.ModuleList()
            for _ in range(blocks + 1):
                level.append(ResBlock(now + skips.pop(), w, hidden))
                now = w
            self.up.append(level)
            if i:
                self.upsample.append(nn.Conv2d(now, now, 3, padding=1))
        self.out = nn.Sequential(_norm(now), nn.SiLU(), nn.Conv2d(now, self.out_shape[0], 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: Tensor, features: Tensor) -> Tensor:
        emb = self.features(features)
        h = self.stem(x)
        saved = [h]
        for i, level in enumerate(self.down):
            if i:
                h = self.downsample[i - 1](h)
                saved.append(h)
            for block in level:
                h = block(h, emb)
                saved.append(h)
        for block in self.middle:
            h = block(h, emb)
        for i, level in enumerate(self.up):
            for block in level:
                h = block(torch.cat([h, saved.pop()], dim=1), emb)  # the skip connection
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out(h).view(-1, *self.out_shape)

