"""Score models: every model exposes score(x, t[, y]) ~ grad_x log p_t(x [| y])."""

from diffusion_runner.models.base import ScoreModel
from diffusion_runner.models.oracle import Oracle
from diffusion_runner.models.precond import Preconditioned

__all__ = ["Oracle", "Preconditioned", "ScoreModel"]
