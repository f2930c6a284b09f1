"""The sweep report rebuilt from a hand-made sweep directory with known numbers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import yaml

from diffusion_runner.report import main, write_report

GMM8 = {"_target_": "diffusion_runner.data.ring_mixture", "n_modes": 8, "radius": 4.0, "std": 0.5, "weights": None}
SAMPLER = {"_target_": "diffusion_runner.samplers.EulerMaruyama", "steps": 1000}
EVAL = {"n_samples": 10000, "metrics": {"kl_kde": {"_target_": "diffusion_runner.metrics.KLKDE"},
                                        "chamfer": {"_target_": "diffusion_runner.metrics.Chamfer"},
                                        "emd": {"_target_": "diffusion_runner.metrics.EMD"}}}
VP, OU = {"_target_": "diffusion_runner.sdes.VP"}, {"_target_": "diffusion_runner.sdes.OU"}
MLP, ORACLE = {"_target_": "diffusion_runner.models.MLP"}, {"_target_": "diffusion_runner.models.Oracle"}


def make_job(root, num, overrides, sde, model, metrics):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra/overrides.yaml").write_text(yaml.safe_dump(overrides))
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    config = {"seed": seed, "dataset": GMM8, "sde": sde, "sampler": SAMPLER, "eval": EVAL, "model": model}
    (job / ".hydra/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
        if metrics["status"] == "ok":
            np.save(job / "samples.npy", np.random.default_rng(num).normal(size=(300, 2)).astype(np.float32))


def ok(kl, chamfer):
    return {"status": "ok", "kl_kde": kl, "kl_kde_floor": 0.3, "chamfer": chamfer, "emd": 0.25, "train_seconds": 10.0}


@pytest.fixture
def sweep(tmp_path):
    common = ["train.steps=100"]
    jobs = [
        (["+row=ddpm_oracle", "seed=0", *common], VP, ORACLE, ok(0.30, 0.26)),
        (["+row=ddpm_oracle", "seed=1", *common], VP, ORACLE, ok(0.32, 0.26)),
        (["+row=ddpm_inv_var", "seed=0", *common], VP, MLP, ok(0.33, 0.27)),
        (["+row=ddpm_inv_var", "seed=1", *common], VP, MLP, ok(0.35, 0.29)),
        (["+row=ddpm_inv_var", "seed=2", *common], VP, MLP, {"status": "failed", "error": "FloatingPointError: nan"}),
        (["+row=ou_uniform", "seed=0", *common], OU, MLP, None),  # never finished: no metrics.json
        (["+row=ou_uniform", "seed=1", *common], OU, MLP, ok(0.40, 0.30)),
    ]
    for num, (overrides, sde, model, metrics) in enumerate(jobs):
        make_job(tmp_path, num, overrides, sde, model, metrics)
    return tmp_path


def read_csv(path):
    with path.open() as f:
        return {row["configuration"]: row for row in csv.DictReader(f)}


def test_report_statistics_ratios_and_counts(sweep):
    write_report(sweep)
    rows = read_csv(sweep / "results.csv")
    assert list(rows) == ["+row=ddpm_oracle", "+row=ddpm_inv_var", "+row=ou_uniform"]  # shared override dropped
    learned, oracle, ou = rows["+row=ddpm_inv_var"], rows["+row=ddpm_oracle"], rows["+row=ou_uniform"]
    assert float(learned["kl_kde_mean"]) == pytest.approx(0.34)
    assert float(learned["kl_kde_std"]) == pytest.approx(math.sqrt(2) * 0.01)  # sample std of {0.33, 0.35}
    assert int(learned["kl_kde_n"]) == 2
    assert (learned["jobs_ok"], learned["jobs_failed"], learned["jobs_missing"]) == ("2", "1", "0")
    assert learned["oracle"] == "+row=ddpm_oracle"
    assert float(learned["kl_kde_ratio_to_oracle"]) == pytest.approx(0.34 / 0.31)
    assert float(learned["chamfer_ratio_to_oracle"]) == pytest.approx(0.28 / 0.26)
    # Paired by seed: seeds 0 and 1 finished in both rows, kl 0.33 - 0.30 and 0.35 - 0.32; chamfer 0.01 and 0.03.
    assert float(learned["kl_kde_excess_over_oracle_mean"]) == pytest.approx(0.03)
    assert float(learned["kl_kde_excess_over_oracle_std"]) == pytest.approx(0.0, abs=1e-12)
    assert float(learned["chamfer_excess_over_oracle_mean"]) == pytest.approx(0.02)
    assert float(learned["chamfer_excess_over_oracle_std"]) == pytest.approx(math.sqrt(2) * 0.01)
    assert int(learned["kl_kde_excess_over_oracle_n"]) == 2
    assert float(oracle["kl_kde_ratio_to_oracle"]) == pytest.approx(1.0)
    assert (ou["jobs_ok"], ou["jobs_missing"]) == ("1", "1")
    assert ou["oracle"] == "" and math.isnan(float(ou["kl_kde_ratio_to_oracle"]))  # no OU oracle in this sweep
    assert math.isnan(float(ou["kl_kde_std"])) and float(ou["kl_kde_mean"]) == pytest.approx(0.40)  # one seed


def test_report_markdown_lists_every_job_and_the_failure(sweep):
    write_report(sweep)
    md = (sweep / "results.md").read_text()
    # Every declared score with its floor, in config order; then the timings.
    assert ("| configuration | jobs ok / failed / interrupted / missing | kl_kde | kl_kde_floor | chamfer | emd "
            "| train_seconds |" in md)
    assert "| `+row=ddpm_inv_var` | 2 / 1 / 0 / 0 | 0.3400 ± 0.0141 | 0.3000 ± 0.0000 | 0.2800 ± 0.0141 |" in md
    assert "| `+row=ou_uniform` | 1 / 0 / 0 / 1 | 0.4000 |" in md
    # Against the oracle: the paired excess and the ratio of every score the metrics compare with the oracle.
    assert "| `+row=ddpm_inv_var` | `+row=ddpm_oracle` | 0.0300 ± 0.0000 | 1.097 | 0.0200 ± 0.0141 | 1.077 |" in md
    assert "| failed |" in md and "FloatingPointError: nan" in md and "| missing |" in md
    for name in ("results_bars.png", "results_densities.png"):
        assert (sweep / name).read_bytes()[:4] == b"\x89PNG"


def test_rebuild_command_reports_and_exits_1_when_jobs_failed_or_are_missing(sweep, capsys):
    with pytest.raises(SystemExit, match="^report: 2 jobs did not finish ok"):
        main([str(sweep)])
    assert "+row=ddpm_oracle" in capsys.readouterr().out
    assert (sweep / "results.csv").exists()


def test_rebuild_command_exits_0_when_every_job_is_ok(tmp_path):
    make_job(tmp_path, 0, ["seed=0"], VP, ORACLE, ok(0.3, 0.26))
    main([str(tmp_path)])
    assert (tmp_path / "results.md").exists()


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_rebuild_command_names_a_bad_path_in_one_line(make, tmp_path):
    path = tmp_path / "sweep"
    if make == "empty":
        path.mkdir()
    with pytest.raises(SystemExit) as info:
        main([str(path)])
    message = str(info.value)
    assert message.startswith(f"report: {path}: ") and "\n" not in message
    assert ("no such directory" if make == "missing" else "no job directories") in message


def test_a_truncated_or_tampered_metrics_file_counts_as_failed_and_the_rest_is_reported(sweep):
    (sweep / "2/metrics.json").write_text('{"status": "ok", "kl_kde": 0.3')  # truncated
    (sweep / "3/metrics.json").write_text(json.dumps({**ok(0.35, 0.29), "kl_kde": float("nan")}))  # tampered NaN
    (sweep / "0/.hydra/config.yaml").write_text("[unclosed")  # a job record that cannot be read
    rows = {r.key: r for r in write_report(sweep)}
    inv_var = rows["+row=ddpm_inv_var"]
    assert inv_var.count("failed") == 2 and inv_var.count("ok") == 1
    assert "kl_kde" not in inv_var.stats and inv_var.stats["chamfer"][0] == pytest.approx(0.29)  # NaN: no value
    assert "unreadable metrics.json" in (sweep / "results.md").read_text()
    assert rows["+row=ddpm_oracle"].count("ok") == 1  # job 0 set aside, job 1 reported


def test_rebuild_of_an_empty_directory_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job directories"):
        write_report(tmp_path)
