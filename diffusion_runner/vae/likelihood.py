"""The VAE's likelihood: exact by summing over the categories, or an importance-weighted bound (IWAE)."""

from __future__ import annotations

from diffusion_runner.errors import ConfigError
from diffusion_runner.likelihood import Likelihood


class VAELikelihood(Likelihood):
    """Without a continuous latent, log p(x) = logsumexp_k [log p(k) + log p(x | k)] exactly (kind `exact`); with
    one, the bound IWAE_S over `importance_samples` S draws from q (kind `iwae`). Either way the ELBO too, as
    `nll_elbo` and `kl_elbo` (closed form without a continuous latent, else the mean of the same S draws' log w):
    its gap to the exact value is E_x KL(q(k | x) || p(k | x))."""

    def __init__(self, n_points: int = 4000, importance_samples: int = 64):
        super().__init__(n_points)
        if isinstance(importance_samples, bool) or not isinstance(importance_samples, int) or importance_samples < 1:
            raise ConfigError(f"eval.metrics.likelihood.importance_samples: must be an integer >= 1, "
                              f"got {importance_samples!r}")
        self.importance_samples = importance_samples

    def log_p(self, ctx, x, generator):
        model = ctx.model
        if model.exact:
            return {"exact": model.log_likelihood(x).double(), "elbo": model.elbo(x).double()}, {}
        iwae, elbo = model.iwae(x, self.importance_samples, generator)
        return {"iwae": iwae.double(), "elbo": elbo.double()}, {"nll_importance_samples": self.importance_samples}
