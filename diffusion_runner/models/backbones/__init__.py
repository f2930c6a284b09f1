"""Backbones: plain networks (batch, *shape), (batch, features) -> (batch, *shape), wrapped by models.Preconditioned.

Each is built as backbone(shape=..., features=...) plus its own hyperparameters from the config."""

from diffusion_runner.models.backbones.hypernet import HyperNet
from diffusion_runner.models.backbones.mlp import MLP
from diffusion_runner.models.backbones.resmlp import ResMLP
from diffusion_runner.models.backbones.transformer import Transformer

__all__ = ["MLP", "HyperNet", "ResMLP", "Transformer"]
