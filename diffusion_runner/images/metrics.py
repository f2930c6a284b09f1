"""Image metrics in the penultimate features of the dataset's classifier (diffusion_runner.images.classifier).

Generated images are compared with the held-out images (never trained on). Each distance comes with its floor: the
same distance from n training images, the most any model drawing n images from the data distribution could be
expected to reach; n is reported (`features_n`).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from diffusion_runner.data.finite import Finite
from diffusion_runner.errors import ConfigError
from diffusion_runner.images import classifier as classifiers
from diffusion_runner.metrics import EvalContext, Metric, Output


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fit to the rows of a and b (FID's
    formula, Heusel et al. 2017), in squared feature units."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root), 0.0))


def kid(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, subsets: int = 50,
        subset_size: int = 300) -> tuple[float, float]:
    """Kernel inception distance (Binkowski et al. 2018): the unbiased MMD^2 under k(x, y) = (x.y / d + 1)^3,
    averaged over `subsets` random subsets of min(subset_size, len(a), len(b)) rows of each; (mean, the standard
    deviation over the subsets). The subsets overlap, so that spread, not it over sqrt(subsets), is the estimate's
    uncertainty (as torch-fidelity reports it); the mean can fall below zero by about that much."""
    m = min(subset_size, len(a), len(b))
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x, y = a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        values.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    values = np.asarray(values)
    return float(values.mean()), float(values.std(ddof=1))


def c2st(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, folds: int = 5) -> float:
    """Classifier two-sample test (Lopez-Paz & Oquab 2017): the cross-validated accuracy of a logistic regression
    (standardised inputs) telling `folds`-fold held-out rows of a from those of b, on as many rows of each;
    0.5 = indistinguishable."""
    m = min(len(a), len(b))
    x = np.concatenate([a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)]])
    y = np.repeat([0, 1], m)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
    return float(cross_val_score(model, x, y, cv=cv).mean())


class ClassifierFeatures(Metric):
    """Against the held-out images, in the classifier's features, with n = the training images' count (at most
    `n`): `fd` (Fréchet distance) and `kid` (with `kid_std`, its spread over subsets), with their floors `fd_floor`
    and `kid_floor` (n training images against the same held-out images), and `c2st` (0.5 = indistinguishable;
    `c2st_floor`). From the classifier's predictions on all samples: `label_max_dev`, the largest gap between a
    label's share and the held-out images' share of it (`label_shares`: the shares in label order, as text), and
    `confidence`, the mean top class probability; for conditional samples `on_label`, the share classified as the
    requested label. `classifier_accuracy`: the classifier's held-out accuracy. `cache_dir`: where the classifier
    is kept (null: $XDG_CACHE_HOME/diffusion_runner or ~/.cache/diffusion_runner)."""

    kinds = ("images",)
    needs_classes = True
    min_samples = 10
    outputs = {"fd": Output(), "fd_floor": Output(better=None, vs_oracle=False, floor_of="fd"),
               "kid": Output(ratio=False), "kid_floor": Output(better=None, vs_oracle=False, floor_of="kid"),
               "c2st": Output(ratio=False), "c2st_floor": Output(better=None, vs_oracle=False, floor_of="c2st"),
               "label_max_dev": Output(ratio=False), "confidence": Output(better="higher", ratio=False),
               "on_label": Output(better="higher", ratio=False),
               "classifier_accuracy": Output(better=None, vs_oracle=False),
               "features_n": Output(better=None, vs_oracle=False)}

    def __init__(self, n: int = 2000, cache_dir: str | None = None):
        if isinstance(n, bool) or not isinstance(n, int) or n < 10:
            raise ConfigError(f"eval.metrics.features.n: must be an integer >= 10, got {n!r}")
        self.n, self.cache_dir = n, cache_dir

    def __call__(self, ctx: EvalContext):
        source = ctx.training if ctx.training is not None else ctx.dataset
        if not isinstance(source, Finite) or source.train_labels is None:
            raise ConfigError(f"eval.metrics.features: needs a labelled image dataset with training and held-out "
                              f"rows, not {type(source).__name__}")
        classifier = classifiers.load_or_train(source, self.cache_dir)
        target = ctx.dataset
        held_out = target.from_model(target.held_out)
        train = target.from_model(target.train)
        n = min(self.n, len(train), len(ctx.samples))
        f_samples, p_samples = classifier.run(ctx.samples)
        f_test, _ = classifier.run(held_out)
        f_train, _ = classifier.run(train[np.sort(ctx.rng.choice(len(train), n, replace=False))])
        f_gen = f_samples[:n]
        kid_gen, kid_std = kid(f_gen, f_test, ctx.rng)
        predicted = p_samples.argmax(1)
        shares = np.bincount(predicted, minlength=source.n_classes) / len(predicted)
        data_shares = np.bincount(target.held_out_labels, minlength=source.n_classes) / len(target.held_out_labels)
        out = {"fd": frechet_distance(f_gen, f_test), "fd_floor": frechet_distance(f_train, f_test),
               "kid": kid_gen, "kid_std": kid_std, "kid_floor": kid(f_train, f_test, ctx.rng)[0],
               "c2st": c2st(f_gen, f_test, ctx.rng), "c2st_floor": c2st(f_train, f_test, ctx.rng),
               "label_max_dev": float(np.abs(shares - data_shares).max()),
               "label_shares": " ".join(f"{s:.3f}" for s in shares),
               "confidence": float(p_samples.max(1).mean()), "classifier_accuracy": classifier.accuracy,
               "features_n": n}
        if ctx.labels is not None:
            out["on_label"] = float((predicted == ctx.labels).mean())
        return out
