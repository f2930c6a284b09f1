"""The flow family's benchmarks, each a sweep of the real command line followed by one markdown table:

    python scripts/bench_flow.py likelihood [--seeds 0,1,2] [--out DIR]
    python scripts/bench_flow.py transport [--seeds 0,1,2] [--train-steps N] [--out DIR]
    python scripts/bench_flow.py bridge [--seeds 0] [--out DIR]

- likelihood: the flow (cfm) against the score family (VP SDE, DSM) on gmm8 from N(0, I), same MLP, steps and
  batch: kl_ode (both by the ODE of their model), nll, training seconds (one job at a time, so the times compare).
- transport: 8 Gaussians -> moons (`source=gmm8 dataset=moons`) with every matcher, once per seed, for the job's
  train.steps unless --train-steps: the transport metric's W2 (exact OT over its n points) of the map by Euler's
  method at 5, 10, 20 and 100 NFE, against the floor of two draws of moons, and W2 at 10 NFE over W2 at 100 NFE,
  paired by seed.
- bridge: `experiment=bridge` (moons <-> swiss roll both ways, the Schrodinger-bridge matcher): W2 against the
  floor by the bridge's SDE (the experiment's sampler), and by the flow's ODE from the same checkpoints.

Each sweep goes to DIR/<name>/ and is reused when its results.csv exists.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from diffusion_runner.flow.metrics import FEW_STEPS
from diffusion_runner.report import format_stat, rows_by

MATCHERS = ("cfm", "ot_cfm", "sb_cfm", "vp")


def sweep(out: Path, overrides: list[str], parallel: bool = False) -> Path:
    """Run `python -m diffusion_runner -m OVERRIDES` into `out` (basic launcher unless `parallel`: joblib)."""
    if (out / "results.csv").exists():
        print(f"reusing {out}", flush=True)
        return out
    launcher = ["hydra/launcher=joblib"] if parallel else []
    command = [sys.executable, "-m", "diffusion_runner", "-m", *overrides, *launcher, f"hydra.sweep.dir={out}"]
    print("$", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return out


def likelihood(args) -> None:
    # seed first: the basic launcher alternates the families, so a slow spell of the machine hits both alike
    out = sweep(args.out / "likelihood", [f"seed={args.seeds}", "family=score,flow", "~eval.metrics.emd"])
    print(f"\ngmm8 from N(0, I), seeds {args.seeds}: mean ± std over seeds\n")
    print("| family | kl_ode | nll | likelihood NFE | kl_kde | w2 (floor) | train s |")
    print("|---|---|---|---|---|---|---|")
    for family, row in rows_by(out, "family").items():
        s = row.stats
        print(f"| {family} | {format_stat(s['kl_ode'])} | {format_stat(s['nll'])} | {s['nll_nfe'][0]:.0f} | "
              f"{format_stat(s['kl_kde'])} | {format_stat(s['w2'])} ({s['w2_floor'][0]:.4f}) | "
              f"{format_stat(s['train_seconds'], 1)} |")


def transport(args) -> None:
    steps = [] if args.train_steps is None else [f"train.steps={args.train_steps}"]
    trained = sweep(args.out / "transport", ["family=flow", "source=gmm8", "dataset=moons", "~eval.metrics.likelihood",
                                             f"matcher={','.join(MATCHERS)}", f"seed={args.seeds}", *steps],
                    parallel=True)
    rows = rows_by(trained, "matcher")
    config = rows[MATCHERS[0]].jobs[0].config
    n = config["eval"]["metrics"]["transport"]["n"]
    floor = format_stat(rows[MATCHERS[0]].stats["w2_floor"])
    print(f"\n8 Gaussians -> moons, {config['train']['steps']} training steps, seeds {args.seeds}: W2 over n = {n} "
          f"points of the map by Euler's method at each NFE (the same source draws and references in a job), "
          f"mean ± std over seeds; W2 floor (two draws of moons) {floor}; and W2 at 10 NFE over W2 at 100 NFE, "
          f"paired by seed\n")
    columns = [*(f"w2_euler_{k}" for k in FEW_STEPS), "w2_map"]
    print("| matcher | " + " | ".join(f"W2 @ {k} NFE" for k in (*FEW_STEPS, 100)) + " | W2(10) / W2(100) "
          "| transport_ratio | straightness | train s |")
    print("|---|" + "---|" * (len(columns) + 4))
    for matcher in MATCHERS:
        row = rows[matcher]
        ten, full = row.by_seed("w2_euler_10"), row.by_seed("w2_map")
        ratios = [ten[seed] / full[seed] for seed in sorted(ten.keys() & full.keys())]
        s = row.stats
        print(f"| {matcher} | " + " | ".join(format_stat(s[c]) for c in columns)
              + f" | {sum(ratios) / len(ratios):.3f} (max {max(ratios):.3f}) | {format_stat(s['transport_ratio'], 3)} "
              f"| {format_stat(s['straightness'], 3)} | {format_stat(s['train_seconds'], 0)} |")


def bridge(args) -> None:
    sde = sweep(args.out / "bridge" / "sde", ["experiment=bridge", f"seed={args.seeds}"], parallel=True)
    ode = sweep(args.out / "bridge" / "ode", ["experiment=bridge", f"seed={args.seeds}", f"ckpt_path={sde}",
                                             "sampler=flow_ode", "~eval.metrics.transport"])
    print(f"\nmoons <-> swiss roll (matcher=sb_cfm), seeds {args.seeds}; figures: {sde}/*/paths.png\n")
    print("| direction | W2 by the SDE (100 steps, the default) | W2 by the ODE (heun 50) | W2 floor "
          "| transport_ratio |")
    print("|---|---|---|---|---|")
    by_ode = rows_by(ode, "+row")
    for direction, row in rows_by(sde, "+row").items():
        s = row.stats
        print(f"| {direction} | {format_stat(s['w2'])} | {format_stat(by_ode[direction].stats['w2'])} | "
              f"{format_stat(s['w2_floor'])} | {format_stat(s['transport_ratio'], 3)} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", choices=["likelihood", "transport", "bridge"])
    parser.add_argument("--out", type=Path, default=Path(f"outputs/sweeps/flow/{time.strftime('%Y%m%d-%H%M%S')}"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--train-steps", type=int, help="transport's training steps (default: the job's)")
    args = parser.parse_args()
    {"likelihood": likelihood, "transport": transport, "bridge": bridge}[args.bench](args)


if __name__ == "__main__":
    main()
