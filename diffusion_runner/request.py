"""What a job asks its sampler for: the labels of a conditional model, and the weight of classifier-free guidance
(Ho & Salimans 2022), for every family."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diffusion_runner.data import Dataset
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Model


@dataclass(frozen=True)
class Request:
    """What to sample: `labels` (None: unconditional) in equal shares, with guidance weight `guidance` >= 0."""

    labels: tuple[int, ...] | None = None
    guidance: float = 0.0

    @classmethod
    def parse(cls, label, guidance) -> Request:
        """From sampler.label (null, an integer or a list of integers) and sampler.guidance (a number >= 0)."""
        if isinstance(guidance, bool) or not isinstance(guidance, int | float) or not (
                math.isfinite(guidance) and guidance >= 0):
            raise ConfigError(f"sampler.guidance: must be a finite number >= 0, got {guidance!r}")
        if label is None:
            if guidance:
                raise ConfigError("sampler.guidance: guides towards sampler.label, which is null")
            return cls()
        labels = list(label) if isinstance(label, list | tuple) or hasattr(label, "__iter__") else [label]
        if not labels or any(isinstance(y, bool) or not isinstance(y, int) or y < 0 for y in labels):
            raise ConfigError(f"sampler.label: must be null, a label >= 0 or a non-empty list of them, got {label!r}")
        return cls(tuple(labels), float(guidance))

    def check(self, model: Model, dataset: Dataset) -> None:
        if (self.labels is None or self.guidance) and not model.has_unconditional:
            key = "sampler.guidance" if self.labels is not None else "sampler.label"
            raise ConfigError(f"{key}: needs the unconditional score, which a model trained with "
                              f"model.label_dropout=0 never learned")
        if self.labels is None:
            return
        if not model.conditional:
            raise ConfigError(f"sampler.label: model {type(model).__name__} is not conditional "
                              f"(train one with model.conditional=true)")
        if max(self.labels) >= dataset.n_classes:
            raise ConfigError(f"sampler.label: {type(dataset).__name__} has labels 0 .. {dataset.n_classes - 1}, "
                              f"got {list(self.labels)}")

    def per_sample(self, n: int) -> np.ndarray | None:
        """The label of each of n samples: the requested labels in turn; None when unconditional."""
        return None if self.labels is None else np.resize(np.asarray(self.labels, dtype=np.int64), n)

    def target(self, dataset: Dataset) -> Dataset:
        """The distribution the samples should follow: the requested components, or the whole dataset."""
        return dataset if self.labels is None else dataset.condition(self.labels)
