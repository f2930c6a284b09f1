"""The one place that turns a composed config into a job's parts; the pipeline, the tests and the benchmarks use it."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from diffusion_runner.callbacks import Callback, LearningCurve
from diffusion_runner.data import Dataset, Gaussian
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Family, Loss, Model
from diffusion_runner.metrics import Metric
from diffusion_runner.request import Request
from diffusion_runner.sampling import Sampler
from diffusion_runner.train import TrainOptions

log = logging.getLogger(__name__)


@dataclass
class Parts:
    dataset: Dataset  # what the model is trained on
    source: Dataset  # where sampling starts (the Gaussian prior by default)
    family: Family
    model: Model
    sampler: Sampler
    metrics: dict[str, Metric]
    target: Dataset  # what the samples should follow: the dataset, or the components sampler.label asks for
    callbacks: list[Callback]  # around the training loop (train.callbacks)


def build_metrics(cfg: DictConfig, target: Dataset, request: Request, source: Dataset,
                  model: Model) -> dict[str, Metric]:
    """The configured metrics (cfg = the eval section), dropping with a log line those the job cannot support."""
    metrics = {}
    for name, node in cfg.metrics.items():
        metric = instantiate(node)
        if not isinstance(model, metric.model_type):
            kind = metric.model_type
            raise ConfigError(f"eval.metrics.{name}: {type(metric).__name__} measures a {kind.__module__}."
                              f"{kind.__name__}, not a {type(model).__name__}")
        if metric.needs_density and not target.has_density:
            log.info("metric %s skipped: %s has no closed-form density", name, type(target).__name__)
            continue
        if metric.needs_source_density and not source.has_density:
            log.info("metric %s skipped: the source %s has no closed-form density", name, type(source).__name__)
            continue
        if metric.needs_classes and target.n_classes < 1:
            log.info("metric %s skipped: %s has no classes", name, type(target).__name__)
            continue
        if target.kind not in metric.kinds:
            log.info("metric %s skipped: it serves %s, and %s holds %s", name, " and ".join(metric.kinds),
                     type(target).__name__, target.kind)
            continue
        if metric.max_dim is not None and target.dim > metric.max_dim:
            log.warning("metric %s skipped: %d-D data is beyond the %d dimensions it can serve (its max_dim)",
                        name, target.dim, metric.max_dim)
            continue
        if metric.needs_labels and request.labels is None:
            log.debug("metric %s skipped: it scores conditional samples (set sampler.label)", name)
            continue
        if metric.needs_model_density and request.labels is not None and len(request.labels) > 1:
            log.info("metric %s skipped: samples of several labels come from as many guided densities", name)
            continue
        metrics[name] = metric
    need = max((m.min_samples for m in metrics.values()), default=0)
    if cfg.n_samples < max(need, 1):
        raise ConfigError(f"eval.n_samples: the metrics need at least {max(need, 1)} generated samples, "
                          f"got {cfg.n_samples}")
    return metrics


def build(cfg: DictConfig, device: torch.device | str = "cpu") -> Parts:
    dataset = instantiate(cfg.dataset)
    family = instantiate(cfg.family)
    source = build_source(cfg, dataset, family)
    model, sampler = family.build(cfg, dataset, source)
    model = model.to(device)
    sampler.request.check(model, dataset)
    target = sampler.request.target(dataset)
    metrics = build_metrics(cfg.eval, target, sampler.request, source, model)
    callbacks = [instantiate(node) for node in (cfg.train.get("callbacks") or {}).values()]
    if cfg.eval.every is not None:
        check_curve(cfg.eval, metrics)
        callbacks.append(LearningCurve(cfg.eval.every))
    return Parts(dataset, source, family, model, sampler, metrics, target, callbacks)


def build_source(cfg: DictConfig, dataset: Dataset, family: Family) -> Dataset:
    """The job's `source` in the dataset's shape: the default Gaussian for every family, any dataset of the same
    shape for a family that transports (a ConfigError naming `source` otherwise)."""
    try:
        source = instantiate(cfg.source)
    except Exception as e:  # a dataset option names its own keys under `dataset`: here they are under `source`
        cause = e if isinstance(e, ConfigError) else e.__cause__
        if isinstance(cause, ConfigError) and re.match(r"dataset[.:]", str(cause)):
            raise ConfigError("source" + str(cause).removeprefix("dataset")) from e
        raise
    if isinstance(source, Gaussian):
        source = source.like(dataset)
    if not family.transports:
        if not isinstance(source, Gaussian):
            raise ConfigError(f"source: family {cfg.family._target_} starts from its own prior; a dataset as the "
                              f"source needs family=flow")
        if source.std != 1.0 or source.shape != dataset.shape:
            raise ConfigError(f"source: family {cfg.family._target_} starts from its own prior; source.std and "
                              f"source.dim change the start of family=flow only")
    if source.shape != dataset.shape:
        raise ConfigError(f"source: {type(source).__name__} gives samples of shape {tuple(source.shape)}, the dataset "
                          f"{type(dataset).__name__} of shape {tuple(dataset.shape)}: a transport maps between equal "
                          f"shapes")
    return source


def check_curve(cfg: DictConfig, metrics: dict[str, Metric]) -> None:
    """eval.curve_metrics must name metrics of eval.metrics, and eval.curve_samples be enough for those the job
    computes (cfg = the eval section)."""
    unknown = [name for name in cfg.curve_metrics if name not in cfg.metrics]
    if unknown:
        raise ConfigError(f"eval.curve_metrics: {', '.join(unknown)} not in eval.metrics "
                          f"(allowed: {', '.join(cfg.metrics)})")
    need = max((metrics[name].min_samples for name in cfg.curve_metrics if name in metrics), default=1)
    if cfg.curve_samples < max(need, 1):
        raise ConfigError(f"eval.curve_samples: eval.curve_metrics need at least {max(need, 1)} generated samples, "
                          f"got {cfg.curve_samples}")


def train_options(train: DictConfig) -> TrainOptions:
    """The training loop's options from the job's `train` section (its optimiser and scheduler as partials)."""
    scheduler = instantiate(train.scheduler) if train.scheduler is not None else None
    return TrainOptions(steps=train.steps, batch_size=train.batch_size, optimizer=instantiate(train.optimizer),
                        scheduler=scheduler, grad_clip=train.grad_clip, ema_decay=train.ema_decay)


def build_loss(cfg: DictConfig, model: Model) -> Loss:
    """The training objective of the job's family for its model (training only: a job restored from a checkpoint
    never builds it)."""
    return instantiate(cfg.family).objective(cfg, model)
