"""Adaptive integration of a batch of ODEs with scipy's solve_ivp, for torch right-hand sides."""

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
