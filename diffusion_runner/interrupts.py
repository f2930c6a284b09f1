"""SIGINT (Ctrl-C) and SIGTERM (kill, Slurm's scancel and time limit) during a job.

Inside `deferred()` (the training loop) the first signal is only recorded: the loop polls `requested()` after each
step, saves a checkpoint and raises Interrupted. Outside it, or at a second signal, Interrupted is raised at once.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from diffusion_runner.errors import Interrupted

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def scheduler_job() -> str | None:
    """The Slurm job this process runs in (`123_4` for a task of an array, as squeue names it), or None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


class StopSignals:
    """A context manager that installs the handlers (main thread only; elsewhere signals keep their handlers)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._deferring = False
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def requested(self) -> bool:
        return self.signal is not None

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring = True
        try:
            if self.signal is not None:
                raise Interrupted(f"{signal.Signals(self.signal).name} before training", signal=self.signal)
            yield
        finally:
            self._deferring = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        first, self.signal = self.signal is None, signum
        name = signal.Signals(signum).name
        if self._deferring and first:
            log.warning("%s: finishing this training step and saving a checkpoint (send it again to stop at once)",
                        name)
            return
        raise Interrupted(name, signal=signum)
