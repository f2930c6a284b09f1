"""The score-model interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from diffusion_runner.family import Model
from diffusion_runner.score.sdes import SDE


class ScoreModel(Model, ABC):
    """s(x, t[, y]) ~ grad_x log p_t(x [| y]) for the forward SDE it was built with.

    A `conditional` model also takes class labels y (batch,) of the dataset's components; y = None asks for the
    unconditional score.
    """

    def __init__(self, sde: SDE):
        super().__init__()
        self.sde = sde

    @abstractmethod
    def score(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Score at x (batch, ...), times t (batch,) and labels y (batch,) or None, in units of 1/x."""
