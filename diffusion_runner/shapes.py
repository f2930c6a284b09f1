"""Shape helpers every family uses, so that code is independent of the data's rank (points or images)."""

from __future__ import annotations

from torch import Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Reshape a (batch,) tensor to (batch, 1, ..., 1) with `ndim` dimensions in all."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))
