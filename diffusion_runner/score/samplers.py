"""Samplers: draw x at t = eps by integrating a reverse process from the prior N(0, s(T)^2 I) at t = T.

Every sampler has one signature, sample(score_fn, sde, shape, generator, device, callback) -> SampleResult, and
counts its score evaluations (nfe); generate() (diffusion_runner.sampling) calls it with the model's guided score.
The callback sees the prior (i = 0) and the state after each of the n updates.

Grid samplers are a one-step method applied on a time grid T = t_0 > ... > t_N = eps (diffusion_runner.score.grids), so
any of them runs on any grid. Notation for one step from t to s < t: (m_t, s_t) are the marginal coefficients,
score = s_theta(x, t), x0_hat = (x + s_t^2 score) / m_t (Tweedie), sigma = s / m the noise level, and
x_t | x_s ~ N(a x_s, v I) the SDE's exact transition (sde.transition(s, t)).
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Callable

import torch
from torch import Tensor

from diffusion_runner.errors import ConfigError
from diffusion_runner.ode import check_solver, integrate
from diffusion_runner.sampling import Callback, Sampler, SampleResult, integer_option
from diffusion_runner.score.grids import Grid, Log, Uniform
from diffusion_runner.score.guidance import guided_score
from diffusion_runner.score.sdes import SDE, ScoreFn

Noise = Callable[[], Tensor]


class CountingScore:
    """score(x, t) at one scalar time t for the whole batch; counts its calls."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn, self.calls = score_fn, 0

    def __call__(self, x: Tensor, t: float) -> Tensor:
        self.calls += 1
        return self.score_fn(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))


class ScoreSampler(Sampler):
    """A sampler of the score family: generate() turns the model and the request into the (guided) score function
    it passes to sample()."""

    def generate(self, model, shape, labels, generator, device, callback=None):
        return self.sample(guided_score(model, labels, self.request.guidance), model.sde, shape, generator, device,
                           callback)

    @torch.inference_mode()
    def sample(self, score_fn: ScoreFn, sde: SDE, shape: tuple[int, ...], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", callback: Callback | None = None) -> SampleResult:
        """Samples of the given shape (batch, ...) at t = eps."""
        score = CountingScore(score_fn)
        x = sde.prior_sample(shape, generator, device)
        x = self.run(score, sde, x, lambda: torch.randn(shape, generator=generator, device=device),
                     callback or (lambda info: None))
        return SampleResult(x, score.calls)

    @abstractmethod
    def run(self, score: CountingScore, sde: SDE, x: Tensor, noise: Noise, callback: Callback) -> Tensor:
        """Integrate from the prior sample x at T to eps; noise() draws a fresh N(0, I) of x's shape."""


class GridSampler(ScoreSampler):
    """A one-step method on a grid of `steps` steps. With `denoise`, a stochastic method's last step adds no
    noise (it returns the step's mean, as score_sde does)."""

    def __init__(self, steps: int = 1000, grid: Grid | None = None, denoise: bool = True, **request):
        super().__init__(**request)
        self.steps = integer_option(steps, "sampler.steps")
        self.grid = grid or Uniform()
        self.denoise = bool(denoise)

    def run(self, score, sde, x, noise, callback):
        times = self.grid(sde, self.steps).tolist()
        callback({"i": 0, "n": self.steps, "t": times[0], "x": x})
        for i in range(self.steps):
            x = self.step(score, sde, x, times[i], times[i + 1], noise, final=i == self.steps - 1)
            callback({"i": i + 1, "n": self.steps, "t": times[i + 1], "x": x})
        return x

    @abstractmethod
    def step(self, score: CountingScore, sde: SDE, x: Tensor, t: float, s: float, noise: Noise,
             final: bool) -> Tensor:
        """x at time t -> x at time s < t."""

    def add_noise(self, mean: Tensor, std: float, noise: Noise, final: bool) -> Tensor:
        return mean if (final and self.denoise) or std == 0 else mean + std * noise()


class EulerMaruyama(GridSampler):
    """Reverse-time SDE by Euler-Maruyama, h = t - s: x <- x - [f(x, t) - g(t)^2 score] h + g(t) sqrt(h) z."""

    def step(self, score, sde, x, t, s, noise, final):
        tt = torch.full((x.shape[0],), t, device=x.device)
        mean = x - sde.reverse_drift(x, tt, score(x, t)) * (t - s)
        g = float(sde.diffusion(torch.tensor([t], dtype=torch.float64)))
        return self.add_noise(mean, g * math.sqrt(t - s), noise, final)


class ReverseDiffusion(GridSampler):
    """score_sde's reverse-diffusion predictor on the SDE's exact discretisation (a, v) between s and t:
    x <- (2 - a) x + v score + sqrt(v) z. For VP this is DDPM's discretisation (a = sqrt(1 - beta_i), v = beta_i),
    for VE SMLD's (a = 1, v = sigma_t^2 - sigma_s^2)."""

    def step(self, score, sde, x, t, s, noise, final):
        a, v = sde.transition(s, t)
        return self.add_noise((2 - a) * x + v * score(x, t), math.sqrt(v), noise, final)


class Ancestral(GridSampler):
    """Ancestral sampling of the chain the grid discretises (Ho et al. 2020; Song et al. 2021, app. F): the
    posterior q(x_s | x_t, x_0 = x0_hat), whose mean is (x + v score) / a and variance s_s^2 v / s_t^2.
    For VP with a = sqrt(alpha_i), v = beta_i this is DDPM's x <- (x + beta_i score) / sqrt(alpha_i) + sigma_i z
    with sigma_i^2 the posterior variance beta~_i."""

    def step(self, score, sde, x, t, s, noise, final):
        a, v = sde.transition(s, t)
        std = sde.coefficients(s)[1] * math.sqrt(v) / sde.coefficients(t)[1]
        return self.add_noise((x + v * score(x, t)) / a, std, noise, final)


class DDIM(GridSampler):
    """DDIM (Song, Meng & Ermon 2021): x <- m_s x0_hat + sqrt(s_s^2 - std^2) eps_hat + std z, eps_hat = -s_t score,
    std = eta s_s sqrt(v) / s_t. eta = 0 is deterministic (Euler's method for the probability-flow ODE in the
    variables (sigma, x / m)); eta = 1 is ancestral sampling."""

    def __init__(self, steps: int = 50, grid: Grid | None = None, eta: float = 0.0, denoise: bool = True,
                 **request):
        super().__init__(steps, grid, denoise, **request)
        if not 0 <= eta <= 1:
            raise ConfigError(f"sampler.eta: must be in [0, 1], got {eta}")
        self.eta = float(eta)

    def step(self, score, sde, x, t, s, noise, final):
        (m_t, s_t), (m_s, s_s) = sde.coefficients(t), sde.coefficients(s)
        std = self.eta * s_s * math.sqrt(sde.transition(s, t)[1]) / s_t
        sc = score(x, t)
        mean = m_s * (x + s_t**2 * sc) / m_t - math.sqrt(max(s_s**2 - std**2, 0.0)) * s_t * sc
        return self.add_noise(mean, std, noise, final)


class Heun(GridSampler):
    """The probability-flow ODE by Heun's 2nd-order method in EDM's variables (Karras et al. 2022, alg. 1):
    y = x / m against sigma, dy/dsigma = -s(t) score(x, t); two score evaluations per step."""

    def step(self, score, sde, x, t, s, noise, final):
        (m_t, s_t), (m_s, s_s) = sde.coefficients(t), sde.coefficients(s)
        dsigma = s_s / m_s - s_t / m_t
        d = -s_t * score(x, t)
        y_euler = x / m_t + dsigma * d
        d_next = -s_s * score(m_s * y_euler, s)
        return m_s * (x / m_t + dsigma * (d + d_next) / 2)


class PredictorCorrector(GridSampler):
    """score_sde's predictor-corrector: at each grid time, `corrector_steps` Langevin steps
    x <- x + e score + sqrt(2 e) z with e = 2 alpha (snr |z| / |score|)^2 (norms per sample, averaged over the
    batch; alpha = a^2 of the next step, score_sde's 1 - beta_i for VP), then one predictor step to the next time."""

    PREDICTORS = {"reverse_diffusion": ReverseDiffusion, "euler_maruyama": EulerMaruyama}

    def __init__(self, steps: int = 1000, grid: Grid | None = None, predictor: str = "reverse_diffusion",
                 corrector_steps: int = 1, snr: float = 0.16, denoise: bool = True, **request):
        super().__init__(steps, grid, denoise, **request)
        if predictor not in self.PREDICTORS:
            raise ConfigError(f"sampler.predictor: '{predictor}' is not one of {sorted(self.PREDICTORS)}")
        if not snr > 0:
            raise ConfigError(f"sampler.snr: must be positive, got {snr}")
        self.predictor = self.PREDICTORS[predictor](steps, grid, denoise)
        self.corrector_steps = integer_option(corrector_steps, "sampler.corrector_steps", minimum=0)
        self.snr = float(snr)

    def step(self, score, sde, x, t, s, noise, final):
        alpha = sde.transition(s, t)[0] ** 2
        for _ in range(self.corrector_steps):
            grad, z = score(x, t), noise()
            ratio = z.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean()
            e = 2 * alpha * (self.snr * ratio) ** 2
            x = x + e * grad + torch.sqrt(2 * e) * z
        return self.predictor.step(score, sde, x, t, s, noise, final)


class ProbabilityFlowODE(ScoreSampler):
    """The probability-flow ODE dx/dt = f - g^2 score / 2 from T to eps with an adaptive Runge-Kutta method of
    scipy's solve_ivp (rtol, atol). It draws from exactly the density that the `likelihood` metric evaluates.
    The callback sees the solver's accepted steps."""

    def __init__(self, method: str = "RK45", rtol: float = 1e-5, atol: float = 1e-5, **request):
        super().__init__(**request)
        check_solver(method, rtol, atol, "sampler")
        self.method, self.rtol, self.atol = method, float(rtol), float(atol)

    def run(self, score, sde, x, noise, callback):
        def drift(t, y):
            x = y.to(torch.float32)
            tt = torch.full((x.shape[0],), t, device=x.device)
            return sde.probability_flow_drift(x, tt, score(x, t)).double()

        times, states, _ = integrate(drift, x, (sde.T, sde.eps), method=self.method, rtol=self.rtol, atol=self.atol)
        for i, (t, state) in enumerate(zip(times, states, strict=True)):
            callback({"i": i, "n": len(times) - 1, "t": t, "x": state.to(torch.float32)})
        return states[-1].to(torch.float32)


class AnnealedLangevin(ScoreSampler):
    """NCSN's annealed Langevin dynamics (Song & Ermon 2019, alg. 1): at each of `levels` times of the grid, from T
    down to eps, `steps_per_level` steps x <- x + (e_i / 2) score + sqrt(e_i) z with e_i = step_size s(t_i)^2, i.e.
    NCSN's e sigma_i^2 / sigma_L^2 with e = step_size sigma_L^2. With `denoise`, a last Tweedie step
    x <- x + s(eps)^2 score (NCSNv2). The default grid is `log`, NCSN's geometric noise ladder."""

    def __init__(self, levels: int = 20, steps_per_level: int = 50, step_size: float = 1.0,
                 grid: Grid | None = None, denoise: bool = True, **request):
        super().__init__(**request)
        self.levels = integer_option(levels, "sampler.levels", minimum=2)
        self.steps_per_level = integer_option(steps_per_level, "sampler.steps_per_level")
        if not step_size > 0:
            raise ConfigError(f"sampler.step_size: must be positive, got {step_size}")
        self.step_size, self.grid, self.denoise = float(step_size), grid or Log(), bool(denoise)

    def run(self, score, sde, x, noise, callback):
        times = self.grid(sde, self.levels - 1).tolist()
        callback({"i": 0, "n": self.levels, "t": times[0], "x": x})
        for i, t in enumerate(times):
            e = self.step_size * sde.coefficients(t)[1] ** 2
            for _ in range(self.steps_per_level):
                x = x + e / 2 * score(x, t) + math.sqrt(e) * noise()
            if self.denoise and i == self.levels - 1:
                x = x + sde.coefficients(t)[1] ** 2 * score(x, t)
            callback({"i": i + 1, "n": self.levels, "t": t, "x": x})
        return x


class DPMSolverPP(ScoreSampler):
    """DPM-Solver++ (Lu et al. 2022), the multistep exponential integrator of the probability-flow ODE in data
    prediction. In y = x / m against lambda = -log sigma the ODE is dy/dlambda = x0_hat - y, solved exactly from t to
    s for x0_hat polynomial in lambda: with h = log(sigma_t / sigma_s),

        y_s = (sigma_s / sigma_t) y_t + (1 - e^-h) D,   D = x0_hat(t)                              (order 1: DDIM)
        2M: D = (1 + 1/(2r)) x0_hat(t) - x0_hat(t_prev) / (2r),  r = h_prev / h                     (Lu et al., alg. 2)
        3M: the quadratic through the last three x0_hat integrated exactly (phi_2, phi_3 weights), as k-diffusion's
            dpmpp_3m at eta = 0.

    A multistep method on the grid of `steps` steps (default `log`), not a one-step GridSampler: one score evaluation
    a step, whatever the order; the first steps use the orders their history allows. With
    `lower_order_final` and fewer than 15 steps the last step is first order and the one before it at most second
    order (DPM-Solver's advice: the high-order extrapolation is least stable at the smallest noise levels)."""

    ORDERS = (1, 2, 3)

    def __init__(self, steps: int = 10, grid: Grid | None = None, order: int = 3, lower_order_final: bool = False,
                 **request):
        super().__init__(**request)
        self.steps, self.grid = integer_option(steps, "sampler.steps"), grid or Log()
        if order not in self.ORDERS:
            raise ConfigError(f"sampler.order: must be one of {list(self.ORDERS)}, got {order!r}")
        self.order, self.lower_order_final = order, bool(lower_order_final)

    def step_order(self, i: int) -> int:
        """The order of step i (0-based) of self.steps."""
        order = min(self.order, i + 1)
        if self.lower_order_final and self.steps < 15:
            order = min(order, self.steps - i)
        return order

    def run(self, score, sde, x, noise, callback):
        times = self.grid(sde, self.steps).tolist()
        callback({"i": 0, "n": self.steps, "t": times[0], "x": x})
        history: list[tuple[float, Tensor]] = []  # (h of the step that followed, x0_hat), newest last
        for i in range(self.steps):
            t, s = times[i], times[i + 1]
            (m_t, s_t), (m_s, s_s) = sde.coefficients(t), sde.coefficients(s)
            x0 = (x + s_t**2 * score(x, t)) / m_t
            h = math.log((s_t / m_t) / (s_s / m_s))
            order, decay = self.step_order(i), -math.expm1(-h)  # decay = 1 - e^-h
            y = (s_s / m_s) / (s_t / m_t) * x / m_t + decay * x0
            if order == 2:
                r = history[-1][0] / h
                y = y + decay / (2 * r) * (x0 - history[-1][1])
            elif order == 3:
                (h2, d2), (h1, d1) = history[-2:]
                r0, r1 = h1 / h, h2 / h
                slope0, slope1 = (x0 - d1) / r0, (d1 - d2) / r1
                phi2 = -decay / h + 1
                phi3 = phi2 / h - 0.5
                y = y + phi2 * (slope0 + (slope0 - slope1) * r0 / (r0 + r1)) - phi3 * (slope0 - slope1) / (r0 + r1)
            history = [*history[-1:], (h, x0)]
            x = m_s * y
            callback({"i": i + 1, "n": self.steps, "t": s, "x": x})
        return x
