"""The default job against the oracle: wall time of `python -m diffusion_runner` (no overrides) and its
kl_kde next to `model=oracle`'s under the same sampler and evaluation.

    python scripts/bench_default_job.py [extra overrides applied to both jobs ...]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KEYS = ("kl_kde", "kl_kde_floor", "chamfer", "emd", "nll", "kl_ode", "nfe", "train_seconds", "sample_seconds",
        "eval_seconds")


def job(out: Path, *overrides: str) -> tuple[dict, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "diffusion_runner", *overrides, f"hydra.run.dir={out}"], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text()), time.perf_counter() - start


def main():
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        learned, learned_wall = job(Path(tmp) / "learned", *extra)
        oracle, oracle_wall = job(Path(tmp) / "oracle", "model=oracle", *extra)
    args = " ".join(extra)
    print(f"{'':28s}{'learned':>12s}{'oracle':>12s}")
    print(f"{'command wall seconds':28s}{learned_wall:12.1f}{oracle_wall:12.1f}")
    for key in KEYS:
        print(f"{key:28s}{learned.get(key, float('nan')):12.4f}{oracle.get(key, float('nan')):12.4f}")
    ratio = learned["kl_kde"] / oracle["kl_kde"]
    print(f"kl_kde learned / oracle = {ratio:.3f}  (python -m diffusion_runner {args} vs ... model=oracle {args})")


if __name__ == "__main__":
    main()
