"""Run an experiment's sweep (or read one already run) and print its table per configuration, with each model's
parameter count: the backbone x loss table and the conditional-generation table of docs/RESULTS.md.

    python scripts/bench_models.py backbones [--out DIR]     # experiment=backbones: model x loss, 3 seeds
    python scripts/bench_models.py conditional [--out DIR]   # experiment=conditional: learned vs exact, w in {0,1,3}
    python scripts/bench_models.py vae [--out DIR]           # experiment=vae: relaxed / straight-through x annealing
    python scripts/bench_models.py chain [--out DIR]         # experiment=chain: the chain against the VP SDE

The sweep is the real command line, `python -m diffusion_runner -m experiment=NAME hydra.sweep.dir=DIR` (DIR
defaults to outputs/sweeps/NAME/final); a DIR holding results.csv is read, not re-run. Each cell is the mean ± std
over seeds (the sweep report's statistics); train steps/s is as measured inside the sweep, two jobs at a time on
one torch thread each.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from diffusion_runner.build import build
from diffusion_runner.report import format_stat, load_jobs, summarise

CONF = Path(__file__).resolve().parents[1] / "diffusion_runner" / "conf"
COLUMNS = {
    "backbones": ["kl_kde", "kl_ode", "chamfer", "emd", "strays", "radius_ratio", "train_steps_per_s"],
    "conditional": ["on_mode", "kl_kde", "kl_kde_floor", "kl_ode", "chamfer"],
    "vae": ["kl_exact", "kl_elbo", "purity", "purity_min", "categories_used", "kl_kde", "train_seconds"],
    "chain": ["kl_elbo", "kl_elbo_consistency", "kl_ode", "elbo_prior", "elbo_reconstruction", "elbo_denoising",
              "kl_kde", "chamfer", "sample_seconds"],
}


def parameters(experiment: str, overrides: list[str]) -> int:
    """The model's parameter count, built from the project's own configs: the experiment and the job's choices of
    config groups (`model=resmlp`); nothing stored in the sweep directory is built."""
    choices = [o for o in overrides if (CONF / o.lstrip("+").split("=")[0] / f"{o.split('=')[-1]}.yaml").is_file()]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}", *choices])
    return sum(p.numel() for p in build(cfg).model.parameters())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("experiment", choices=sorted(COLUMNS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    sweep = args.out or Path("outputs/sweeps") / args.experiment / "final"
    if (sweep / "results.csv").exists():
        print(f"reusing {sweep}")
    else:
        command = [sys.executable, "-m", "diffusion_runner", "-m", f"experiment={args.experiment}",
                   f"hydra.sweep.dir={sweep}"]
        print("$", " ".join(command[1:]), flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        print(f"  {time.perf_counter() - start:.0f} s wall", flush=True)
    jobs, _ = load_jobs(sweep)
    columns = COLUMNS[args.experiment]
    print(f"\n| configuration | parameters | jobs ok | {' | '.join(columns)} |\n|" + "---|" * (len(columns) + 3))
    for row in summarise(jobs):
        cells = [format_stat(row.stats.get(m), 1 if m.endswith("_per_s") else 4) for m in columns]
        count = parameters(args.experiment, row.jobs[0].overrides)
        print(f"| `{row.key}` | {count:,} | {row.count('ok')} / {len(row.jobs)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
