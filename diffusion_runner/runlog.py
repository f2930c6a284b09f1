"""The job's log file, run.log in its run directory (conf/hydra/job_logging/job.yaml).

Hydra configures the log before the job runs; `RunLog` holds the records until the job starts in its directory
(`start`), so a job refused there, or failing before it starts, leaves the directory as it was.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("diffusion_runner")


class RunLog(logging.FileHandler):
    """A FileHandler that opens its file only at `start()`: records before that are held, then written in order;
    a job that never starts drops them (they also went to the terminal)."""

    def __init__(self, filename: str, mode: str = "a", encoding: str | None = None):
        super().__init__(filename, mode, encoding, delay=True)
        self.held: list[logging.LogRecord] | None = []

    def emit(self, record: logging.LogRecord) -> None:
        if self.held is not None:
            self.held.append(record)
        else:
            super().emit(record)

    def _open(self):
        """Append to the file, never through a symbolic link (a shared directory's run.log could point anywhere)."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        return open(fd, self.mode, encoding=self.encoding, errors=self.errors)

    def open_file(self) -> None:
        """Open the file now (an OSError if it cannot be), then write the records held so far."""
        self.stream = self.stream or self._open()
        held, self.held = self.held or [], None
        for record in held:
            super().emit(record)


def start() -> None:
    """The job starts in its directory: its log file opens."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, RunLog):
            handler.open_file()


def path() -> str:
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    return files[0] if files else "the job's log"


def to_file(level: int, message: str, exc_info: BaseException | None = None) -> None:
    """Write a record to the job's log file (run.log) only, not to the terminal."""
    record = log.makeRecord(log.name, level, __file__, 0, message, (), (type(exc_info), exc_info,
                            exc_info.__traceback__) if exc_info else None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def failure(message: str, exc: BaseException, multirun: bool) -> None:
    """The one-line message and the traceback into run.log; in a sweep the line also on the terminal (a single run
    prints it as it exits)."""
    if multirun:
        log.error(message)
        to_file(logging.ERROR, "traceback", exc)
    else:
        to_file(logging.ERROR, message, exc)
