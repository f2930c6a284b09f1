"""The writeup's question, "will all the samples from a mode map to a category?", as numbers."""

from __future__ import annotations

import numpy as np
import torch

from diffusion_runner.errors import ConfigError
from diffusion_runner.metrics import Metric, Output


def confusion(modes: np.ndarray, categories: np.ndarray, n_modes: int, n_categories: int) -> np.ndarray:
    """counts[m, k]: points of mode m whose most probable category is k."""
    counts = np.zeros((n_modes, n_categories), dtype=np.int64)
    np.add.at(counts, (modes, categories), 1)
    return counts


class Purity(Metric):
    """On `n_points` fresh labelled draws (a mode per point), each mapped to argmax_k q(k | x): `purity`, the share
    of a mode's points in its most frequent category, averaged over the modes (1: every mode maps to one category),
    `purity_min` the worst mode's, and `categories_used`, the categories some point maps to (K when none is
    wasted; fewer when modes share one)."""

    needs_classes = True
    outputs = {"purity": Output(better="higher", ratio=False), "purity_min": Output(better="higher", ratio=False),
               "categories_used": Output(better=None, vs_oracle=False, ratio=False)}

    def __init__(self, n_points: int = 10_000):
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
            raise ConfigError(f"eval.metrics.purity.n_points: must be an integer >= 1, got {n_points!r}")
        self.n_points = n_points

    def __call__(self, ctx):
        points, modes = ctx.training.sample_labeled(self.n_points, ctx.rng)
        categories = ctx.model.categorise(torch.as_tensor(points, device=ctx.device)).cpu().numpy()
        counts = confusion(modes, categories, ctx.training.n_classes, ctx.model.categories)
        seen = counts.sum(1) > 0
        share = counts[seen].max(1) / counts[seen].sum(1)
        return {"purity": float(share.mean()), "purity_min": float(share.min()),
                "categories_used": int((counts.sum(0) > 0).sum())}
