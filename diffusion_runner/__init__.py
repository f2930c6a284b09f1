"""diffusion_runner: a Hydra-configured experiment runner for score-based diffusion models."""

__version__ = "0.1.0"
