"""dataset=file: points of the user's own from .npy, .csv and .tsv files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from diffusion_runner.data import PointsFile, points_file
from diffusion_runner.errors import ConfigError
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from tests.conftest import TINY, compose_config
from tests.test_cli import cli


def rows(n: int = 400) -> np.ndarray:
    """n distinct rows: an index, two coordinates of a ring of 4 Gaussians, and a constant-free fourth column."""
    rng = np.random.default_rng(0)
    angle = rng.integers(4, size=n) * np.pi / 2
    xy = 3 * np.stack([np.cos(angle), np.sin(angle)], 1) + 0.3 * rng.standard_normal((n, 2))
    return np.column_stack([np.arange(n), xy, rng.standard_normal(n)])


def write(path, table: np.ndarray, names=("i", "x", "y", "w")):
    if path.suffix == ".npy":
        np.save(path, table)
    else:
        sep = "," if path.suffix == ".csv" else "\t"
        np.savetxt(path, table, delimiter=sep, header=sep.join(names), comments="", fmt="%.9g")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_columns_by_name_and_by_index_give_the_same_points(tmp_path, suffix):
    path = write(tmp_path / f"points{suffix}", rows())
    by_name = PointsFile(str(path), columns=["x", "w"], standardize=False)
    by_index = PointsFile(str(path), columns=[1, 3], standardize=False)
    assert by_name.columns == ["x", "w"] and by_name.dim == 2
    assert np.array_equal(by_name.train, by_index.train) and np.array_equal(by_name.held_out, by_index.held_out)
    table = rows()
    assert np.allclose(np.sort(np.concatenate([by_name.train, by_name.held_out])[:, 0]), np.sort(table[:, 1]),
                       atol=1e-6)


def test_npy_columns_by_index_and_a_name_is_refused(tmp_path):
    path = write(tmp_path / "points.npy", rows())
    assert PointsFile(str(path), columns=[1, 2]).dim == 2
    with pytest.raises(ConfigError, match="has no header row of names"):
        PointsFile(str(path), columns=["x"])


def test_references_are_the_held_out_rows_never_the_training_rows(tmp_path):
    path = write(tmp_path / "points.csv", rows())
    data = PointsFile(str(path), test_share=0.25)
    train = set(data.from_model(data.train)[:, 0].round().astype(int))
    held_out = set(data.from_model(data.held_out)[:, 0].round().astype(int))
    assert len(held_out) == 100 and len(train) == 300 and not train & held_out
    references = data.sample(100, np.random.default_rng(0))[:, 0].round().astype(int)
    assert set(references) == held_out  # each held-out row once, in data units
    assert abs(data.train.mean()) < 1e-5 and data.std == pytest.approx(1.0, abs=1e-4)  # trained standardised


def points_job(tmp_path, name, path, *overrides):
    cfg = compose_config(["dataset=file", f"dataset.path={path}", "dataset.columns=[x,y]", *TINY,
                          "train.steps=50", *overrides])
    out = tmp_path / name
    out.mkdir()
    results = {}
    run(cfg, out, NoLogger(), results)
    return np.load(out / "samples.npy"), results


def test_samples_and_metrics_are_in_the_files_units(tmp_path):
    table = rows()
    small, results = points_job(tmp_path, "small", write(tmp_path / "small.csv", table))
    scaled = table.copy()
    scaled[:, 1:3] *= 1000
    big, big_results = points_job(tmp_path, "big", write(tmp_path / "big.csv", scaled))
    assert np.abs(big).max() > 1000  # the file's units, not the standardised ones
    assert np.allclose(big, 1000 * small, rtol=1e-3, atol=1e-2)
    assert big_results["emd"] == pytest.approx(1000 * results["emd"], rel=1e-3)
    assert big_results["nll"] == pytest.approx(results["nll"] + 2 * np.log(1000), rel=1e-3)  # log |det| of the scale
    json.dumps(results)


BAD = {
    "missing file": (None, ["dataset.path=nowhere.csv"], "nowhere.csv: no such file"),
    "missing column": ("i,x,y\n1,2,3\n", ["dataset.columns=[x,z]"], "no column 'z' (it has i, x, y)"),
    "non-numeric": ("i,x,y\n" + "1,2,3\n" * 5 + "1,abc,3\n", [], "column 'x', row 6 (line 7): 'abc' is not a number"),
    "non-finite": ("i,x,y\n" + "1,2,3\n" * 3 + "1,2,inf\n", [], "column 'y', row 4: inf is not finite"),
    "too few rows": ("i,x,y\n1,2,3\n2,3,4\n", [], "2 rows are too few to hold out a share of 0.1"),
}


@pytest.mark.parametrize("case", BAD)
def test_each_bad_file_is_one_line_naming_the_file_and_leaves_no_success(tmp_path, case):
    text, overrides, message = BAD[case]
    if text is not None:
        (tmp_path / "bad.csv").write_text(text)
    out = tmp_path / "job"
    proc = cli("dataset=file", "dataset.path=bad.csv", *overrides, "train.steps=10", f"hydra.run.dir={out}",
               cwd=tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("config error: dataset.") and message in line and ".csv" in line, line
    assert json.loads((out / "metrics.json").read_text())["status"] == "failed"
    assert not (out / "samples.npy").exists() and not (out / "checkpoint.pt").exists()


def test_a_file_read_in_chunks_gives_the_same_rows_and_the_right_row_in_an_error(tmp_path, monkeypatch):
    path = write(tmp_path / "points.csv", rows(50))
    whole = PointsFile(str(path), standardize=False, test_share=0.2)
    monkeypatch.setattr(points_file, "CHUNK", 4)
    chunked = PointsFile(str(path), standardize=False, test_share=0.2)
    assert np.array_equal(whole.train, chunked.train) and np.array_equal(whole.held_out, chunked.held_out)
    lines = path.read_text().splitlines()
    lines[38] = lines[38].replace(lines[38].split(",")[2], "x7")  # data row 38, line 39: column y
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"column 'y', row 38 \(line 39\): 'x7' is not a number"):
        PointsFile(str(path))
    lines[38], lines[45] = ",".join(lines[45].split(",")), lines[45].replace(lines[45].split(",")[3], "nan")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"column 'w', row 45: nan is not finite"):
        PointsFile(str(path))
