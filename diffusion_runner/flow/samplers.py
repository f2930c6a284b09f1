"""Samplers of a flow: from source draws at t = 0 to samples at t = 1, by the ODE dx/dt = v_theta(x, t) or, for the
Schrodinger bridge, by its SDE dx = [v_theta + sigma^2 / 2 s_theta] dt + sigma dW.

The fixed-step methods run on `steps` equal steps of t; the callback sees the source draws (i = 0) and the state
after each update. nfe counts network evaluations (velocity and score each count one).
"""

from __future__ import annotations

import math
from abc import abstractmethod

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.flow.model import VelocityField
from diffusion_runner.ode import METHODS, check_solver, integrate
from diffusion_runner.sampling import Callback, Sampler, SampleResult, integer_option


class FlowSampler(Sampler):
    """A sampler of the flow family; check(model) refuses a model it cannot sample (a ConfigError naming the key)."""

    def check(self, model: VelocityField) -> None:  # noqa: B027  (optional: most samplers take any flow)
        """Raise a ConfigError if this sampler cannot sample `model`."""

    @torch.inference_mode()
    def generate(self, model, shape, labels, generator, device, callback=None):
        net = Counting(model)
        x = self.run(net, model.draw_source(shape[0], generator, device), generator, callback or (lambda info: None))
        return SampleResult(x, net.calls)

    @abstractmethod
    def run(self, net: Counting, x: Tensor, generator: torch.Generator | None, callback: Callback) -> Tensor:
        """Carry the source draws x from t = 0 to 1."""


class Counting:
    """The model's velocity and score at one scalar time t for the whole batch, counting the calls of both."""

    def __init__(self, model: VelocityField):
        self.model, self.calls = model, 0

    def velocity(self, x: Tensor, t: float) -> Tensor:
        self.calls += 1
        return self.model.velocity(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))

    def score(self, x: Tensor, t: float) -> Tensor:
        self.calls += 1
        return self.model.score(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))


class FlowODE(FlowSampler):
    """The ODE dx/dt = v_theta(x, t): `euler` (1 evaluation a step) or `heun` (2: Euler's predictor, then the
    trapezoid) on `steps` equal steps, or an adaptive pair of scipy's solve_ivp (ode.METHODS, to rtol and atol;
    `steps` unused), whose accepted steps the callback sees."""

    FIXED = ("euler", "heun")

    def __init__(self, steps: int = 50, method: str = "heun", rtol: float = 1e-5, atol: float = 1e-5, **request):
        super().__init__(**request)
        if method not in (*self.FIXED, *METHODS):
            raise ConfigError(f"sampler.method: '{method}' is not one of {[*self.FIXED, *METHODS]}")
        if method in METHODS:
            check_solver(method, rtol, atol, "sampler")
        self.steps, self.method = integer_option(steps, "sampler.steps"), method
        self.rtol, self.atol = float(rtol), float(atol)

    def run(self, net, x, generator, callback):
        if self.method in METHODS:
            times, states, _ = integrate(lambda t, y: net.velocity(y.to(torch.float32), t).double(), x, (0.0, 1.0),
                                         method=self.method, rtol=self.rtol, atol=self.atol)
            for i, (t, state) in enumerate(zip(times, states, strict=True)):
                callback({"i": i, "n": len(times) - 1, "t": t, "x": state.to(torch.float32)})
            return states[-1].to(torch.float32)
        h = 1.0 / self.steps
        callback({"i": 0, "n": self.steps, "t": 0.0, "x": x})
        for i in range(self.steps):
            t = i * h
            v = net.velocity(x, t)
            if self.method == "heun":
                v = (v + net.velocity(x + h * v, t + h)) / 2
            x = x + h * v
            callback({"i": i + 1, "n": self.steps, "t": t + h, "x": x})
        return x


class BridgeSDE(FlowSampler):
    """The Schrodinger bridge's SDE dx = [v_theta + sigma^2 / 2 s_theta] dt + sigma dW by Euler-Maruyama on `steps`
    equal steps (2 evaluations a step); the last step adds no noise. Needs a matcher that learns the score
    (matcher=sb_cfm)."""

    def __init__(self, steps: int = 100, **request):
        super().__init__(**request)
        self.steps = integer_option(steps, "sampler.steps")

    def check(self, model):
        if not model.matcher.learns_score:
            raise ConfigError(f"sampler: flow_sde samples the bridge's SDE, which needs the score that "
                              f"{type(model.matcher).__name__} does not learn "
                              "(use matcher=sb_cfm, or sampler=flow_ode)")

    def run(self, net, x, generator, callback):
        h, sigma = 1.0 / self.steps, net.model.matcher.sigma
        callback({"i": 0, "n": self.steps, "t": 0.0, "x": x})
        for i in range(self.steps):
            t = i * h
            drift = net.velocity(x, t) + sigma**2 / 2 * net.score(x, t)
            x = x + h * drift
            if i < self.steps - 1:
                x = x + sigma * math.sqrt(h) * torch.randn(x.shape, generator=generator, device=x.device)
            callback({"i": i + 1, "n": self.steps, "t": t + h, "x": x})
        return x
