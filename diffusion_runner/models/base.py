"""The score-model interface and the conversions from what a network predicts to a score."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from diffusion_runner.sdes import SDE


class ScoreModel(nn.Module, ABC):
    """s(x, t) ~ grad_x log p_t(x) for the forward SDE it was built with."""

    def __init__(self, sde: SDE):
        super().__init__()
        self.sde = sde

    @abstractmethod
    def score(self, x: Tensor, t: Tensor) -> Tensor:
        """Score at x (batch, ...) and times t (batch,), in units of 1/x."""

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


def eps_to_score(out: Tensor, x: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """Noise prediction eps ~ z: score = -eps / s."""
    return -out / s


def x0_to_score(out: Tensor, x: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """Data prediction x0 ~ E[x_0 | x_t]: score = (m x0 - x) / s^2 (Tweedie)."""
    return (m * out - x) / s**2


def raw_score(out: Tensor, x: Tensor, m: Tensor, s: Tensor) -> Tensor:
    """The network output is the score itself."""
    return out


PARAMETERIZATIONS = {"eps": eps_to_score, "x0": x0_to_score, "score": raw_score}
