"""The wheel, installed non-editable into a new virtual environment, runs a job from outside the checkout."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installed_non_editable_runs_a_job_outside_the_checkout(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("diffusion_runner-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "diffusion_runner").rglob("__init__.py")}
    assert all(f"{package}/__init__.py" in names for package in packages), sorted(packages)
    assert "diffusion_runner/conf/config.yaml" in names and "diffusion_runner/conf/sampler/ddim.yaml" in names
    # The dependencies come from this interpreter's site-packages; the project only from the wheel.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin/python"
    subprocess.run([python, "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([python, "-c", "import diffusion_runner; print(diffusion_runner.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    out = elsewhere / "job"
    proc = subprocess.run([python, "-m", "diffusion_runner", *TINY, f"hydra.run.dir={out}"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["status"] == "ok"
