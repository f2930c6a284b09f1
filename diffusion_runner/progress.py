"""Progress bars (tqdm) for the job's long stages: training, sampling, evaluation.

A bar draws only where the job is interactive (standard error is a terminal and the job is not a multirun worker);
elsewhere `bar` yields None and the stage's log lines are all there is. While a bar is open, log lines go through
tqdm (tqdm.contrib.logging.logging_redirect_tqdm), so they do not tear it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm


def interactive() -> bool:
    """Standard error is a terminal and the job is not a multirun worker."""
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return sys.stderr.isatty() and not multirun


@contextmanager
def bar(total: int | None, desc: str, enabled: bool, unit: str = "it", initial: int = 0,
        leave: bool = False) -> Iterator[tqdm | None]:
    """A tqdm bar on standard error while the block runs (left on screen after it with `leave`), or None when not
    `enabled`."""
    if not enabled:
        yield None
        return
    with logging_redirect_tqdm(), tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                                       dynamic_ncols=True, leave=leave) as shown:
        yield shown


class SamplingBar:
    """A sampler callback (diffusion_runner.sampling) moving a bar through the sampler's n updates."""

    def __init__(self, shown: tqdm | None):
        self.shown = shown

    def __call__(self, info: dict) -> None:
        if self.shown is None:
            return
        if self.shown.total != info["n"]:
            self.shown.reset(total=info["n"])
        self.shown.update(info["i"] - self.shown.n)
