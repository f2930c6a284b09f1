"""The family seam: what every kind of generative model gives the family-blind job.

A family (the config's `family` node, one subpackage such as diffusion_runner.score) owns what only it knows: the
config sections it reads, how they build its model and sampler, its training objective, its prior, and (through its
likelihood metric) its log-likelihood, exact or a bound. The job flows config -> Family.build -> fit (the family's
Loss) -> sample (the family's Sampler) -> evaluate, and the pipeline, checkpoints, resume, metrics, plots and the
sweep report only ever see a Family, a Model, a Loss and a Sampler (diffusion_runner.sampling).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

if TYPE_CHECKING:
    from diffusion_runner.data import Dataset
    from diffusion_runner.sampling import Sampler


class Model(nn.Module):
    """A family's trainable (or exact) model. A `conditional` model also takes the dataset's class labels y."""

    conditional: bool = False
    is_oracle: bool = False  # the exact model, no training: the reference row of a sweep report
    has_unconditional: bool = True  # whether the model without a label is meaningful (classifier-free guidance)

    def drop_labels(self, y: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The labels a training batch shows the model (a model trained for guidance hides some)."""
        return y

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


class Loss(ABC):
    """A training objective, what the training loop depends on: loss(model, x0, generator, y) is the scalar to
    minimise on the batch x0 (shape (batch, ...)) with labels y (batch,) for a conditional model (else None),
    drawing its randomness from `generator`. `step` is the number of optimiser steps taken before this batch
    (for objectives that change over training, such as an annealed temperature)."""

    @abstractmethod
    def __call__(self, model: Model, x0: Tensor, generator: torch.Generator | None = None,
                 y: Tensor | None = None) -> Tensor:
        """The objective on one batch, a 0-dim tensor with a gradient."""

    def set_step(self, step: int) -> None:  # noqa: B027  (optional: most objectives ignore it)
        """Called by the training loop before every step with the steps already taken."""


class Family(ABC):
    """One kind of generative model, configured by the top-level sections it names:

    - `model_sections`: what its weights mean depends on (a checkpoint fits a job only if these agree);
    - `training_sections`: what else training reads (with the shared train and seed): a sweep reuses a checkpoint
      for jobs that agree on all of these;
    - `sampling_sections`: what only sampling reads;
    - `types`: the base class a section's `_target_` must derive from (a config error names the section else).

    Every other top-level key is shared by all families (dataset, train, eval, logger, seed, ...).
    """

    model_sections: ClassVar[tuple[str, ...]] = ("model",)
    training_sections: ClassVar[tuple[str, ...]] = ("loss",)
    sampling_sections: ClassVar[tuple[str, ...]] = ("sampler",)
    types: ClassVar[dict[str, type]] = {}
    transports: ClassVar[bool] = False  # starts from any `source` dataset (else only from its own Gaussian prior)

    @classmethod
    def sections(cls) -> tuple[str, ...]:
        return (*cls.model_sections, *cls.training_sections, *cls.sampling_sections)

    @abstractmethod
    def build(self, cfg: DictConfig, dataset: Dataset, source: Dataset) -> tuple[Model, Sampler]:
        """The model (freshly initialised from torch's global seed) and the sampler, from the family's sections of
        the job's config, for samples of `dataset` drawn from `source` (the default Gaussian unless the family
        `transports`); a mistake is a ConfigError naming its key."""

    @abstractmethod
    def objective(self, cfg: DictConfig, model: Model) -> Loss:
        """The training objective (built only to train: a job restored from a checkpoint never builds it)."""

    def figures(self, model: Model, dataset: Dataset, rng: np.random.Generator, out_dir: Path) -> list[str]:
        """Figures only this family can draw, written as out_dir/<name>.png (after the shared ones); their names."""
        return []
