"""One job: build the parts from the config, then the stages train (or load `ckpt_path`), sample, evaluate, plot,
writing the run directory.

Run directory: metrics.json, samples.npy (N x *shape float32, in the data's units), labels.npy (conditional samples),
checkpoint.pt (the training state, every train.checkpoint_every steps and at the end; none when the model is
loaded), samples.png, density.png (points only), trajectory.png, animation.gif, loss.png (trained models only), and
the family's own figures (the score family: forward.png, score_field.png), learning_curve.json and .png with
eval.every; the job's .hydra/ record and run.log are written by the entry point (diffusion_runner.__main__).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from diffusion_runner import checkpoints, plots, progress, rundir
from diffusion_runner.atomic import atomic_path, write_text
from diffusion_runner.build import Parts, build, build_loss, train_options
from diffusion_runner.callbacks import Context
from diffusion_runner.errors import ConfigError
from diffusion_runner.family import Model
from diffusion_runner.images import figures as image_figures
from diffusion_runner.interrupts import StopSignals
from diffusion_runner.metrics import EvalContext
from diffusion_runner.sampling import Snapshots
from diffusion_runner.train import train
from diffusion_runner.validate import validate

log = logging.getLogger(__name__)

# Independent random streams derived from the job seed.
DATA_STREAM, TRAIN_STREAM, SAMPLE_STREAM, EVAL_STREAM, PLOT_STREAM, CURVE_STREAM = range(6)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device: '{name}' is not auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: '{name}' asked for, but CUDA is not available here (use auto or cpu)")
    return device


def set_threads(threads: int | None) -> None:
    """torch CPU threads: as configured; else SLURM_CPUS_PER_TASK on a Slurm allocation; else torch's default
    (which honours OMP_NUM_THREADS, as set per worker by the joblib launcher)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads: must be >= 1 or null, got {threads}")
    threads = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0))
    if threads:
        torch.set_num_threads(threads)


def torch_generator(seed: int, stream: int, device: torch.device) -> torch.Generator:
    state = np.random.SeedSequence([seed, stream]).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state))


def write_json(path: Path, values: dict[str, Any]) -> None:
    """Write strict JSON (a non-finite number becomes null) atomically: a reader never sees a half-written file."""
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in values.items()}
    write_text(path, json.dumps(clean, indent=2, sort_keys=True, allow_nan=False) + "\n")


def fit(cfg: DictConfig, parts: Parts, device: torch.device, out_dir: Path, logger,
        resume: dict[str, Any] | None = None, stop: StopSignals | None = None) -> tuple[Model, dict]:
    """The train stage: train the model (if it has parameters), continuing from the training state `resume` if
    given, with checkpoints along the way and the loss curve at the end; a stop signal ends training after the
    step under way, with a checkpoint (diffusion_runner.train). Returns (the model to sample with, results)."""
    model = parts.model
    config = OmegaConf.to_container(cfg, resolve=True)
    path = out_dir / checkpoints.FILE
    if not model.trainable:
        log.info("model %s has no parameters: no training", type(model).__name__)
        checkpoints.save(path, {"config": config, "model": model.state_dict(), "step": 0})
        return model, {"train_seconds": 0.0}
    rng = np.random.default_rng([cfg.seed, DATA_STREAM])
    points, labels = parts.dataset.training_data(cfg.train.n_data, rng, labeled=model.conditional)
    labels = None if labels is None else torch.as_tensor(labels, device=device)
    data = torch.as_tensor(points, device=device)  # shares the rows' memory on the CPU
    log.info("training %d parameters for %d steps, batch %d", sum(p.numel() for p in model.parameters()),
             cfg.train.steps, cfg.train.batch_size)
    with stop.deferred() if stop is not None else nullcontext():
        context = Context(logger=logger, save=lambda state: checkpoints.save(path, {"config": config, **state}),
                          interactive=progress.interactive(), out_dir=out_dir,
                          evaluate=lambda trained: curve_point(cfg, parts, trained, device))
        result = train(model, build_loss(cfg, parts.model), data, train_options(cfg.train), labels=labels,
                       generator=torch_generator(cfg.seed, TRAIN_STREAM, device),
                       callbacks=parts.callbacks, context=context,
                       resume=resume, stop=stop.requested if stop is not None else None)
    plots.loss_curve(result.losses, out_dir / "loss.png")
    out = {"train_seconds": result.seconds, "train_steps_per_s": result.steps_per_second,
           "final_loss": float(result.losses[-max(1, len(result.losses) // 100):].mean())}
    if resume is not None:
        out["resumed_at_step"] = int(resume["step"])
    return result.model, out


def restore(cfg: DictConfig, parts: Parts) -> tuple[Model, dict]:
    """Instead of training: load the weights `ckpt_path` names, after checking they fit the configured model."""
    config = OmegaConf.to_container(cfg, resolve=True)
    path = checkpoints.find(cfg.ckpt_path, config)
    state = checkpoints.load(path)
    checkpoints.check_fits(state, config, path)
    planned = state["config"].get("train", {}).get("steps", 0)
    if "optimizer" in state and state.get("step", 0) < planned:
        raise ConfigError(f"ckpt_path: {path} holds an unfinished run (step {state['step']} of {planned}); "
                          f"finish its training with resume={path}")
    try:
        parts.model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise ConfigError(f"ckpt_path: {path} does not fit model {cfg.model._target_}: "
                          f"{str(e).splitlines()[0]}") from e
    log.info("model loaded from %s (trained for %d steps): no training", path, state.get("step", 0))
    return parts.model, {"ckpt_path": str(path), "ckpt_step": int(state.get("step", 0))}


@torch.no_grad()
def curve_point(cfg: DictConfig, parts: Parts, model: Model, device: torch.device) -> dict[str, float]:
    """One point of the learning curve: eval.curve_samples samples of `model` by the job's
    sampler, scored by the metrics of eval.curve_metrics the job has, on streams of their own, the same at every
    step (the same sampler noise and reference points, so the curve shows the model change, not the draws), and
    the training's streams are untouched; each metric's scores (its outputs with a better direction), not their
    standard errors or references. The model is put back in the mode it was in."""
    training, n = model.training, cfg.eval.curve_samples
    model.eval()
    try:
        labels = parts.sampler.request.per_sample(n)
        samples = parts.dataset.from_model(parts.sampler.generate(
            model, (n, *parts.dataset.shape), None if labels is None else torch.as_tensor(labels, device=device),
            torch_generator(cfg.seed, CURVE_STREAM, device), device).x.cpu().numpy().astype(np.float32))
        values: dict[str, float] = {}
        for name in cfg.eval.curve_metrics:
            if name in parts.metrics:
                rng = np.random.default_rng([cfg.seed, CURVE_STREAM, zlib.crc32(name.encode())])
                metric = parts.metrics[name]
                out = metric(EvalContext(samples, parts.target, rng, model, device, labels, parts.dataset,
                                         parts.sampler.request.guidance))
                values.update({k: float(out[k]) for k, spec in metric.outputs.items()
                               if spec.better is not None and k in out})  # the scores, not their references
        return values
    finally:
        model.train(training)


def sample(cfg: DictConfig, parts: Parts, model: Model, device: torch.device, out_dir: Path,
           results: dict[str, Any]) -> tuple[np.ndarray, list]:
    """The sample stage: eval.n_samples points saved to samples.npy (with labels.npy, the label each was requested
    with, for conditional samples), the trajectory's snapshots and the animation's frames (none when eval.frames is
    null)."""
    start = time.perf_counter()
    snapshots = Snapshots(cfg.eval.snapshots)
    frames = Snapshots(cfg.eval.frames, key="eval.frames") if cfg.eval.frames is not None else None
    request = parts.sampler.request
    labels = request.per_sample(cfg.eval.n_samples)
    with progress.bar(None, "sample", progress.interactive(), unit="update") as shown:
        moving = progress.SamplingBar(shown)

        def callback(info: dict) -> None:
            snapshots(info)
            if frames is not None:
                frames(info)
            moving(info)

        result = parts.sampler.generate(model, (cfg.eval.n_samples, *parts.dataset.shape),
                                        None if labels is None else torch.as_tensor(labels, device=device),
                                        torch_generator(cfg.seed, SAMPLE_STREAM, device), device, callback=callback)
    samples = parts.dataset.from_model(result.x.cpu().numpy().astype(np.float32))
    results.update(sample_seconds=time.perf_counter() - start, nfe=result.nfe)
    with atomic_path(out_dir / "samples.npy") as tmp:
        np.save(tmp, samples)
    if labels is not None:
        with atomic_path(out_dir / "labels.npy") as tmp:
            np.save(tmp, labels)
    bad = int((~np.isfinite(samples.reshape(len(samples), -1))).any(axis=1).sum())
    if bad:
        raise FloatingPointError(f"sampler produced {bad} non-finite samples out of {len(samples)}")
    log.info("sampled %d points with %d network evaluations in %.1f s", len(samples), result.nfe,
             results["sample_seconds"])

    def kept(states: Snapshots | None) -> list[tuple[float, np.ndarray]]:
        return [] if states is None else [(t, parts.dataset.from_model(x.cpu().numpy())) for t, x in states.states]

    return samples, kept(snapshots), kept(frames)


def evaluate(cfg: DictConfig, parts: Parts, model: Model, samples: np.ndarray, device: torch.device,
             results: dict[str, Any]) -> None:
    """The evaluate stage: every metric, each on its own evaluation stream (so dropping one changes no other).
    Conditional samples are compared with the requested components (parts.target)."""
    start = time.perf_counter()
    request = parts.sampler.request
    labels = request.per_sample(len(samples))
    with progress.bar(len(parts.metrics), "evaluate", progress.interactive(), unit="metric") as shown:
        for name, metric in parts.metrics.items():
            results["stage"] = f"evaluate (eval.metrics.{name})"
            if shown is not None:
                shown.set_postfix_str(name)
            begin = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, EVAL_STREAM, zlib.crc32(name.encode())])
            values = metric(EvalContext(samples, parts.target, rng, model, device, labels, parts.dataset,
                                        request.guidance))
            log.info("%s (%.1f s): %s", name, time.perf_counter() - begin,
                     ", ".join(f"{k} = {v}" if isinstance(v, str) else f"{k} = {v:.4f}" for k, v in values.items()))
            results.update(values)
            bad = [k for k, v in values.items() if not isinstance(v, str) and not math.isfinite(v)]
            if bad:
                raise FloatingPointError(f"metric {name} gave non-finite {', '.join(bad)}")
            if shown is not None:
                shown.update(1)
    results["eval_seconds"] = time.perf_counter() - start


@dataclass
class Job:
    """What a job is built into before it starts (setup): its parts and the device."""

    parts: Parts
    device: torch.device


def setup(cfg: DictConfig) -> Job:
    """Check the whole config and build the job's parts, touching no file: a ConfigError here means the job never
    started, so its run directory is left as it was."""
    validate(cfg)
    if cfg.seed < 0:
        raise ConfigError(f"seed: must be a non-negative integer, got {cfg.seed}")
    if cfg.ckpt_path and cfg.resume:
        raise ConfigError("ckpt_path: samples from a finished model; it cannot be combined with resume, which "
                          "continues training")
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)  # weight initialisation
    parts = build(cfg, device)
    if cfg.optimized_metric is not None and cfg.optimized_metric not in reported(parts):
        raise ConfigError(f"optimized_metric: '{cfg.optimized_metric}' is not reported by this job; it reports "
                          f"{', '.join(sorted(reported(parts)))}")
    return Job(parts, device)


def reported(parts: Parts) -> set[str]:
    """The numbers a job of these parts can write to metrics.json: its metrics' outputs and the stage timings."""
    keys = {"train_seconds", "sample_seconds", "eval_seconds", "wall_seconds", "final_loss", "nfe"}
    return keys.union(*(metric.outputs for metric in parts.metrics.values()))


def run(cfg: DictConfig, out_dir: Path, logger, results: dict[str, Any], resume: dict[str, Any] | None = None,
        stop: StopSignals | None = None, job: Job | None = None) -> None:
    """Train (or load `ckpt_path`) -> sample -> evaluate -> plot, filling `results` (metrics.json's numbers) as each
    stage ends, so a failure keeps what was done before it; results["stage"] names the stage under way.
    `job`: what setup(cfg) built (built here if not given); `resume` and `stop` go to the train stage (fit)."""
    results["stage"] = "build"
    if job is None:
        job = setup(cfg)
    parts, device = job.parts, job.device
    results.update(device=str(device), torch_threads=torch.get_num_threads())
    log.info("job: %s on %s -> %s", type(parts.model).__name__, device, out_dir)

    results["stage"] = "train"
    model, stage = (restore(cfg, parts) if cfg.ckpt_path else
                    fit(cfg, parts, device, out_dir, logger, resume=resume, stop=stop))
    results.update(stage)
    model.eval().requires_grad_(False)
    results["stage"] = "sample"
    samples, snapshots, frames = sample(cfg, parts, model, device, out_dir, results)
    results["stage"] = "evaluate"
    evaluate(cfg, parts, model, samples, device, results)
    results["stage"] = "plot"
    rng = np.random.default_rng([cfg.seed, PLOT_STREAM])
    if parts.dataset.kind == "images":
        plot_images(samples, snapshots, frames, parts.sampler.request.per_sample(len(samples)), out_dir)
    else:
        plot_job(samples, snapshots, frames, parts.target.sample(len(samples), rng), out_dir)
    parts.family.figures(model, parts.dataset, rng, out_dir)
    logger.log_images({path.stem: path for pattern in rundir.PICTURES for path in sorted(out_dir.glob(pattern))})


def plot_job(samples: np.ndarray, snapshots, frames, reference: np.ndarray, out_dir: Path) -> None:
    """The figures every job draws: samples.png, density.png, and when the sampler showed its states to the
    callback trajectory.png and animation.gif."""
    lims = plots.plot_limits(reference)
    plots.samples_vs_truth(samples, reference, out_dir / "samples.png")
    plots.density(samples, lims, out_dir / "density.png")
    if snapshots:
        plots.trajectory(snapshots, lims, out_dir / "trajectory.png")
    if frames:
        plots.animation(frames, lims, out_dir / "animation.gif")


def plot_images(samples: np.ndarray, snapshots, frames, labels: np.ndarray | None, out_dir: Path) -> None:
    """The figures of a job on images: samples.png (a grid, by requested label), and when the sampler showed its
    states to the callback trajectory.png (the denoising strip) and animation.gif."""
    image_figures.grid(samples, out_dir / "samples.png", labels)
    if snapshots:
        image_figures.strip(snapshots, out_dir / "trajectory.png")
    if frames:
        image_figures.animation(frames, out_dir / "animation.gif")
