"""The flow family: a velocity field regressed on a matcher's conditional paths from a source to the data
(conditional flow matching, its minibatch-OT pairing, the Schrodinger bridge, the variance-preserving path)."""

from diffusion_runner.flow.family import Flow
from diffusion_runner.flow.likelihood import CNFLikelihood
from diffusion_runner.flow.matchers import CFM, ExactOT, Matcher, SchrodingerBridge, VariancePreserving
from diffusion_runner.flow.metrics import Transport
from diffusion_runner.flow.model import VelocityField
from diffusion_runner.flow.objective import FlowMatching
from diffusion_runner.flow.samplers import BridgeSDE, FlowODE, FlowSampler

__all__ = ["CFM", "BridgeSDE", "CNFLikelihood", "ExactOT", "Flow", "FlowMatching", "FlowODE", "FlowSampler", "Matcher",
           "SchrodingerBridge", "Transport", "VariancePreserving", "VelocityField"]
