"""Closed, typed configs: a typo, a wrong type, a string boolean or a non-finite number stops the job before any
work, with one line naming the key; every shipped option and experiment passes."""

from __future__ import annotations

import pytest

from diffusion_runner.__main__ import config_error
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from diffusion_runner.validate import validate
from tests.conftest import FAMILIES, GROUPS, all_options, compose_config, family_of, options


@pytest.mark.parametrize("overrides", [[f"{g}={o}"] for g in GROUPS for o in options(g)]
                         + [[f"family={f}"] for f in FAMILIES]
                         + [[f"family={family_of(o)}", f"{g}={o}"] for g in GROUPS for o in all_options(g)
                            if family_of(o) != "score"]
                         + [["family=chain", f"schedule={o}"] for o in all_options("schedule")]
                         + [[f"sampler/grid={o}"] for o in options("sampler/grid")]
                         + [[f"experiment={o}"] for o in options("experiment")]
                         + [["experiment=writeup_table", f"+row={o}"] for o in options("row")])
def test_every_shipped_option_passes(overrides):
    if "dataset=file" in overrides:  # the one option with a key to set (validate reads no file)
        overrides = [*overrides, "dataset.path=points.csv"]
    validate(compose_config(overrides))


@pytest.mark.parametrize("overrides,message", [
    (["+train.stepz=5"], "train.stepz: unknown key (did you mean train.steps?)"),
    (["+sdee=ou"], "sdee: unknown key (did you mean sde?)"),
    (["+sampler.stepz=5"], "sampler.stepz: unknown key (did you mean sampler.steps?)"),
    (["+model.backbone.widht=3"], "model.backbone.widht: unknown key (did you mean model.backbone.width?)"),
    (["+train.optimizer.lrr=1"], "train.optimizer.lrr: unknown key (did you mean train.optimizer.lr?)"),
    (["sampler.denoise=no"], "sampler.denoise: must be true or false, got 'no'"),
    (["model.conditional=yes"], "model.conditional: must be true or false, got 'yes'"),
    (["model.backbone.width=abc"], "model.backbone.width: must be an integer, got 'abc'"),
    (["sde.beta_max=abc"], "sde.beta_max: must be a number, got 'abc'"),
    (["dataset.std=inf"], "dataset.std: must be a finite number, got inf"),
    (["sde.T=inf"], "sde.T: must be a finite number, got inf"),
    (["sampler.grid.rho=nan"], "sampler.grid.rho: must be a finite number, got nan"),
    (["dataset=gmm", "dataset.means=[[0,0],[nan,1]]"], "dataset.means[1][0]: must be a finite number, got nan"),
    (["loss.weighting._target_=foo.Bar"], "loss.weighting._target_: cannot import 'foo.Bar'"),
    (["+train.callbacks.curve._target_=foo.Bar"], "train.callbacks.curve._target_: cannot import 'foo.Bar'"),
    (["+train.callbacks.curve._target_=diffusion_runner.metrics.Chamfer"],
     "train.callbacks.curve._target_: 'diffusion_runner.metrics.Chamfer' is not a diffusion_runner.callbacks.Callback"),
    (["+train.callbacks.bar.evry=5"],
     "train.callbacks.bar.evry: unknown key (did you mean train.callbacks.bar.every?)"),
    (["+train.callbacks.curve=5"], "train.callbacks.curve: must be a callback node such as"),
])
def test_a_mistake_stops_the_job_before_any_work_in_one_line(overrides, message, tmp_path):
    with pytest.raises(Exception) as info:
        run(compose_config(overrides), tmp_path, NoLogger(), {})
    line = config_error(info.value)
    assert line is not None and "\n" not in line and line.startswith(message), line
    assert list(tmp_path.iterdir()) == []  # nothing written: the job never started
