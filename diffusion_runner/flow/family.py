"""The flow family: flow matching and the Schrodinger bridge, from any source to the data."""

from __future__ import annotations

import numpy as np
import torch
from hydra.utils import instantiate

from diffusion_runner import plots
from diffusion_runner.data import Gaussian
from diffusion_runner.family import Family
from diffusion_runner.flow.matchers import Matcher
from diffusion_runner.flow.model import VelocityField
from diffusion_runner.flow.objective import FlowMatching
from diffusion_runner.flow.samplers import BridgeSDE, FlowODE, FlowSampler

SOURCE_STREAM = 100  # the source's training rows: a random stream of its own beside the job's (pipeline's streams)
PATH_POINTS, PATH_STEPS = 2000, 100  # paths.png: points carried on this many steps (the ODE by Heun, a bridge's SDE)


class Flow(Family):
    """`source` (a Gaussian or any dataset of the data's shape), `matcher` (the paths and the coupling:
    diffusion_runner.flow.matchers), `model` (a velocity field, diffusion_runner.flow.VelocityField), `loss` (flow
    matching) and `sampler` (the ODE, or the bridge's SDE). With a Gaussian source its likelihood is the ODE's
    (diffusion_runner.flow.likelihood, kind `ode`). It draws paths.png, the transport's paths (2-D points, in the
    model's units): the ODE's, or a Schrodinger bridge's SDE's."""

    model_sections = ("source", "matcher", "model")
    types = {"matcher": Matcher, "model": VelocityField, "loss": FlowMatching, "sampler": FlowSampler}
    transports = True

    def build(self, cfg, dataset, source):
        matcher = instantiate(cfg.matcher)
        model = instantiate(cfg.model, dataset=dataset, source=source, matcher=matcher)
        sampler = instantiate(cfg.sampler)
        sampler.check(model)
        return model, sampler

    def objective(self, cfg, model):
        rows = None
        if not isinstance(model.source, Gaussian):
            rng = np.random.default_rng([cfg.seed, SOURCE_STREAM])
            rows = torch.as_tensor(model.source.training_data(cfg.train.n_data, rng)[0])
        return instantiate(cfg.loss, source_rows=rows)

    def figures(self, model, dataset, rng, out_dir):
        if dataset.kind != "points" or dataset.dim < 2:
            return []
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
        states = []
        sampler, how = ((BridgeSDE(steps=PATH_STEPS), "its SDE") if model.matcher.learns_score
                        else (FlowODE(steps=PATH_STEPS), "Heun"))
        with torch.inference_mode():
            sampler.generate(model, (PATH_POINTS, *dataset.shape), None, generator, device,
                             callback=lambda info: states.append(info["x"].cpu().numpy()))
        # in the model's units: a flow's states between a source and a data in other units have no data units
        plots.paths(np.stack(states), dataset.to_model(dataset.sample(5000, rng)), out_dir / "paths.png",
                    f"{type(model.source).__name__} -> {type(dataset).__name__}: {type(model.matcher).__name__}, "
                    f"{how}, {PATH_STEPS} steps")
        return ["paths"]
