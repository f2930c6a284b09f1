"""Minibatch couplings of source and target points (Tong et al. 2023): which x0 a training batch pairs with each x1.

An exact optimal-transport pairing is the permutation minimising the total squared distance (scipy's
linear_sum_assignment); an entropic one draws pairs from the Sinkhorn plan of regularisation `reg` (POT), which tends
to the exact plan as reg -> 0 and to the independent coupling as reg -> infinity.
"""

from __future__ import annotations

import warnings

import numpy as np
import ot
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor


def squared_costs(x0: Tensor, x1: Tensor) -> Tensor:
    """|x0_i - x1_j|^2 for every pair, (n0, n1), over all but the batch dimension."""
    return torch.cdist(x0.flatten(1), x1.flatten(1)) ** 2


def exact_pairing(x0: Tensor, x1: Tensor) -> Tensor:
    """The permutation p minimising sum_i |x0[p[i]] - x1[i]|^2 (int64, on x0's device): x0[p] pairs with x1."""
    cost = squared_costs(x0, x1).detach().cpu().double().numpy()
    rows, cols = linear_sum_assignment(cost)
    permutation = np.empty(len(cols), dtype=np.int64)
    permutation[cols] = rows
    return torch.from_numpy(permutation).to(x0.device)


# Sinkhorn's scaling iterations underflow once exp(-C / reg) does (C / reg beyond ~700 in float64); below this
# margin they are 3-80x faster than the log-domain iterations, which never underflow.
SCALING_MAX_RATIO = 500.0


def entropic_plan(x0: Tensor, x1: Tensor, reg: float) -> Tensor:
    """The entropic OT plan between the two uniform empirical measures, argmin <pi, C> - reg H(pi) for C the squared
    distances, (n0, n1) float64 on x0's device summing to 1 (POT's Sinkhorn to a marginal error of 1e-6 or 1000
    iterations, in numpy: on a CPU its iterations cost a third of torch's). Sinkhorn converges slowly once reg is
    small against the costs; a plan whose column sums are off by more than 1% of 1/n1 after its iterations is used,
    with a warning (once per reg: its text names no batch's numbers)."""
    cost = squared_costs(x0, x1).detach().cpu().double().numpy()
    n0, n1 = cost.shape
    method = "sinkhorn" if float(cost.max()) / reg < SCALING_MAX_RATIO else "sinkhorn_log"
    plan = ot.sinkhorn(np.full(n0, 1 / n0), np.full(n1, 1 / n1), cost, reg, method=method, numItermax=1000,
                       stopThr=1e-6, warn=False)
    plan = plan / plan.sum()
    off = float(np.abs(plan.sum(0) * n1 - 1).max())
    if off > 0.01:
        warnings.warn(f"entropic_plan: Sinkhorn stopped after 1000 iterations with marginals off by more than 1% at "
                      f"reg {reg:g}, small against the batch's squared distances; the pairs follow the approximate "
                      f"plan", RuntimeWarning, stacklevel=2)
    return torch.from_numpy(plan).to(x0.device)


def entropic_pairs(x0: Tensor, x1: Tensor, reg: float, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """(i, j) index pairs, as many as x1 has rows, drawn with replacement from the entropic plan (entropic_plan)."""
    n1 = x1.shape[0]
    flat = torch.multinomial(entropic_plan(x0, x1, reg).reshape(-1), n1, replacement=True, generator=generator)
    return flat // n1, flat % n1
