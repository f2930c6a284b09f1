"""Points of the user's own from a file: .npy (a 2-D array), or .csv / .tsv (numbers, with a header row of column
names when `header`)."""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path

import numpy as np

from diffusion_runner.data.finite import Finite, split_share
from diffusion_runner.errors import ConfigError

log = logging.getLogger(__name__)

DELIMITERS = {".csv": ",", ".tsv": "\t"}
CHUNK = 1 << 14  # rows parsed (or copied out of a memory-mapped .npy) at a time


class PointsFile(Finite):
    """The rows of `path` as points, `columns` chosen by name (a header row's) or by 0-based index (null: all).

    The rows are shuffled once with `split_seed`, and a share `test_share` of them is held out: the references of
    every metric, never trained on. With `standardize` each column is trained on as (x - mean) / std (the training
    rows' mean and std), and samples are mapped back, so samples.npy and every metric are in the file's units.
    The file is read into one float32 array that is shuffled and standardised in place; the two parts are views
    of it (no second full copy is held)."""

    def __init__(self, path: str, columns: list | None = None, header: bool = True, test_share: float = 0.1,
                 split_seed: int = 0, standardize: bool = True):
        file = Path(str(path)).expanduser()
        if not file.is_file():
            raise ConfigError(f"dataset.path: {file}: no such file")
        if file.suffix.lower() not in (*DELIMITERS, ".npy"):
            raise ConfigError(f"dataset.path: {file}: reads .npy, .csv or .tsv files, not '{file.suffix}'")
        rows, names = (_read_npy(file, columns) if file.suffix.lower() == ".npy" else
                       _read_text(file, columns, header, DELIMITERS[file.suffix.lower()]))
        _check_finite(rows, file, names, header and file.suffix.lower() != ".npy")
        n_test = split_share(len(rows), test_share, "dataset.test_share", str(file))
        np.random.default_rng(split_seed).shuffle(rows)  # in place, along the rows
        train = rows[n_test:]
        self.mean, self.scale = _moments(train) if standardize else (np.zeros(rows.shape[1]), np.ones(rows.shape[1]))
        flat = [names[i] for i in np.flatnonzero(self.scale == 0)]
        if flat:
            raise ConfigError(f"dataset.columns: {file}: column {flat[0]} is constant over the training rows")
        if standardize:
            rows -= self.mean.astype(np.float32)
            rows /= self.scale.astype(np.float32)
        super().__init__(train, rows[:n_test])
        self.columns = names
        log.info("%s: %d rows x %d columns (%s), %d held out", file, len(rows), rows.shape[1], ", ".join(names),
                 n_test)

    def to_model(self, x):
        return ((x - self.mean) / self.scale).astype(np.float32)

    def from_model(self, x):
        return (x * self.scale + self.mean).astype(np.float32)

    @property
    def log_jacobian(self) -> float:
        return float(-np.log(self.scale).sum())


def _column_indices(columns, names: list[str] | None, n_columns: int, file: Path) -> list[int]:
    """0-based indices of `columns` (names or indices; None: all), one line naming the column when one is not
    in the file."""
    if columns is None:
        return list(range(n_columns))
    if isinstance(columns, str | int):
        columns = [columns]
    out = []
    for column in columns:
        if isinstance(column, bool) or not isinstance(column, int | str):
            raise ConfigError(f"dataset.columns: {file}: expected column names or 0-based indices, got {column!r}")
        if isinstance(column, int):
            if not 0 <= column < n_columns:
                raise ConfigError(f"dataset.columns: {file}: no column {column} (it has {n_columns}: "
                                  f"0 .. {n_columns - 1})")
            out.append(column)
        elif names is None:
            raise ConfigError(f"dataset.columns: {file}: column '{column}' asked for by name, but the file has no "
                              f"header row of names (use 0-based indices)")
        elif column not in names:
            raise ConfigError(f"dataset.columns: {file}: no column '{column}' (it has {', '.join(names)})")
        else:
            out.append(names.index(column))
    if not out:
        raise ConfigError(f"dataset.columns: {file}: no column chosen")
    return out


def _read_text(file: Path, columns, header: bool, delimiter: str) -> tuple[np.ndarray, list[str]]:
    """The chosen columns as one float32 array, parsed CHUNK lines at a time into an array sized by a first pass
    that counts the lines (so no second full copy is ever held)."""
    with file.open() as f:
        first = f.readline()
        lines = sum(1 for _ in f) + (0 if header else 1)
    if not first.strip():
        raise ConfigError(f"dataset.path: {file}: the file is empty")
    fields = [field.strip().strip('"') for field in first.rstrip("\r\n").split(delimiter)]
    names = fields if header else None
    use = _column_indices(columns, names, len(fields), file)
    labels = [names[i] if names else str(i) for i in use]
    rows = np.empty((lines, len(use)), dtype=np.float32)
    filled, line = 0, 1 if header else 0
    with file.open() as f:
        if header:
            f.readline()
        while chunk := list(itertools.islice(f, CHUNK)):
            try:
                part = np.loadtxt(chunk, delimiter=delimiter, usecols=use, dtype=np.float32, ndmin=2, comments="#")
            except ValueError as e:
                raise ConfigError(_text_error(file, str(e), names, filled, line)) from e
            rows[filled:filled + len(part)] = part
            filled, line = filled + len(part), line + len(chunk)
    return rows[:filled], labels


def _text_error(file: Path, message: str, names: list[str] | None, rows_before: int, lines_before: int) -> str:
    """numpy's parse error in a chunk as one line naming the file, the column and the row (1-based data rows, as in
    the file after its header) with its line."""
    found = re.search(r"could not convert string '(.*)' to \w+ at row (\d+), column (\d+)", message)
    if found:
        value, row, column = found.group(1), int(found.group(2)), int(found.group(3)) - 1
        name = f"'{names[column]}'" if names and column < len(names) else str(column)
        return (f"dataset.path: {file}: column {name}, row {rows_before + row + 1} (line {lines_before + row + 1}): "
                f"{value!r} is not a number")
    short = re.search(r"at row (\d+) with (\d+) columns", message)
    if short:
        return (f"dataset.path: {file}: a row near row {rows_before + int(short.group(1))} has only "
                f"{short.group(2)} columns")
    return f"dataset.path: {file}: {message.splitlines()[0]}"


def _read_npy(file: Path, columns) -> tuple[np.ndarray, list[str]]:
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except ValueError as e:
        raise ConfigError(f"dataset.path: {file}: not a numeric .npy array ({str(e).splitlines()[0]})") from e
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ConfigError(f"dataset.path: {file}: expected a 2-D numeric array (rows x columns), got shape "
                          f"{array.shape} of {array.dtype}")
    use = _column_indices(columns, None, array.shape[1], file)
    rows = np.empty((len(array), len(use)), dtype=np.float32)
    for start in range(0, len(array), CHUNK):
        rows[start:start + CHUNK] = array[start:start + CHUNK][:, use]
    return rows, [str(i) for i in use]


def _moments(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column's mean and standard deviation in float64, CHUNK rows at a time (no full-size temporary)."""
    mean = rows.mean(axis=0, dtype=np.float64)
    square = sum(((rows[i:i + CHUNK] - mean) ** 2).sum(axis=0) for i in range(0, len(rows), CHUNK))
    return mean, np.sqrt(square / len(rows))


def _check_finite(rows: np.ndarray, file: Path, names: list[str], header: bool) -> None:
    """One line naming the first non-finite value's column and row (1-based), CHUNK rows at a time."""
    for start in range(0, len(rows), CHUNK):
        bad = ~np.isfinite(rows[start:start + CHUNK])
        if bad.any():
            row, column = np.argwhere(bad)[0]
            name = f"'{names[column]}'" if header else names[column]
            raise ConfigError(f"dataset.path: {file}: column {name}, row {start + row + 1}: "
                              f"{rows[start + row, column]} is not finite")
