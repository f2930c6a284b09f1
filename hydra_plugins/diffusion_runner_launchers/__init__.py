"""diffusion_runner's Hydra launchers (Hydra finds plugins in the hydra_plugins namespace package)."""
