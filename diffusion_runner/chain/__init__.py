"""The discrete-time chain family: schedules (constant alpha, linear beta, cosine), eps- or x0-prediction, L_simple,
the ELBO and the learned-variance hybrid, ancestral sampling, and the ELBO with its terms."""

from diffusion_runner.chain.family import Chain
from diffusion_runner.chain.model import ChainModel, ChainOracle
from diffusion_runner.chain.objective import ChainLoss
from diffusion_runner.chain.sampler import Ancestral

__all__ = ["Ancestral", "Chain", "ChainLoss", "ChainModel", "ChainOracle"]
