"""The exact score of a Gaussian-mixture dataset under the chosen SDE (no training)."""

from __future__ import annotations

from torch import Tensor

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.sdes import SDE


class Oracle(ScoreModel):
    """grad_x log p_t(x) in closed form: the benchmark of sampling with the true score. Given labels y, the score of
    each point's own component, grad_x log p_t(x | y): the true conditional score."""

    conditional = True
    is_oracle = True

    def __init__(self, sde: SDE, dataset: Dataset):
        super().__init__(sde)
        if not dataset.has_density:
            raise ConfigError(
                f"model=oracle needs a dataset with a closed-form score (a Gaussian mixture such as gmm8); "
                f"{type(dataset).__name__} has none"
            )
        self.dataset = dataset

    def score(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        m, s = self.sde.marginal(t)
        return self.dataset.score(x, m, s) if y is None else self.dataset.component_score(x, m, s, y)
