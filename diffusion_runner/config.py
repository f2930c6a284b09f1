"""Schema of the top-level config sections, registered with Hydra's ConfigStore.

conf/config.yaml holds the values; this schema only types them, so an override such as
`train.steps=abc` or `train.stepz=5` fails at once with the key named. The ingredient groups
(dataset, sde, loss, model, sampler, logger) are `_target_` nodes checked by instantiate; the `weighting` group
fills loss.weighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainConfig:
    steps: int = MISSING
    batch_size: int = MISSING
    n_data: int = MISSING  # size of the training set drawn once from the dataset
    optimizer: Any = MISSING  # a partial optimiser: {_target_: torch.optim.Adam, _partial_: true, lr: ...}
    scheduler: Any = MISSING  # a partial LR scheduler stepped every step, or null
    grad_clip: float | None = MISSING  # max gradient norm, null for none
    ema_decay: float | None = MISSING  # sample with an exponential moving average of the weights; null for none
    log_every: int = MISSING  # steps between progress reports
    checkpoint_every: int | None = MISSING  # steps between checkpoints (also saved at the end); null: only at the end


@dataclass
class EvalConfig:
    n_samples: int = MISSING  # points generated for evaluation and saved to samples.npy
    snapshots: int = MISSING  # states of the reverse process kept for trajectory.png
    metrics: dict[str, Any] = field(default_factory=dict)  # name -> metric node


@dataclass
class RunConfig:
    dataset: Any = MISSING
    sde: Any = MISSING
    loss: Any = MISSING
    model: Any = MISSING
    sampler: Any = MISSING
    logger: Any = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = MISSING
    ckpt_path: str | None = MISSING  # checkpoint file, run directory or sweep directory to load instead of training
    resume: str | None = MISSING  # continue the unfinished training in this checkpoint file or run directory
    overwrite: bool = MISSING  # replace another run's outputs in the run directory instead of refusing
    device: str = MISSING  # auto | cpu | cuda | cuda:N
    threads: int | None = MISSING  # torch CPU threads; null keeps torch's default


ConfigStore.instance().store(name="run_schema", node=RunConfig)
