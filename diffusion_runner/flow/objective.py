"""The flow-matching objective: regress the velocity field on the matcher's conditional velocities."""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Loss
from diffusion_runner.flow.model import VelocityField
from diffusion_runner.shapes import append_dims

T_MARGIN = 1e-5  # t ~ U[T_MARGIN, 1 - T_MARGIN]: a bridge's u_t divides by t (1 - t)


class FlowMatching(Loss):
    """E_{t, (x0, x1) ~ coupling, eps} |v_theta(x_t, t) - u_t|^2 (mean over entries), plus for a matcher that learns
    the score `score_weight` E |sigma_t s_theta(x_t, t) + eps|^2, the denoising score matching of the path
    (lambda_t = sigma_t). x0 are fresh source draws (from the training generator) or, for a source dataset,
    `source_rows` drawn uniformly with replacement (a training set of the source, fixed per seed)."""

    def __init__(self, score_weight: float = 1.0, source_rows: Tensor | None = None):
        if isinstance(score_weight, bool) or not isinstance(score_weight, int | float) or not score_weight > 0:
            raise ConfigError(f"loss.score_weight: must be a number > 0, got {score_weight!r}")
        self.score_weight, self.source_rows = float(score_weight), source_rows

    def source_batch(self, model: VelocityField, n: int, generator: torch.Generator | None, device) -> Tensor:
        if self.source_rows is None:
            return model.source.draw(n, generator, device)
        if self.source_rows.device != torch.device(device):
            self.source_rows = self.source_rows.to(device)
        return self.source_rows[torch.randint(len(self.source_rows), (n,), generator=generator, device=device)]

    def __call__(self, model, x1, generator=None, y=None):
        matcher, n = model.matcher, x1.shape[0]
        x0, x1 = matcher.couple(self.source_batch(model, n, generator, x1.device), x1, generator)
        t = T_MARGIN + (1 - 2 * T_MARGIN) * torch.rand(n, generator=generator, device=x1.device)
        eps = torch.randn(x1.shape, generator=generator, device=x1.device)
        xt, ut = matcher.path(x0, x1, t, eps)
        loss = (model.velocity(xt, t) - ut).pow(2).mean()
        if matcher.learns_score:
            sigma_t = append_dims(matcher.std(t), x1.ndim)
            loss = loss + self.score_weight * (sigma_t * model.score(xt, t) + eps).pow(2).mean()
        return loss
