"""Score models: every model exposes score(x, t) ~ grad_x log p_t(x)."""

from diffusion_runner.models.base import ScoreModel
from diffusion_runner.models.mlp import MLP
from diffusion_runner.models.oracle import Oracle

__all__ = ["MLP", "Oracle", "ScoreModel"]
