"""Schema of the config sections every family shares; diffusion_runner.validate checks a job's config against it.

conf/config.yaml holds the values; this schema only names and types them, so an override such as
`train.steps=abc` or `train.stepz=5` fails at once with the key named. The family (`family=score`, its node at
`family`) adds its own top-level sections (diffusion_runner.family.Family.sections: for the score family sde, loss,
model and sampler), each a `_target_` node checked against its class's parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    steps: int
    batch_size: int
    n_data: int  # size of the training set drawn once from the dataset
    optimizer: Any  # a partial optimiser: {_target_: torch.optim.Adam, _partial_: true, lr: ...}
    scheduler: Any  # a partial LR scheduler stepped every step, or null
    grad_clip: float | None  # max gradient norm, null for none
    ema_decay: float | None  # sample with an exponential moving average of the weights; null for none
    log_every: int  # steps between progress reports
    checkpoint_every: int | None  # steps between checkpoints (also saved at the end); null: only at the end
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> callback node (diffusion_runner.callbacks)


@dataclass
class EvalConfig:
    n_samples: int  # points generated for evaluation and saved to samples.npy
    snapshots: int  # states of the sampling process kept for trajectory.png
    frames: int | None  # states of the sampling process kept for animation.gif; null: none
    every: int | None  # steps between evaluations during training (the learning curve); null: none
    curve_samples: int  # samples each of those evaluations draws
    curve_metrics: list[str]  # the metrics of eval.metrics each of them computes
    metrics: dict[str, Any] = field(default_factory=dict)  # name -> metric node


@dataclass
class RunConfig:
    family: Any  # the family node: {_target_: diffusion_runner.score.Score}
    dataset: Any
    source: Any  # where sampling starts: a Gaussian (every family) or a dataset (family=flow: a transport)
    logger: Any
    train: TrainConfig
    eval: EvalConfig
    seed: int
    ckpt_path: str | None  # checkpoint file, run directory or sweep directory to load instead of training
    resume: str | None  # continue the unfinished training in this checkpoint file or run directory
    overwrite: bool  # replace another run's outputs in the run directory instead of refusing
    device: str  # auto | cpu | cuda | cuda:N
    threads: int | None  # torch CPU threads; null keeps torch's default
    optimized_metric: str | None  # the metric the job returns to an optimising sweeper (Optuna's); null: none


SCHEMAS = {"": RunConfig, "train": TrainConfig, "eval": EvalConfig}  # section -> its schema ("" the top level)
