"""Drawing from the VAE: a prior draw, decoded."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffusion_runner.sampling import Sampler, SampleResult


class PriorSampler(Sampler):
    """k ~ p(k), u ~ N(0, I), x ~ p(x | k, u) (`noise` true) or x = its mean m(k, u) (`noise` false). The callback
    sees the decoded means (i = 0, t = 1) and the samples (i = 1, t = 0); one decoder evaluation."""

    def __init__(self, noise: bool = True, **request):
        super().__init__(**request)
        self.noise = bool(noise)

    @torch.inference_mode()
    def generate(self, model, shape, labels, generator, device, callback=None):
        n = shape[0]
        k = torch.multinomial(model.log_prior.exp(), n, replacement=True, generator=generator)
        u = torch.randn((n, model.continuous_dim), generator=generator, device=device)
        mean, log_std = model.decode(F.one_hot(k, model.categories).float(), u if model.continuous_dim else None)
        x = mean + torch.exp(log_std) * torch.randn(mean.shape, generator=generator, device=device) if self.noise \
            else mean
        if callback is not None:
            callback({"i": 0, "n": 1, "t": 1.0, "x": mean})
            callback({"i": 1, "n": 1, "t": 0.0, "x": x})
        return SampleResult(x.reshape(shape), 1)
