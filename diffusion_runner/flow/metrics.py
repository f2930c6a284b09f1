"""What a learned transport costs, against optimal transport."""

from __future__ import annotations

import numpy as np
import torch

from diffusion_runner.errors import ConfigError
from diffusion_runner.flow.model import VelocityField
from diffusion_runner.metrics import W2, Metric, Output
from diffusion_runner.sampling import integer_option


class Transport(Metric):
    """The learned map x0 -> x1 = Phi(x0) of `n` fresh source draws, by Euler's method on `steps` equal steps of the
    flow's ODE (in the model's units):

    - `transport_cost` = mean |Phi(x0) - x0|^2, and `ot_cost` = W2^2 between the same source draws and n target
      draws (exact assignment, squared Euclidean cost), the least cost of any map between the two samples;
    - `transport_ratio` = transport_cost / ot_cost: 1 for a map as cheap as optimal transport;
    - `straightness` = int_0^1 mean |(Phi(x0) - x0) - v(x_t, t)|^2 dt (Liu et al. 2023): 0 for straight paths at
      constant speed, which any number of Euler steps integrates exactly.
    """

    kinds = ("points",)
    outputs = {"transport_cost": Output(), "ot_cost": Output(better=None, vs_oracle=False),
               "transport_ratio": Output(), "straightness": Output()}

    def __init__(self, n: int = 2000, steps: int = 100):
        self.n = integer_option(n, "eval.metrics.transport.n")
        self.steps = integer_option(steps, "eval.metrics.transport.steps")

    @torch.inference_mode()
    def __call__(self, ctx):
        model = ctx.model
        if not isinstance(model, VelocityField):
            raise ConfigError("eval.metrics.transport: measures a flow's map (family=flow)")
        generator = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**62)))
        x0 = model.draw_source(self.n, generator, ctx.device)
        x, h, velocities = x0, 1.0 / self.steps, []
        for i in range(self.steps):
            v = model.velocity(x, torch.full((self.n,), i * h, device=x.device))
            velocities.append(v)
            x = x + h * v
        shift = x - x0
        straightness = sum(float((shift - v).pow(2).flatten(1).sum(1).mean()) for v in velocities) * h
        target = ctx.dataset.to_model(ctx.dataset.sample(self.n, ctx.rng)).astype(np.float64)
        ot_cost = W2.distance(x0.cpu().numpy().astype(np.float64), target) ** 2
        transport = float(shift.pow(2).flatten(1).sum(1).mean())
        return {"transport_cost": transport, "ot_cost": ot_cost, "transport_ratio": transport / ot_cost,
                "straightness": straightness}
