"""Classifier-free guidance (Ho & Salimans 2022) for score models."""

from __future__ import annotations

from torch import Tensor

from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.sdes import ScoreFn


def guided_score(model: ScoreModel, y: Tensor | None, weight: float) -> ScoreFn:
    """s_w(x, t) = (1 + w) s(x, t, y) - w s(x, t): the conditional score for w = 0, sharper towards y for w > 0.
    y holds one label per point, or a single label for every point; None gives the unconditional score."""
    if y is None:
        return model.score

    def score(x: Tensor, t: Tensor) -> Tensor:
        labels = y.expand(len(x)) if y.numel() == 1 else y
        conditional = model.score(x, t, labels)
        return conditional if not weight else (1 + weight) * conditional - weight * model.score(x, t)

    return score
