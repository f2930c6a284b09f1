"""scikit-learn's 8 x 8 handwritten digits (1,797 images of ten classes), shipped with scikit-learn: nothing is
downloaded."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from diffusion_runner.data.finite import Finite, split_share

LEVELS = 16  # pixels are integers 0 .. 16


class Digits(Finite):
    """Images (1, 8, 8) with pixel values k in 0 .. 16 mapped to x = k / 8 - 1 in [-1, 1] (so `bin_width` 1/8), and
    labels 0 .. 9. One stratified split, fixed by `split_seed`, holds out `test_share` of the images as the
    references of every metric; they are never trained on."""

    def __init__(self, test_share: float = 0.2, split_seed: int = 0):
        bunch = load_digits()
        x = (bunch.images.astype(np.float32) * (2 / LEVELS) - 1)[:, None]  # (1797, 1, 8, 8)
        labels = bunch.target.astype(np.int64)
        split_share(len(x), test_share, "dataset.test_share", "digits")
        x_train, x_test, y_train, y_test = train_test_split(x, labels, test_size=test_share, stratify=labels,
                                                            random_state=split_seed)
        super().__init__(x_train, x_test, y_train, y_test, n_classes=10)
        self.bin_width = 2 / LEVELS
