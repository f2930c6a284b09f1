"""Datasets: sources of x_0 samples, drawn from a numpy Generator (nothing is downloaded).

- base: the Dataset interface (kind, labels, the data's units against the model's);
- mixtures: Gaussian mixtures with their exact density and marginal scores (gmm8 and the like);
- curves: HelloScore's 2-D curves (swiss roll, moons, circles, checkerboard);
- finite: datasets of finitely many rows, split into training rows and held-out references;
- digits: scikit-learn's 8 x 8 handwritten digits (images); points_file: points of the user's own;
- gaussian: N(0, std^2 I), the default source of a transport (source=gaussian).
"""

import inspect

from diffusion_runner.data.base import Dataset
from diffusion_runner.data.curves import Checkerboard, Circles, Moons, NormalisedCurve, SwissRoll
from diffusion_runner.data.digits import Digits
from diffusion_runner.data.finite import Finite
from diffusion_runner.data.gaussian import Gaussian
from diffusion_runner.data.mixtures import GaussianMixture, ring_mixture
from diffusion_runner.data.points_file import PointsFile
from diffusion_runner.stored import subclasses

__all__ = ["Checkerboard", "Circles", "Dataset", "Digits", "Finite", "Gaussian", "GaussianMixture", "Moons",
           "NormalisedCurve", "PointsFile", "SwissRoll", "constructors", "ring_mixture"]


def constructors() -> set:
    """What a dataset config's `_target_` may name: every concrete Dataset class but Finite (built from arrays, by
    its subclasses), and the factory ring_mixture."""
    return {c for c in subclasses(Dataset) if not inspect.isabstract(c) and c is not Finite} | {ring_mixture}
