"""The preconditioning wrapper: what turns a plain backbone network into a score model.

In EDM's variables (Karras et al. 2022) a point x_t = m x_0 + s z is y = x_t / m = x_0 + sigma z with the noise
level sigma = s / m. The wrapper feeds the backbone c_in x_t, where c_in = 1 / sqrt(m^2 sigma_data^2 + s^2) keeps the
input at unit scale for every SDE and t, and the time features emb(1000 t / T) (sinusoidal); a conditional model
appends a learned embedding of the label. The backbone's output F is read by the `parameterization`:

    eps    F ~ z                    score = -F / s
    x0     F ~ x_0                  score = (m F - x_t) / s^2                     (Tweedie)
    score  F ~ grad log p_t         score = F
    v      F ~ (c_skip y - x_0) / c_out, x0_hat = c_skip y - c_out F, c_skip = sigma_d^2 / (sigma^2 + sigma_d^2),
           c_out = sigma sigma_d / sqrt(sigma^2 + sigma_d^2): EDM's F-target; for VP with sigma_d = 1 it is the
           v-prediction target v = m z - s x_0 of Salimans & Ho (2022).

sigma_d (sigma_data) is the dataset's scalar standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.nets.embedding import SinusoidalEmbedding
from diffusion_runner.score.model import ScoreModel
from diffusion_runner.score.sdes import SDE
from diffusion_runner.shapes import append_dims


def _eps(out: Tensor, x: Tensor, m: Tensor, s: Tensor, sigma_data: float) -> Tensor:
    return -out / s


def _x0(out: Tensor, x: Tensor, m: Tensor, s: Tensor, sigma_data: float) -> Tensor:
    return (m * out - x) / s**2


def _score(out: Tensor, x: Tensor, m: Tensor, s: Tensor, sigma_data: float) -> Tensor:
    return out


def _v(out: Tensor, x: Tensor, m: Tensor, s: Tensor, sigma_data: float) -> Tensor:
    sigma2, d2 = (s / m) ** 2, sigma_data**2
    x0 = d2 / (sigma2 + d2) * x / m - torch.sqrt(sigma2 * d2 / (sigma2 + d2)) * out
    return (m * x0 - x) / s**2


PARAMETERIZATIONS = {"eps": _eps, "x0": _x0, "score": _score, "v": _v}


class Preconditioned(ScoreModel):
    """score(x, t[, y]) from backbone(c_in x, features): see the module docstring for c_in and the parameterisations.

    `backbone(shape, features)` builds the network (a partial from the config) for samples of `shape` and a
    feature vector of `features` entries; it maps (batch, *shape), (batch, features) -> (batch, *shape).
    `conditional`: also take the dataset's component labels, embedded in `label_embed_dim` entries appended to the
    time features; each training label is replaced by the "no label" embedding with probability `label_dropout`,
    so one network gives both the conditional and the unconditional score (classifier-free guidance).
    """

    def __init__(self, sde: SDE, dataset: Dataset, backbone: Callable[..., nn.Module], parameterization: str = "eps",
                 time_embed_dim: int = 64, conditional: bool = False, label_dropout: float = 0.1,
                 label_embed_dim: int = 16):
        super().__init__(sde)
        if parameterization not in PARAMETERIZATIONS:
            raise ConfigError(f"model.parameterization: '{parameterization}' is not one of {sorted(PARAMETERIZATIONS)}")
        if not isinstance(conditional, bool):
            raise ConfigError(f"model.conditional: must be true or false, got {conditional!r}")
        self.parameterization, self.sigma_data = parameterization, dataset.std
        self.embed = SinusoidalEmbedding(time_embed_dim)
        features = time_embed_dim
        self.conditional = conditional
        if conditional:
            if dataset.n_classes < 1:
                raise ConfigError(f"model.conditional: {type(dataset).__name__} has no labels to condition on "
                                  f"(a Gaussian mixture such as gmm8 has one per component)")
            if isinstance(label_dropout, bool) or not isinstance(label_dropout, int | float) \
                    or not 0 <= label_dropout < 1:
                raise ConfigError(f"model.label_dropout: must be a number in [0, 1), got {label_dropout!r}")
            if isinstance(label_embed_dim, bool) or not isinstance(label_embed_dim, int) or label_embed_dim < 1:
                raise ConfigError(f"model.label_embed_dim: must be an integer >= 1, got {label_embed_dim!r}")
            self.null_label, self.label_dropout = dataset.n_classes, float(label_dropout)
            self.has_unconditional = self.label_dropout > 0
            self.label_embed = nn.Embedding(dataset.n_classes + 1, label_embed_dim)  # the last row: "no label"
            features += label_embed_dim
        self.backbone = backbone(shape=dataset.shape, features=features)

    def score(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        m, s = (append_dims(c, x.ndim) for c in self.sde.marginal(t))
        c_in = torch.rsqrt(m**2 * self.sigma_data**2 + s**2)
        features = self.embed(1000.0 * t / self.sde.T)
        if self.conditional:
            if y is None:
                y = torch.full(t.shape, self.null_label, dtype=torch.long, device=t.device)
            elif y.numel() == 1:
                y = y.reshape(1).expand(len(t))
            features = torch.cat([features, self.label_embed(y)], dim=-1)
        elif y is not None:
            raise ValueError("this model is not conditional: it takes no labels")
        out = self.backbone(c_in * x, features)
        return PARAMETERIZATIONS[self.parameterization](out, x, m, s, self.sigma_data)

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """y with each label replaced by "no label" with probability label_dropout."""
        if not self.conditional or not self.label_dropout:
            return y
        drop = torch.rand(y.shape, generator=generator, device=y.device) < self.label_dropout
        return torch.where(drop, self.null_label, y)
