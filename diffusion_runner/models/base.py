"""The score-model interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from diffusion_runner.sdes import SDE


class ScoreModel(nn.Module, ABC):
    """s(x, t[, y]) ~ grad_x log p_t(x [| y]) for the forward SDE it was built with.

    A `conditional` model also takes class labels y (batch,) of the dataset's components; y = None asks for the
    unconditional score.
    """

    conditional: bool = False
    is_oracle: bool = False  # the exact score, no training: the reference row of a sweep report
    has_unconditional: bool = True  # whether score(x, t, None) is meaningful (a conditional model may not learn it)

    def __init__(self, sde: SDE):
        super().__init__()
        self.sde = sde

    @abstractmethod
    def score(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Score at x (batch, ...), times t (batch,) and labels y (batch,) or None, in units of 1/x."""

    def drop_labels(self, y: Tensor, generator=None) -> Tensor:
        """The labels a training batch shows the model (a model trained for guidance hides some)."""
        return y

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())
