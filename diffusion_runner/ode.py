"""Integration of a batch of ODEs with torch right-hand sides: adaptive, by scipy's solve_ivp, or by classical
Runge-Kutta on fixed nodes of any clock variable, in torch; and the change of variables along a flow, which gives
every family with an ODE (the score family's probability flow, the flow family's velocity) its log-likelihood."""

from __future__ import annotations

from collections.abc import Callable

import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from diffusion_runner.divergence import exact, hutchinson, probe_like
from diffusion_runner.errors import ConfigError

Clock = Callable[[Tensor], tuple[Tensor, Tensor]]  # u -> (t(u), dt/du), float64

# Explicit Runge-Kutta pairs: the implicit solvers' finite-difference Jacobian over a whole batch is far too costly.
METHODS = ("RK45", "RK23", "DOP853")


def check_solver(method: str, rtol: float, atol: float, key: str) -> None:
    """Raise a ConfigError naming `key` unless the method is one of METHODS and both tolerances are positive."""
    if method not in METHODS:
        raise ConfigError(f"{key}.method: '{method}' is not one of {list(METHODS)}")
    if not (rtol > 0 and atol > 0):
        raise ConfigError(f"{key}: rtol and atol must be positive, got rtol={rtol}, atol={atol}")


def rk4(fun: Callable[[float, Tensor], Tensor], y0: Tensor, u: Tensor,
        clock: Callable[[Tensor], tuple[Tensor, Tensor]]) -> Tensor:
    """y at u[-1] for dy/du = (dt/du) fun(t(u), y), by classical 4th-order Runge-Kutta on the nodes u[0], ..., u[-1]
    (4 evaluations of fun a step, the step's midpoint twice). clock(u) gives (t(u), dt/du) for a tensor of clock
    values, so the steps can be even in a variable smoother than t; both are taken once, at every node and midpoint.
    fun gets and returns tensors of y0's shape and dtype."""
    points = torch.stack([u[:-1], (u[:-1] + u[1:]) / 2, u[1:]], dim=1)
    times, rates = (c.tolist() for c in clock(points))
    y = y0
    for h, (t0, tm, t1), (w0, wm, w1) in zip((u[1:] - u[:-1]).tolist(), times, rates, strict=True):
        k1 = w0 * fun(t0, y)
        k2 = wm * fun(tm, y + h / 2 * k1)
        k3 = wm * fun(tm, y + h / 2 * k2)
        k4 = w1 * fun(t1, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def integrate(fun: Callable[[float, Tensor], Tensor], y0: Tensor, t_span: tuple[float, float], *, method: str,
              rtol: float, atol: float) -> tuple[list[float], Tensor, int]:
    """Solve dy/dt = fun(t, y) over t_span, the whole batch as one system (the solver's error norm is the RMS over
    every entry). fun gets and returns float64 tensors of y0's shape on y0's device.

    Returns (the solver's accepted times from t_span[0] to t_span[1]; y at each of them, shape
    (len(times), *y0.shape), float64; the number of fun evaluations)."""
    shape, device = y0.shape, y0.device

    def rhs(t, y):
        dy = fun(float(t), torch.from_numpy(y).reshape(shape).to(device))
        return dy.detach().reshape(-1).to("cpu", torch.float64).numpy()

    solution = solve_ivp(rhs, t_span, y0.detach().reshape(-1).to("cpu", torch.float64).numpy(), method=method,
                         rtol=rtol, atol=atol)
    if not solution.success:
        raise FloatingPointError(f"ODE solver {method} failed: {solution.message}")
    ys = torch.from_numpy(solution.y.T.copy()).reshape(-1, *shape).to(device)
    return solution.t.tolist(), ys, int(solution.nfev)


def solver(method: str, span: tuple[float, float], *, steps: int = 25, rtol: float = 1e-5, atol: float = 1e-5,
           clock: Clock | None = None, clock_span: tuple[float, float] | None = None) -> Callable:
    """solve(rhs, y0) -> y at span[1] for dy/dt = rhs(t, y) from y0 at span[0]: `rk4` on `steps` even steps of the
    clock u from clock_span[0] to clock_span[1] (by default u = t over span), or an adaptive pair of METHODS in t."""
    if method != "rk4":
        return lambda rhs, y0: integrate(rhs, y0, span, method=method, rtol=rtol, atol=atol)[1][-1]
    if clock is None:
        clock, clock_span = (lambda u: (u, torch.ones_like(u))), span
    nodes = torch.linspace(clock_span[0], clock_span[1], steps + 1, dtype=torch.float64)
    return lambda rhs, y0: rk4(rhs, y0, nodes, clock)


def change_of_variables(field: Callable[[Tensor, Tensor], Tensor], x: Tensor, solve: Callable, *,
                        divergence: str = "exact", probe: str = "rademacher",
                        generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, int]:
    """The instantaneous change of variables (Chen et al. 2018) along dx/dt = field(x, t) from x at the start of
    `solve`'s span to its end: (x_end in x's shape, float64; delta = int div field dt over the span, (batch,) float64;
    field evaluations), so that log p_start(x) = log p_end(x_end) + delta for densities carried by the flow.
    solve(rhs, y0) integrates dy/dt = rhs(t, y) over the span (rk4 on some clock, or `integrate`) and returns y at
    its end. `divergence`: `exact` (autograd, one pass a dimension) or `hutchinson` (one probe per point of
    `probe`'s kind, fixed over the whole solve, so the estimate is unbiased)."""
    n = x.shape[0]
    probe_vec = probe_like(x, probe, generator) if divergence == "hutchinson" else None
    nfe = 0

    def rhs(t: float, y: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        with torch.enable_grad():
            xt = y[:, :-1].reshape(x.shape).to(torch.float32).requires_grad_(True)
            v = field(xt, torch.full((n,), t, device=x.device))
            div = exact(v, xt) if probe_vec is None else hutchinson(v, xt, probe_vec)
        return torch.cat([v.detach().flatten(1), div.detach()[:, None]], dim=1).double()

    y0 = torch.cat([x.flatten(1).double(), torch.zeros(n, 1, dtype=torch.float64, device=x.device)], dim=1)
    end = solve(rhs, y0)
    return end[:, :-1].reshape(x.shape), end[:, -1], nfe
