"""What a learned transport costs, against optimal transport, and how few steps of its ODE it takes."""

from __future__ import annotations

import torch
from torch import Tensor

from diffusion_runner.flow.model import VelocityField
from diffusion_runner.flow.samplers import Counting, FlowODE
from diffusion_runner.metrics import W2, Metric, Output
from diffusion_runner.sampling import integer_option

FEW_STEPS = (5, 10, 20)  # the Euler step counts (network evaluations) whose W2 every flow job reports


class Transport(Metric):
    """The learned map x0 -> Phi(x0) of `n` fresh source draws, by Euler's method on `steps` equal steps of the
    flow's ODE (in the model's units):

    - `transport_cost` = mean |Phi(x0) - x0|^2, and `ot_cost` = mean |x0 - Phi(x0)[p]|^2 for p the optimal pairing of
      the same two point sets (exact assignment, squared Euclidean cost): the least cost of moving the source draws
      onto the points the map sends them to, free of the sampling noise of another draw of the target;
    - `transport_ratio` = transport_cost / ot_cost >= 1: 1 when the map pairs its points as optimal transport does;
    - `straightness` = int_0^1 mean |(Phi(x0) - x0) - v(x_t, t)|^2 dt (Liu et al. 2023): 0 for straight paths at
      constant speed, which any number of Euler steps integrates exactly;
    - `w2_map` and `w2_euler_<k>` for k in FEW_STEPS: W2 (the w2 metric's, in the data's units) between n target
      draws and the map's images of the same x0 by `steps` and by k Euler steps: the quality at k network
      evaluations, paired with the map's (the same source draws and reference points).
    """

    kinds = ("points",)
    model_type = VelocityField
    outputs = {"transport_cost": Output(), "ot_cost": Output(better=None, vs_oracle=False),
               "transport_ratio": Output(), "straightness": Output(), "w2_map": Output(),
               **{f"w2_euler_{k}": Output() for k in FEW_STEPS}}

    def __init__(self, n: int = 2000, steps: int = 100):
        self.n = integer_option(n, "eval.metrics.transport.n")
        self.steps = integer_option(steps, "eval.metrics.transport.steps")

    @staticmethod
    def euler(model: VelocityField, x: Tensor, steps: int) -> list[Tensor]:
        """The states of x carried from t = 0 to 1 by `steps` steps of Euler's method (FlowODE), x first."""
        states = []  # the callback sees the start (i = 0) and the state after each step
        FlowODE(steps=steps, method="euler").run(Counting(model), x, None, lambda info: states.append(info["x"]))
        return states

    @torch.inference_mode()
    def __call__(self, ctx):
        model = ctx.model
        generator = torch.Generator(device=ctx.device).manual_seed(int(ctx.rng.integers(2**62)))
        x0 = model.draw_source(self.n, generator, ctx.device)
        states = self.euler(model, x0, self.steps)
        x, shift = states[-1], states[-1] - x0
        velocities = (self.steps * (after - before) for before, after in zip(states[:-1], states[1:], strict=True))
        straightness = sum(float((shift - v).pow(2).flatten(1).sum(1).mean()) for v in velocities) / self.steps
        ot_cost = W2.distance(x0.cpu().double().numpy(), x.cpu().double().numpy()) ** 2
        transport = float((x.double() - x0.double()).pow(2).flatten(1).sum(1).mean())  # in float64, as ot_cost
        reference = ctx.dataset.sample(self.n, ctx.rng)

        def w2(images: Tensor) -> float:
            return W2.distance(ctx.dataset.from_model(images.cpu().numpy()), reference)

        return {"transport_cost": transport, "ot_cost": ot_cost, "transport_ratio": transport / ot_cost,
                "straightness": straightness, "w2_map": w2(x),
                **{f"w2_euler_{k}": w2(self.euler(model, x0, k)[-1]) for k in FEW_STEPS}}
