"""Backbones every family shares: plain networks (batch, *shape), (batch, features) -> (batch, *shape), e.g. wrapped
by diffusion_runner.score.Preconditioned.

Each is built as backbone(shape=..., features=...) plus its own hyperparameters from the config; MLP, ResMLP and UNet
also take `out_shape`, for a network whose output is not the input's shape (a VAE's encoder and decoder)."""

from diffusion_runner.nets.hypernet import HyperNet
from diffusion_runner.nets.mlp import MLP
from diffusion_runner.nets.resmlp import ResMLP
from diffusion_runner.nets.transformer import Transformer
from diffusion_runner.nets.unet import UNet

__all__ = ["MLP", "HyperNet", "ResMLP", "Transformer", "UNet"]
