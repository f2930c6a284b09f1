"""The sweep report rebuilt from a hand-made sweep directory with known numbers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import yaml
from omegaconf import OmegaConf

from diffusion_runner.report import SweepReport, load_jobs, main, summarise, write_report

GMM8 = {"_target_": "diffusion_runner.data.ring_mixture", "n_modes": 8, "radius": 4.0, "std": 0.5, "weights": None}
SAMPLER = {"_target_": "diffusion_runner.score.samplers.EulerMaruyama", "steps": 1000}
EVAL = {"n_samples": 10000, "metrics": {"kl_kde": {"_target_": "diffusion_runner.metrics.KLKDE"},
                                        "chamfer": {"_target_": "diffusion_runner.metrics.Chamfer"},
                                        "emd": {"_target_": "diffusion_runner.metrics.EMD"}}}
VP, OU = {"_target_": "diffusion_runner.score.sdes.VP"}, {"_target_": "diffusion_runner.score.sdes.OU"}
MLP, ORACLE = {"_target_": "diffusion_runner.score.MLP"}, {"_target_": "diffusion_runner.score.Oracle"}


def make_job(root, num, overrides, sde, model, metrics):
    job = root / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra/overrides.yaml").write_text(yaml.safe_dump(overrides))
    seed = int(next(o for o in overrides if o.startswith("seed=")).split("=")[1])
    config = {"seed": seed, "dataset": GMM8, "family": {"_target_": "diffusion_runner.score.Score"}, "sde": sde,
              "sampler": SAMPLER, "eval": EVAL, "model": model}
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
    assert inv_var.count("failed") == 3 and inv_var.count("ok") == 0 and not inv_var.stats
    text = (sweep / "results.md").read_text()
    assert "unreadable metrics.json" in text and f"{sweep / '3/metrics.json'}: kl_kde: must be a finite number" in text
    assert rows["+row=ddpm_oracle"].count("ok") == 1  # job 0 set aside, job 1 reported


@pytest.mark.parametrize("value, problem", [("0.5", "must be a number, got '0.5'"), (1e308, "is out of range"),
                                            (float("inf"), "must be a finite number"), (True, "must be a number")])
def test_a_hand_edited_value_fails_its_job_by_file_and_key_and_the_others_are_summarised(sweep, value, problem):
    (sweep / "3/metrics.json").write_text(json.dumps({**ok(0.35, 0.29), "chamfer": value}))
    with pytest.raises(SystemExit):
        main([str(sweep)])
    rows = {r.key: r for r in write_report(sweep)}
    inv_var = rows["+row=ddpm_inv_var"]
    assert inv_var.count("ok") == 1 and inv_var.count("failed") == 2
    mean, _, n = inv_var.stats["chamfer"]
    assert mean == pytest.approx(0.27) and n == 1
    assert f"{sweep / '3/metrics.json'}: chamfer: " in (sweep / "results.md").read_text()
    assert problem in (sweep / "results.md").read_text()
    assert read_csv(sweep / "results.csv")["+row=ddpm_inv_var"]["chamfer_mean"] == "0.27"


def test_a_value_some_finished_jobs_lack_is_summarised_saying_over_how_many(sweep):
    (sweep / "3/metrics.json").write_text(json.dumps({k: v for k, v in ok(0.35, 0.29).items() if k != "emd"}))
    write_report(sweep)
    row = next(line for line in (sweep / "results.md").read_text().splitlines() if "`+row=ddpm_inv_var`" in line)
    assert "0.2500 (1 of 2 jobs)" in row and "(1 of 2 jobs)" not in row.split("0.2500")[0]


def test_rebuild_of_an_empty_directory_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no job directories"):
        write_report(tmp_path)


def tampered_nodes(tmp_path):
    """Stored dataset nodes that, if instantiated, would write the file `target` (a sweep directory is something
    people share and download)."""
    target, source = tmp_path / "written_by_a_stored_config", tmp_path / "shipped.txt"
    source.write_text("shipped with the directory")
    return target, [
        {"_target_": "pathlib.Path.touch", "_args_": [str(target)]},
        {"_target_": "shutil.copy", "_args_": [str(source), str(target)]},
        {"_target_": "builtins.open", "file": str(target), "mode": "w"},
        {"_target_": "torch.save", "obj": [1], "f": str(target)},
        {**GMM8, "std": {"_target_": "pathlib.Path.touch", "self": str(target)}},  # nested in a real dataset
    ]


def tamper(sweep, num, dataset):
    path = sweep / str(num) / ".hydra/config.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "dataset": dataset}, sort_keys=False))


def test_the_report_runs_nothing_from_stored_configs_and_names_each_tampered_job(tmp_path, caplog):
    sweep = tmp_path / "sweep"
    target, nodes = tampered_nodes(tmp_path)
    ok_jobs = [0, 1, 2, 3, 6]  # the fixture's finished jobs
    for num in range(7):
        overrides = [f"+row=r{num}", f"seed={num}"]
        make_job(sweep, num, overrides, VP, MLP, ok(0.3 + num / 100, 0.26) if num in ok_jobs else None)
    for num, node in zip(ok_jobs, nodes, strict=True):
        tamper(sweep, num, node)
    with pytest.raises(SystemExit) as info:
        main([str(sweep)])
    assert not target.exists()
    assert str(info.value).startswith("report: ") and "did not finish ok" in str(info.value)
    lines = [r.getMessage() for r in caplog.records if "nothing in a stored config is run" in r.getMessage()]
    assert all("\n" not in line for line in lines)
    assert len(lines) == len(nodes) and all("dataset" in line for line in lines)
    assert {int(line.split(str(sweep) + "/")[1].split("/")[0]) for line in lines} == set(ok_jobs)
    text = (sweep / "results.md").read_text()
    assert "'pathlib.Path.touch' is not one of the project's datasets" in text
    assert "dataset.std: a stored config is read only as plain values" in text
    assert (sweep / "results.csv").exists()


def test_the_end_of_sweep_callback_runs_nothing_from_stored_configs(sweep, tmp_path):
    target, nodes = tampered_nodes(tmp_path)
    tamper(sweep, 0, nodes[0])
    tamper(sweep, 1, nodes[3])
    with pytest.raises(SystemExit, match="jobs did not finish ok"):
        SweepReport().on_multirun_end(config=OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert not target.exists()
    rows = {r.key: r for r in write_report(sweep)}
    assert rows["+row=ddpm_oracle"].count("failed") == 2  # both tampered jobs
    assert rows["+row=ddpm_inv_var"].count("ok") == 2  # the others are reported


def test_each_row_is_paired_with_the_oracle_of_its_own_family_prior_and_model_settings(tmp_path):
    """Chain rows pair with the exact-x0 row of the same variance and schedule; no row pairs across families."""
    schedule = {"_target_": "diffusion_runner.chain.schedules.LinearBeta", "T": 1000}
    chain = {"_target_": "diffusion_runner.chain.Chain"}

    def job(num, row, family, model):
        path = tmp_path / str(num)
        (path / ".hydra").mkdir(parents=True)
        (path / ".hydra/overrides.yaml").write_text(yaml.safe_dump([f"+row={row}", "seed=0"]))
        config = {"seed": 0, "dataset": GMM8, "family": family, "sampler": SAMPLER, "eval": EVAL, "model": model}
        (path / ".hydra/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        (path / "metrics.json").write_text(json.dumps(ok(0.30 + num / 100, 0.26)))
        np.save(path / "samples.npy", np.random.default_rng(num).normal(size=(300, 2)).astype(np.float32))

    learned = {"_target_": "diffusion_runner.chain.ChainModel", "schedule": schedule, "parameterization": "eps"}
    job(0, "oracle_small", chain, {"_target_": "diffusion_runner.chain.ChainOracle", "schedule": schedule,
                                   "variance": "small"})
    job(1, "oracle_large", chain, {"_target_": "diffusion_runner.chain.ChainOracle", "schedule": schedule,
                                   "variance": "large"})
    job(2, "small", chain, {**learned, "variance": "small"})
    job(3, "large", chain, {**learned, "variance": "large"})
    job(4, "vae", {"_target_": "diffusion_runner.vae.VAE"}, {"_target_": "diffusion_runner.vae.GumbelVAE"})
    rows = {row.key: row for row in summarise(load_jobs(tmp_path)[0])}
    assert {key: row.oracle.key if row.oracle else None for key, row in rows.items()} == {
        "+row=oracle_small": "+row=oracle_small", "+row=oracle_large": "+row=oracle_large",
        "+row=small": "+row=oracle_small", "+row=large": "+row=oracle_large", "+row=vae": None}


def test_a_value_listed_twice_gives_two_jobs_both_reported(tmp_path):
    for num in range(2):
        make_job(tmp_path, num, ["seed=0"], VP, MLP, ok(0.3 + num / 10, 0.26))
    hydra_cfg = {"sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper", "params": None},
                 "overrides": {"task": ["seed=0,0"]}}
    jobs, ignored = load_jobs(tmp_path, hydra_cfg)
    assert [(j.path.name, j.status, j.metrics["kl_kde"]) for j in jobs] == [("0", "ok", 0.3), ("1", "ok", 0.4)]
    assert ignored == []
