"""The log-likelihood of a flow with a source of known density: the flow is a continuous normalising flow, so
log p_1(x) = log p_0(x_0) + int_1^0 div v_theta(x_t, t) dt with x_t solved backwards from x_1 = x to t = 0
(diffusion_runner.likelihood.FlowLikelihood, kind `ode`, in nats; rk4 steps are even in t)."""

from __future__ import annotations

from diffusion_runner.likelihood import FlowLikelihood
from diffusion_runner.ode import change_of_variables


class CNFLikelihood(FlowLikelihood):
    """log p_theta(x) of the flow's ODE samples (sampler=flow_ode at high accuracy draws from it); skipped for a
    source without a closed-form density (a source dataset of rows or a curve)."""

    needs_source_density = True

    def log_p(self, ctx, x, generator):
        model, divergence = ctx.model, self.divergence_for(x[0].numel())
        end, delta, nfe = change_of_variables(model.velocity, x, self.solver((1.0, 0.0)), divergence=divergence,
                                              probe=self.probe, generator=generator)
        return {"ode": model.source_log_prob(end) + delta}, {"nll_nfe": nfe, "nll_divergence": divergence}
