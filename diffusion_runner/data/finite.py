"""A dataset of finitely many rows: training rows the model is fit to, and held-out rows every metric compares
with (never trained on)."""

from __future__ import annotations

import copy
import logging
from functools import cached_property

import numpy as np

from diffusion_runner.data.base import Dataset
from diffusion_runner.errors import ConfigError

log = logging.getLogger(__name__)


class Finite(Dataset):
    """`train` (N, *shape) and `held_out` (M, *shape) float32 rows, with int64 labels for each if the rows have
    classes (`n_classes` > 0).

    sample(n) draws held-out rows: each once in a random order while n <= M, with replacement (a bootstrap) beyond.
    training_data(n) gives the training rows: all of them when n >= N, else n of them drawn without replacement.
    The rows may be stored in the model's units (e.g. standardised): `from_model` maps them back, so sample() and
    everything a metric sees is in the data's own units (see Dataset.to_model).
    """

    def __init__(self, train: np.ndarray, held_out: np.ndarray, train_labels: np.ndarray | None = None,
                 held_out_labels: np.ndarray | None = None, n_classes: int = 0):
        self.train, self.held_out = train, held_out
        self.train_labels, self.held_out_labels = train_labels, held_out_labels
        self.n_classes = n_classes
        self.dim = int(np.prod(train.shape[1:]))
        self.kind = "images" if train.ndim == 4 else "points"

    @property
    def shape(self):
        return tuple(self.train.shape[1:])

    def _held_out_rows(self, n: int, rng: np.random.Generator) -> np.ndarray:
        m = len(self.held_out)
        if n <= m:
            return rng.permutation(m)[:n]
        log.debug("%d reference draws from %d held-out rows: with replacement", n, m)
        return rng.integers(m, size=n)

    def sample(self, n, rng):
        return self.from_model(self.held_out[self._held_out_rows(n, rng)]).astype(np.float32)

    def sample_labeled(self, n, rng):
        if self.held_out_labels is None:
            return super().sample_labeled(n, rng)
        rows = self._held_out_rows(n, rng)
        return self.from_model(self.held_out[rows]).astype(np.float32), self.held_out_labels[rows]

    def training_data(self, n, rng, labeled=False):
        if labeled and self.train_labels is None:
            return super().training_data(n, rng, labeled)  # the one-line "has no labels"
        total = len(self.train)
        if n >= total:
            log.info("training on all %d training rows (train.n_data = %d)", total, n)
            rows = slice(None)
        else:
            log.info("training on %d of the %d training rows (train.n_data)", n, total)
            rows = np.sort(rng.choice(total, size=n, replace=False))
        return self.train[rows], (self.train_labels[rows] if labeled else None)

    def condition(self, labels) -> Finite:
        """The same dataset (its class, units and bin width) restricted to the rows of the requested labels,
        training and held-out (each label with its own rows, so shares follow their counts)."""
        labels = np.unique(np.asarray(labels, dtype=np.int64))
        if self.held_out_labels is None:
            raise ConfigError(f"sampler.label: {type(self).__name__} has no labels")
        train, held_out = np.isin(self.train_labels, labels), np.isin(self.held_out_labels, labels)
        part = copy.copy(self)
        part.__dict__.pop("std", None)  # computed again, from its own rows
        part.train, part.train_labels = self.train[train], self.train_labels[train]
        part.held_out, part.held_out_labels = self.held_out[held_out], self.held_out_labels[held_out]
        return part

    @cached_property
    def std(self) -> float:
        """The training rows' scalar standard deviation, in the model's units (over at most 10^5 rows)."""
        rows = self.train[:: max(1, len(self.train) // 100_000)]
        return float(rows.std(dtype=np.float64))


def split_share(n_rows: int, test_share: float, key: str, source: str, minimum: int = 2) -> int:
    """The number of held-out rows for a share `test_share` of n_rows; a one-line error naming `key` and the
    `source` when the share is not in (0, 1) or a part would have fewer than `minimum` rows."""
    if isinstance(test_share, bool) or not isinstance(test_share, int | float) or not 0 < test_share < 1:
        raise ConfigError(f"{key}: must be a number in (0, 1), got {test_share!r}")
    n_test = int(round(n_rows * test_share))
    if n_test < minimum or n_rows - n_test < minimum:
        raise ConfigError(f"{key}: {source}: {n_rows} rows are too few to hold out a share of {test_share} and "
                          f"keep {minimum} rows on each side")
    return n_test
