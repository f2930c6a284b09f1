"""Sweep reports: one row per configuration (the overrides that vary between jobs, the seed aside) with the mean
and standard deviation over seeds of every metric, the comparison with the oracle row that shares its dataset,
SDE, sampler and evaluation, and the number of jobs done, failed, interrupted and missing; when some did not
finish, the command that finishes the sweep.

Two comparisons with the oracle: the ratio of means, and the excess paired by seed, mean and std over seeds of
(metric - oracle's metric at the same seed). Jobs with the same seed draw the same evaluation references, so
the paired excess cancels most of the evaluation noise that the spread of either row contains.

Nothing a sweep directory stores is run: job configs are read as data (diffusion_runner.stored), and the ground
truth of the density figure is built only from the project's own dataset classes. A job whose stored dataset is
not one of them, or whose metrics.json holds a value of the wrong type or range, is counted as failed and named.

Written into the sweep directory: results.md, results.csv, results_bars.png (metrics with error bars) and
results_densities.png (ground truth and one generated density per configuration). Hydra calls SweepReport at
the end of every multirun; `python -m diffusion_runner.report SWEEP_DIR` rebuilds the same files from any
sweep directory, finished or not.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from matplotlib.figure import Figure
from omegaconf import DictConfig

from diffusion_runner import data, plots, rundir, stored
from diffusion_runner.atomic import atomic_path, write_text
from diffusion_runner.errors import one_line
from diffusion_runner.family import Family, Model
from diffusion_runner.images import figures as image_figures
from diffusion_runner.metrics import Metric, Output

log = logging.getLogger(__name__)

TIMINGS = ("train_seconds", "sample_seconds", "eval_seconds")
def shared_sections(config: dict[str, Any]) -> tuple[str, ...]:
    """The sections that must agree for an oracle row to be a configuration's reference: all but the model and how
    it was trained (for the score family: dataset, sde, sampler and evaluation)."""
    family = stored.lookup((config.get("family") or {}).get("_target_"), stored.subclasses(Family))
    prior = () if family is None else tuple(s for s in family.model_sections if s != "model")
    sampling = ("sampler",) if family is None else family.sampling_sections
    return ("dataset", "family", *prior, *sampling, "eval")


@dataclass
class Job:
    path: Path
    overrides: list[str]
    config: dict[str, Any]
    metrics: dict[str, Any]
    dataset: data.Dataset | None = None  # built from the stored config's dataset node (for the density figure)

    @property
    def status(self) -> str:
        """ok | failed | interrupted | missing (no metrics.json: never started, unfinished, or its process was
        killed)."""
        return self.metrics.get("status", "missing")

    @property
    def is_oracle(self) -> bool:
        model = stored.lookup((self.config.get("model") or {}).get("_target_"), stored.subclasses(Model))
        return bool(model is not None and model.is_oracle)


@dataclass
class Row:
    key: str
    jobs: list[Job]
    stats: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # metric -> (mean, std, n)
    oracle: Row | None = None

    @property
    def is_oracle(self) -> bool:
        return any(j.is_oracle for j in self.jobs)

    @property
    def config(self) -> dict[str, Any]:
        """The composed config of the row's first job that started (never-started jobs have none)."""
        return next((j.config for j in self.jobs if j.config), {})

    def count(self, status: str) -> int:
        return sum(j.status == status for j in self.jobs)

    @property
    def not_ok(self) -> int:
        return sum(j.status != "ok" for j in self.jobs)

    def ratio(self, metric: str) -> float:
        if self.oracle is None or metric not in self.stats or metric not in self.oracle.stats:
            return math.nan
        return self.stats[metric][0] / self.oracle.stats[metric][0]

    def by_seed(self, metric: str) -> dict[int, float]:
        return {j.config["seed"]: j.metrics[metric] for j in self.jobs if j.status == "ok" and metric in j.metrics}

    def paired_excess(self, metric: str) -> tuple[float, float, int] | None:
        """(mean, std, n) over the seeds both rows finished of metric - oracle's metric; None without an oracle."""
        return None if self.oracle is None else self.excess_over(self.oracle, metric)

    def excess_over(self, other: Row, metric: str) -> tuple[float, float, int] | None:
        """(mean, std, n) of metric - other's metric over the seeds both rows finished; None if there are none."""
        mine, theirs = self.by_seed(metric), other.by_seed(metric)
        diffs = np.array([mine[s] - theirs[s] for s in sorted(mine.keys() & theirs.keys())])
        if not len(diffs):
            return None
        return float(diffs.mean()), float(diffs.std(ddof=1)) if len(diffs) > 1 else math.nan, len(diffs)


def sweep_hydra_config(sweep_dir: Path) -> dict[str, Any] | None:
    """The `hydra` section of the multirun.yaml Hydra saves at the start of a sweep, if there is one."""
    multirun = sweep_dir / "multirun.yaml"
    return yaml.safe_load(multirun.read_text())["hydra"] if multirun.exists() else None


def expected_jobs(hydra_cfg: dict[str, Any] | None) -> list[list[str]] | None:
    """The override list of every job the sweep launches, in job order, re-expanded from the sweep's Hydra config
    by Hydra's own basic sweeper; None for other sweepers or without the config."""
    if hydra_cfg is None or not hydra_cfg["sweeper"]["_target_"].endswith(".BasicSweeper"):
        return None
    params = [f"{k}={v}" for k, v in (hydra_cfg["sweeper"].get("params") or {}).items()]
    overrides = OverridesParser.create().parse_overrides(params + list(hydra_cfg["overrides"]["task"]))
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def load_jobs(sweep_dir: Path, hydra_cfg: dict[str, Any] | None = None) -> tuple[list[Job], list[Path]]:
    """(the sweep's jobs in job order, job directories that are not part of the sweep).

    Jobs are the directories holding .hydra/overrides.yaml. When the sweep's job list is known (expected_jobs of
    `hydra_cfg`, by default read from the sweep directory), a job that never started is listed as missing and a
    directory left by another sweep is set aside."""
    found = []
    for overrides in sweep_dir.glob("**/.hydra/overrides.yaml"):
        path = overrides.parent.parent
        try:
            listed, config = yaml.safe_load(overrides.read_text()) or [], yaml.safe_load(
                (path / ".hydra/config.yaml").read_text())
            if not isinstance(listed, list) or not isinstance(config, dict):
                raise ValueError("not a Hydra job record")
        except Exception as e:
            log.warning("%s: unreadable job record, set aside (%s)", path / ".hydra", one_line(e))
            continue
        found.append(Job(path, [str(o) for o in listed], config, rundir.read_metrics(path / rundir.METRICS)))
    datasets: dict[str, Any] = {}
    for job in found:
        read_dataset(job, datasets)
    found.sort(key=lambda j: (len(j.path.parts), int(j.path.name) if j.path.name.isdigit() else 0, str(j.path)))
    expected = expected_jobs(hydra_cfg or sweep_hydra_config(sweep_dir))
    if expected is None:
        return found, []
    by_overrides: dict[tuple[str, ...], list[Job]] = {}
    for job in found:  # a sweep may list one value twice: its jobs share their overrides
        by_overrides.setdefault(tuple(job.overrides), []).append(job)
    jobs = [(by_overrides.get(tuple(o)) or [None]).pop(0) or Job(sweep_dir / str(i), list(o), {}, {})
            for i, o in enumerate(expected)]
    return jobs, [j.path for left in by_overrides.values() for j in left]


def read_dataset(job: Job, built: dict[str, Any]) -> None:
    """Build the job's dataset from its stored config, only as one of the project's own datasets (the same node
    builds once, through `built`); a job whose dataset cannot be built so is counted as failed, named in one line."""
    node = job.config.get("dataset")
    key = json.dumps(node, sort_keys=True, default=str)
    if key not in built:
        try:
            built[key] = stored.build(node, data.constructors(), "dataset", "datasets")
        except stored.StoredConfigError as e:
            built[key] = e
    if isinstance(built[key], stored.StoredConfigError):
        error = f"{job.path / '.hydra/config.yaml'}: {built[key]}"
        log.warning("%s: not read (nothing in a stored config is run)", error)
        job.metrics = {**job.metrics, "status": "failed", "error": error}
    else:
        job.dataset = built[key]


def _is_seed(override: str) -> bool:
    return override.split("=")[0].lstrip("+~") == "seed"


def summarise(jobs: list[Job]) -> list[Row]:
    """Group jobs by configuration (their overrides minus the seed and minus those every job shares), in
    first-seen order; statistics over the jobs that finished."""
    common = set.intersection(*(set(j.overrides) for j in jobs))
    rows: dict[str, Row] = {}
    for job in jobs:
        key = " ".join(o for o in job.overrides if o not in common and not _is_seed(o)) or "(all jobs)"
        rows.setdefault(key, Row(key, [])).jobs.append(job)
    for row in rows.values():
        done = [j.metrics for j in row.jobs if j.status == "ok"]
        names = sorted({k for m in done for k, v in m.items() if _number(v)})
        for name in names:
            values = np.array([m[name] for m in done if _number(m.get(name))], dtype=float)
            std = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            row.stats[name] = (float(values.mean()), std, len(values))
    oracles = [r for r in rows.values() if r.is_oracle and r.count("ok")]
    for row in rows.values():
        row.oracle = next((o for o in oracles if is_reference(o.config, row.config)), None)
    return list(rows.values())


def rows_by(sweep_dir: Path, key: str) -> dict[str, Row]:
    """The value of override `key` (e.g. "+row", "matcher") -> the Row of the sweep's jobs that set it to that value
    (statistics over their seeds), in first-seen order."""
    jobs, _ = load_jobs(sweep_dir)
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(next(o.split("=", 1)[1] for o in job.overrides if o.startswith(f"{key}=")), []).append(job)
    return {value: summarise(group)[0] for value, group in groups.items()}


def is_reference(oracle: dict[str, Any], config: dict[str, Any]) -> bool:
    """Whether an oracle job's config is the reference of a job's: the same shared sections (shared_sections), and
    every setting of the oracle's model (such as the chain's variance and schedule) the same in the job's model."""
    model, theirs = config.get("model") or {}, oracle.get("model") or {}
    return all(oracle.get(s) == config.get(s) for s in shared_sections(config)) and all(
        model.get(k) == v for k, v in theirs.items() if k != "_target_")


def _number(value: Any) -> bool:
    """A finite number (a tampered or hand-edited NaN or inf is never summarised as a value)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def format_stat(stat: tuple[float, float, int] | None, digits: int = 4) -> str:
    """'mean ± std' of a (mean, std, n) statistic; the mean alone when std is undefined; '' for none."""
    if stat is None:
        return ""
    mean, std, _ = stat
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell(row: Row, metric: str, digits: int) -> str:
    """The row's statistic of a metric, saying over how many jobs when some of its finished jobs lack a value."""
    stat, done = row.stats.get(metric), row.count("ok")
    text = format_stat(stat, digits)
    return f"{text} ({stat[2]} of {done} jobs)" if stat is not None and stat[2] < done else text


def _ratio(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.3f}"


def declared_outputs(rows: list[Row]) -> dict[str, Output]:
    """name -> Output as the sweep's metrics declare them (diffusion_runner.metrics.Metric.outputs), in config order,
    for the names some row has numbers for."""
    found: dict[str, Output] = {}
    for row in rows:
        for node in ((row.config.get("eval") or {}).get("metrics") or {}).values():
            metric = stored.lookup(node.get("_target_") if isinstance(node, dict) else None, stored.subclasses(Metric))
            if metric is None:  # not one of this version's metrics: its numbers stay in the csv, undeclared
                continue
            for name, output in metric.outputs.items():
                found.setdefault(name, output)
    present = {m for r in rows for m in r.stats}
    return {name: output for name, output in found.items() if name in present}


def _columns(outputs: dict[str, Output]) -> list[str]:
    """Each score followed by its floor, if it has one."""
    columns = []
    for name, output in outputs.items():
        if output.better:
            columns += [name, *[f for f, o in outputs.items() if o.floor_of == name]]
    return columns


def markdown(rows: list[Row], jobs: list[Job], sweep_dir: Path, ignored: list[Path], command: str,
             finish: str = "") -> str:
    """Per configuration: counts, every declared score (and its floor), nfe and timings; then each score compared
    with the oracle row; then every job."""
    outputs = declared_outputs(rows)
    has = lambda m: any(m in r.stats for r in rows)  # noqa: E731
    columns = _columns(outputs) + [m for m in ("nfe", *TIMINGS) if has(m)]
    out = io.StringIO()
    out.write(f"# Sweep results\n\nSweep directory: `{sweep_dir}`\n\n")
    if command:
        out.write(f"Command: `{command}`\n\n")
    out.write("Each cell is the mean ± standard deviation over the configuration's finished jobs (seeds).\n\n")
    if finish and any(r.not_ok for r in rows):
        out.write(f"Not every job finished ok. To finish the sweep (finished jobs are skipped, the others continue "
                  f"from their checkpoints):\n\n    {finish}\n\n")
    out.write("| configuration | jobs ok / failed / interrupted / missing | " + " | ".join(columns) + " |\n|"
              + "---|" * (len(columns) + 2) + "\n")
    for r in rows:
        cells = [_cell(r, m, 1 if m in TIMINGS else 4) for m in columns]
        out.write(f"| `{r.key}` | {r.count('ok')} / {r.count('failed')} / {r.count('interrupted')} / "
                  f"{r.count('missing')} | "
                  + " | ".join(cells) + " |\n")
    compared = [m for m, o in outputs.items() if o.vs_oracle]
    if compared and any(r.oracle for r in rows):
        out.write("\n## Against the oracle\n\n`− oracle (paired)` is the mean ± std over seeds of the difference to "
                  "the oracle row with the same dataset, family, prior (the score family's SDE), sampler, "
                  "evaluation and the oracle's own model settings, at the same seed (same evaluation references); "
                  "`/ oracle` is the ratio of means.\n\n")
        head = ["configuration", "oracle row"]
        for m in compared:
            head += [f"{m} − oracle (paired)"] + ([f"{m} / oracle"] if outputs[m].ratio else [])
        out.write("| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n")
        for r in rows:
            if r.oracle is None or r.oracle is r:
                continue
            cells = [f"`{r.key}`", f"`{r.oracle.key}`"]
            for m in compared:
                cells += [format_stat(r.paired_excess(m))] + ([_ratio(r.ratio(m))] if outputs[m].ratio else [])
            out.write("| " + " | ".join(cells) + " |\n")
    first = next(iter(_columns(outputs)), None)
    out.write(f"\n## Jobs\n\n| job | overrides | status | {first or ''} | wall s | error |\n"
              "|---|---|---|---|---|---|\n")
    for j in jobs:
        value = j.metrics.get(first) if first else None
        wall = j.metrics.get("wall_seconds")
        out.write(f"| `{j.path.relative_to(sweep_dir)}` | `{' '.join(j.overrides)}` | {j.status} | "
                  f"{'' if value is None else f'{value:.4f}'} | {'' if wall is None else f'{wall:.1f}'} | "
                  f"{str(j.metrics.get('error', '')).replace('|', '/')} |\n")
    if ignored:
        out.write("\nDirectories set aside (not jobs of this sweep): "
                  + ", ".join(f"`{p.relative_to(sweep_dir)}`" for p in ignored) + "\n")
    return out.getvalue()


def command_line(hydra_cfg: dict[str, Any] | None) -> str:
    """The sweep's command line, from its Hydra config; empty if unknown."""
    task = (hydra_cfg or {}).get("overrides", {}).get("task") or []
    return " ".join(["python -m diffusion_runner -m", *task]) if hydra_cfg else ""


def finish_command(hydra_cfg: dict[str, Any] | None, sweep_dir: Path) -> str:
    """The command that re-runs the sweep into `sweep_dir`: jobs that finished ok are skipped, the others continue
    from their checkpoints (diffusion_runner.rundir). Empty if the sweep's Hydra config is unknown."""
    if not hydra_cfg:
        return ""
    overrides = hydra_cfg.get("overrides", {})
    launcher = [o for o in overrides.get("hydra") or []
                if not o.startswith(("hydra.sweep.dir=", "hydra.mode="))]
    return shlex.join(["python", "-m", "diffusion_runner", "-m", *launcher, *(overrides.get("task") or []),
                       f"hydra.sweep.dir={sweep_dir}"])


def write_csv(rows: list[Row], path: Path) -> None:
    """Every number's mean, std and n; each declared score's excess over the oracle (and ratio, where declared)."""
    metrics = sorted({m for r in rows for m in r.stats})
    outputs = declared_outputs(rows)
    compared = [m for m, o in outputs.items() if o.vs_oracle]
    ratios = [m for m in compared if outputs[m].ratio]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["configuration", "jobs_ok", "jobs_failed", "jobs_interrupted", "jobs_missing", "oracle",
                         *[f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")],
                         *[f"{m}_ratio_to_oracle" for m in ratios],
                         *[f"{m}_excess_over_oracle_{s}" for m in compared for s in ("mean", "std", "n")]])
        for r in rows:
            stats = [v for m in metrics for v in (r.stats.get(m) or ("", "", 0))]
            excess = [v for m in compared for v in (r.paired_excess(m) or ("", "", 0))]
            writer.writerow([r.key, r.count("ok"), r.count("failed"), r.count("interrupted"), r.count("missing"),
                             r.oracle.key if r.oracle else "", *stats, *[r.ratio(m) for m in ratios], *excess])


def bar_chart(rows: list[Row], path: Path) -> None:
    """One panel per declared score: mean with a ±1 std error bar per configuration, oracle rows in grey, its floor
    dashed; then the first oracle-compared score's excess over the oracle paired by seed, when there is an oracle."""
    outputs = declared_outputs(rows)
    metrics = [m for m, o in outputs.items() if o.better]
    shown = [r for r in rows if r.stats]
    if not metrics or not shown:
        return
    paired_metric = next((m for m in metrics if outputs[m].vs_oracle), None)
    paired = [None if r.is_oracle or paired_metric is None else r.paired_excess(paired_metric) for r in shown]
    n_panels = len(metrics) + any(p is not None for p in paired)
    fig = Figure(figsize=(max(6.0, 0.9 * len(shown) + 2), 2.8 * n_panels))
    axes = np.atleast_1d(fig.subplots(n_panels, 1, sharex=True))
    x = np.arange(len(shown))
    if n_panels > len(metrics):
        ax = axes[-1]
        ax.bar(x, [p[0] if p else np.nan for p in paired], yerr=[np.nan_to_num(p[1]) if p else 0 for p in paired],
               capsize=4, color="tab:orange")
        ax.axhline(0, color="k", lw=1)
        ax.set_ylabel(f"{paired_metric} − oracle\n(paired by seed)")
    for ax, m in zip(axes, metrics, strict=False):
        means = [r.stats[m][0] if m in r.stats else np.nan for r in shown]
        stds = [np.nan_to_num(r.stats[m][1]) if m in r.stats else 0 for r in shown]
        colors = ["tab:gray" if r.is_oracle else "tab:blue" for r in shown]
        ax.bar(x, means, yerr=stds, capsize=4, color=colors)
        for floor_name in (f for f, o in outputs.items() if o.floor_of == m):
            floor = np.nanmean([r.stats[floor_name][0] for r in shown if floor_name in r.stats])
            ax.axhline(floor, ls="--", color="k", lw=1, label=f"{floor_name} {floor:.3f}")
            ax.legend(loc="lower right")
        lo = np.nanmin(np.array(means) - np.array(stds))
        if lo > 0:
            ax.set_ylim(bottom=max(0.0, lo - 0.15 * (np.nanmax(means) - lo + 1e-9)))
        ax.set_ylabel(m)
    axes[-1].set_xticks(x, [r.key.replace(" ", "\n") for r in shown], fontsize=8, rotation=30, ha="right")
    fig.suptitle("mean ± std over seeds (grey: oracle)")
    plots.save(fig, path)


def density_grid(rows: list[Row], path: Path) -> None:
    """For each dataset of the sweep: its ground truth, then the generated density of each configuration's first
    finished job, on that dataset's axes (for images, a grid of the first images)."""
    panels: list[tuple[str, np.ndarray, plots.Limits]] = []
    truths: dict[str, plots.Limits] = {}
    for row in rows:
        job = next((j for j in row.jobs if j.status == "ok" and (j.path / "samples.npy").exists()), None)
        if job is None:
            continue
        try:
            samples = np.load(job.path / "samples.npy")  # allow_pickle=False: an object array is refused
        except (OSError, ValueError) as e:
            log.warning("%s: not drawn (%s)", job.path / "samples.npy", one_line(e))
            continue
        dataset_key = json.dumps(job.config["dataset"], sort_keys=True)
        if dataset_key not in truths:
            truth = job.dataset.sample(len(samples), np.random.default_rng(0))
            truths[dataset_key] = plots.plot_limits(truth.reshape(len(truth), -1))
            name = job.config["dataset"]["_target_"].rsplit(".", 1)[-1]
            panels.append((f"ground truth\n({name})", truth, truths[dataset_key]))
        panels.append((f"{row.key}\n(seed {job.config['seed']})", samples, truths[dataset_key]))
    if not panels:
        return
    cols = min(4, len(panels))
    n_rows = math.ceil(len(panels) / cols)
    fig = Figure(figsize=(3.2 * cols, 3.4 * n_rows))
    axes = np.atleast_1d(fig.subplots(n_rows, cols)).ravel()
    for ax, (title, points, lims) in zip(axes, panels, strict=False):
        if points.ndim == 4:  # images (n, C, H, W): the first 36 in a grid
            image_figures.show(ax, image_figures.tile(points[:36], 6), title)
        else:
            plots.density_panel(ax, points, lims, title)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    plots.save(fig, path)


def write_report(sweep_dir: Path) -> list[Row]:
    """Build every report file in the sweep directory; returns the rows."""
    sweep_dir = Path(sweep_dir)
    hydra_cfg = sweep_hydra_config(sweep_dir)
    jobs, ignored = load_jobs(sweep_dir, hydra_cfg)
    if not jobs:
        raise FileNotFoundError(f"no job directories (with .hydra/overrides.yaml) under {sweep_dir}")
    if ignored:
        log.warning("set aside %d directories that are not jobs of this sweep: %s", len(ignored),
                    ", ".join(str(p) for p in ignored))
    rows = summarise(jobs)
    write_text(sweep_dir / "results.md", markdown(rows, jobs, sweep_dir, ignored, command_line(hydra_cfg),
                                                  finish_command(hydra_cfg, sweep_dir)))
    write_csv(rows, sweep_dir / "results.csv")
    bar_chart(rows, sweep_dir / "results_bars.png")
    density_grid(rows, sweep_dir / "results_densities.png")
    failed = sum(j.status != "ok" for j in jobs)
    log.info("sweep report: %d configurations, %d jobs (%d not ok) -> %s", len(rows), len(jobs), failed,
             sweep_dir / "results.md")
    return rows


def log_report(config: DictConfig, sweep_dir: Path) -> None:
    """Hand the report to the sweep's experiment logger as one more run in the sweep's group, named `report`: the
    results table (results.csv) as a table and the report's figures. With logger=none it does nothing; a logger
    that fails is a warning, since the report files are written already."""
    if config.get("logger") is None:
        return
    try:
        logger = instantiate(config.logger, _partial_=True)(run_config={"sweep_dir": str(sweep_dir)},
                                                             out_dir=sweep_dir, job_name="report",
                                                             sweep_dir=sweep_dir)
    except Exception:
        log.exception("the sweep report was not logged")
        return
    failed = True
    try:
        with (sweep_dir / "results.csv").open(newline="") as f:
            header, *rows = list(csv.reader(f))
        logger.log_table("results", header, rows)
        logger.log_images({p.stem: p for p in (sweep_dir / "results_bars.png", sweep_dir / "results_densities.png")
                           if p.exists()})
        failed = False
    except Exception:
        log.exception("the sweep report was not logged")
    finally:
        logger.finish(failed=failed)


class SweepReport(Callback):
    """Hydra callback: writes the sweep report when a multirun ends, then makes the command exit with status 1
    if any job did not finish ok (the report says which and why). At the start it clears the mark an interrupted
    job leaves, so a re-run of the sweep runs its jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        (Path(config.hydra.sweep.dir) / rundir.SWEEP_INTERRUPTED).unlink(missing_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra turns an exception in a callback into a warning; SystemExit is how this one makes the command fail.
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            rows = write_report(sweep_dir)
        except Exception as e:
            log.exception("sweep report failed")
            raise SystemExit(f"the sweep report failed ({e}); rebuild it with "
                             f"python -m diffusion_runner.report {sweep_dir}") from e
        log_report(config, sweep_dir)
        bad = sum(r.not_ok for r in rows)
        if bad:
            finish = finish_command(sweep_hydra_config(sweep_dir), sweep_dir)
            raise SystemExit(f"{bad} of {sum(len(r.jobs) for r in rows)} jobs did not finish ok: see "
                             f"{sweep_dir / 'results.md'}; finish the sweep with: {finish}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffusion_runner.report",
                                     description="Rebuild the results table and figures of a sweep directory.")
    parser.add_argument("sweep_dirs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    bad = 0
    for sweep_dir in args.sweep_dirs:
        if not sweep_dir.is_dir():
            raise SystemExit(f"report: {sweep_dir}: no such directory")
        try:
            rows = write_report(sweep_dir)
        except (FileNotFoundError, OSError, ValueError) as e:
            raise SystemExit(f"report: {sweep_dir}: {e}") from e
        print((sweep_dir / "results.md").read_text())
        not_ok = sum(r.not_ok for r in rows)
        if not_ok:
            print(f"{not_ok} jobs did not finish ok; finish the sweep with: "
                  f"{finish_command(sweep_hydra_config(sweep_dir), sweep_dir)}")
        bad += not_ok
    if bad:
        raise SystemExit(f"report: {bad} jobs did not finish ok (see results.md)")


if __name__ == "__main__":
    main()
