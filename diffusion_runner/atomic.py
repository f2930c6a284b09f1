"""Atomic output files: each is written under a temporary name in its own directory, flushed to disk, then renamed
over the final name, so neither a reader nor a crash (a kill, a full disk) ever sees a partial file there; on a
failure the temporary file is removed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that infer a format from it still work); when
    the block ends without an error, fsync it and rename it to `path`; otherwise remove it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    tmp.unlink(missing_ok=True)  # a file (or a link to one) left under that name is never written through
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
