"""Integration of a batch of ODEs with torch right-hand sides: adaptive, by scipy's solve_ivp, or by classical
Runge-Kutta on fixed nodes of any clock variable, in torch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from diffusion_runner.errors import ConfigError

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
