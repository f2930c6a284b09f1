"""The score family: SDEs, score-matching losses and their weightings, score models (preconditioned backbones and
the exact oracle), samplers on time grids, classifier-free guidance and the probability-flow ODE likelihood."""

from diffusion_runner.score.family import Score
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.oracle import Oracle
from diffusion_runner.score.precond import Preconditioned

__all__ = ["Oracle", "Preconditioned", "Score", "ScoreModel"]
