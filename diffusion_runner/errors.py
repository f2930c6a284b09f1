"""Errors the runner reports as one line instead of a traceback."""

from __future__ import annotations


def one_line(e: BaseException) -> str:
    """'Type: first line of the message', for messages that must stay on one line."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"


class ConfigError(ValueError):
    """A config value, or a combination of choices, that cannot run. The message names the key."""


class Interrupted(BaseException):
    """The job was asked to stop (SIGINT or SIGTERM). Like KeyboardInterrupt, not an Exception, so no `except
    Exception` on the way up mistakes it for a failure. `step`: the training step saved, if training had begun."""

    def __init__(self, message: str, step: int | None = None, signal: int | None = None):
        super().__init__(message)
        self.step, self.signal = step, signal


class SchedulerEnded(RuntimeError):
    """A sweep's job that its cluster scheduler ended (Slurm's SIGTERM: scancel, a time limit): a failure of that
    job, recorded as one, while the sweep's other jobs go on."""
