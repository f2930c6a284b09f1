"""The training loop: the EMA warm-up; the saved training state resumes bit for bit; a stop request and a
non-finite loss end training at their step."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner import train as training
from diffusion_runner.__main__ import config_error
from diffusion_runner.build import build, build_loss
from diffusion_runner.callbacks import Callback, Checkpoint, Context, LearningCurve, LogProgress, ProgressBar
from diffusion_runner.errors import Interrupted
from diffusion_runner.family import Loss
from diffusion_runner.loggers import NoLogger
from diffusion_runner.pipeline import run
from diffusion_runner.train import EMA, TrainOptions, train
from tests.conftest import TINY, compose_config


def test_ema_follows_the_warm_up_recurrence():
    model = torch.nn.Linear(3, 1)
    ema = EMA(model, decay=0.999)
    expected = model.weight.detach().clone()
    for n in range(1, 30):
        with torch.no_grad():
            model.weight.add_(1.0)
        ema.update()
        decay = min(0.999, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * model.weight.detach()
        assert torch.allclose(ema.module.weight, expected, atol=1e-5)
    # After 29 steps of +1 the EMA trails by 3 (with a fixed decay of 0.999 it would trail by ~28.6).
    assert float((model.weight - ema.module.weight).detach().mean()) == pytest.approx(3.0, abs=1e-3)
    assert not ema.module.weight.requires_grad


def _setup(steps=60, checkpoint_every=None, save=None, **kwargs):
    """The default model's training on a small set, from fixed seeds, with the job's progress log and a checkpoint
    callback handing states to `save`: (model, loss, data, train's keywords)."""
    cfg = compose_config([f"train.steps={steps}", "train.n_data=500"])
    torch.manual_seed(0)
    parts = build(cfg, torch.device("cpu"))
    data = torch.as_tensor(parts.dataset.sample(500, np.random.default_rng(0)))
    options = TrainOptions(steps=steps, batch_size=64, optimizer=instantiate(cfg.train.optimizer),
                           scheduler=instantiate(cfg.train.scheduler), ema_decay=0.99)
    args = dict(options=options, generator=torch.Generator().manual_seed(1), context=Context(save=save),
                callbacks=[LogProgress(every=20), Checkpoint(every=checkpoint_every)], **kwargs)
    return parts.model, build_loss(cfg, parts.model), data, args


def test_training_resumed_from_a_saved_state_ends_bit_identical():
    model, loss, data, args = _setup()
    straight = train(model, loss, data, **args)
    saved = {}
    model, loss, data, args = _setup(checkpoint_every=25, save=lambda s: saved.setdefault(s["step"], copy.deepcopy(s)))
    train(model, loss, data, **args)
    assert sorted(saved) == [25, 50, 60]
    model, loss, data, args = _setup()
    torch.manual_seed(123)  # a restarted process: the global stream is elsewhere until the state is loaded
    resumed = train(model, loss, data, resume=saved[25], **args)
    assert resumed.steps_run == 35 and np.array_equal(resumed.losses, straight.losses)
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_stop_request_saves_the_state_after_the_step_under_way_and_raises_interrupted():
    saved = []
    calls = iter(range(10**6))
    model, loss, data, args = _setup(save=saved.append, stop=lambda: next(calls) >= 9)
    with pytest.raises(Interrupted) as stopped:
        train(model, loss, data, **args)
    assert stopped.value.step == 10 and [s["step"] for s in saved] == [10]
    assert saved[0]["losses"].shape == (10,) and saved[0]["ema_updates"] == 10 and "scheduler" in saved[0]


@pytest.mark.parametrize("per_step", [True, False], ids=["per-step (CPU)", "windowed (CUDA)"])
def test_a_non_finite_loss_stops_training_at_its_step_before_any_state_holding_it_is_saved(per_step, monkeypatch):
    monkeypatch.setattr(training, "host_reads_are_cheap", lambda device: per_step)
    model, loss, data, args = _setup()

    class NanAtStep7(Loss):
        def __call__(self, *a):
            return loss(*a) * float("nan") if self.step == 6 else loss(*a)

        def set_step(self, step):
            self.step = step

    saved = []
    args.update(callbacks=[Checkpoint(every=1 if per_step else 5)], context=Context(save=saved.append))
    with pytest.raises(FloatingPointError, match="the loss is nan at step 7"):
        train(model, NanAtStep7(), data, **args)
    assert [s["step"] for s in saved] == ([1, 2, 3, 4, 5, 6] if per_step else [5])


class Recorder(Callback):
    """Records which hook ran after which step."""

    def __init__(self, every):
        self.every, self.calls = every, []

    def on_start(self, loop):
        self.calls.append(("start", loop.step))

    def on_step(self, loop):
        self.calls.append(("step", loop.step))

    def on_stop(self, loop):
        self.calls.append(("stop", loop.step))

    def on_end(self, loop):
        self.calls.append(("end", loop.step))

    def on_close(self, loop):
        self.calls.append(("close", loop.step))


def test_callbacks_run_every_n_steps_and_at_the_ends():
    model, loss, data, args = _setup(steps=25)
    every7, never = Recorder(7), Recorder(None)
    args["callbacks"] = [every7, never]
    train(model, loss, data, **args)
    assert every7.calls == [("start", 0), ("step", 7), ("step", 14), ("step", 21), ("step", 25), ("end", 25),
                            ("close", 25)]
    assert never.calls == [("start", 0), ("end", 25), ("close", 25)]


def test_a_stop_calls_on_stop_then_on_close_and_an_error_still_closes():
    calls = iter(range(10**6))
    model, loss, data, args = _setup(stop=lambda: next(calls) >= 4)
    recorder = Recorder(10)
    args["callbacks"] = [recorder]
    with pytest.raises(Interrupted):
        train(model, loss, data, **args)
    assert recorder.calls == [("start", 0), ("stop", 5), ("close", 5)]

    class Fails(Loss):
        def __call__(self, *a):
            raise RuntimeError("boom")

    recorder.calls.clear()
    with pytest.raises(RuntimeError, match="boom"):
        train(model, Fails(), data, **{**args, "stop": None})
    assert recorder.calls == [("start", 0), ("close", 0)]


class Curves(NoLogger):
    def __init__(self):
        self.rows = []

    def log(self, values, step=None):
        self.rows.append((step, values))


def test_progress_logs_the_loss_learning_rate_gradient_norm_and_speed():
    model, loss, data, args = _setup(steps=40)
    logger = Curves()
    args.update(callbacks=[LogProgress(every=20)], context=Context(logger=logger))
    result = train(model, loss, data, **args)
    assert [step for step, _ in logger.rows] == [20, 40]
    step, values = logger.rows[-1]
    assert set(values) == {"train/loss", "train/lr", "train/grad_norm", "train/steps_per_s"}
    assert values["train/loss"] == pytest.approx(float(result.losses[20:].mean()), rel=1e-6)
    assert values["train/lr"] == result.optimizer.param_groups[0]["lr"]
    assert values["train/grad_norm"] > 0 and values["train/steps_per_s"] > 0


@pytest.mark.parametrize("interactive", [True, False])
def test_the_bar_draws_only_where_the_job_is_interactive(interactive, capsys):
    model, loss, data, args = _setup(steps=50)
    args.update(callbacks=[ProgressBar(every=10)], context=Context(interactive=interactive))
    train(model, loss, data, **args)
    err = capsys.readouterr().err
    if interactive:
        assert "train" in err and "50/50" in err and "loss" in err
    else:
        assert err == ""


@pytest.mark.parametrize(("override", "message"), [
    ("train.log_every=0", "train.callbacks.progress.every: must be an integer >= 1, got 0"),
    ("train.checkpoint_every=0", "train.callbacks.checkpoint.every: must be an integer >= 1 or null, got 0"),
    ("train.callbacks.bar.every=-1", "train.callbacks.bar.every: must be an integer >= 1, got -1"),
])
def test_bad_callback_values_are_one_line_errors_before_the_job_starts(override, message, tmp_path):
    with pytest.raises(Exception) as info:
        run(compose_config([override]), tmp_path, NoLogger(), {})
    assert config_error(info.value) == message
    assert list(tmp_path.iterdir()) == []


def test_the_learning_curve_evaluates_every_n_steps_and_continues_after_a_resume(tmp_path):
    calls = iter(range(1, 100))

    def evaluate(model):
        assert not any(p.requires_grad for p in model.parameters())  # the EMA copy, which is sampled with
        return {"score": float(next(calls))}

    saved = []
    polls = iter(range(10**6))
    model, loss, data, args = _setup(steps=60, stop=lambda: next(polls) >= 29)
    args.update(callbacks=[LearningCurve(every=20), Checkpoint(every=None)],
                context=Context(save=saved.append, evaluate=evaluate, out_dir=tmp_path))
    with pytest.raises(Interrupted):
        train(model, loss, data, **args)
    assert [p["step"] for p in json.loads((tmp_path / LearningCurve.FILE).read_text())] == [20]
    model, loss, data, args = _setup(steps=60)
    curve = LearningCurve(every=20)
    args.update(callbacks=[curve], context=Context(evaluate=evaluate, out_dir=tmp_path))
    train(model, loss, data, resume=saved[-1], **args)
    assert [(p["step"], p["score"]) for p in curve.points] == [(20, 1.0), (40, 2.0), (60, 3.0)]
    seconds = [p["seconds"] for p in curve.points]
    assert seconds == sorted(seconds) and seconds[0] > 0
    assert json.loads((tmp_path / LearningCurve.FILE).read_text()) == curve.points
    assert (tmp_path / "learning_curve.png").read_bytes()[:4] == b"\x89PNG"


def test_a_job_with_a_learning_curve_trains_to_the_same_results(tmp_path):
    """The curve's evaluations draw on streams of their own: the job's metrics are those of a job without it."""
    tiny = [*TINY, "eval.curve_samples=300", "eval.curve_metrics=[emd,likelihood]", "eval.metrics.emd.n=300"]
    plain, curved = {}, {}
    (tmp_path / "plain").mkdir()
    (tmp_path / "curved").mkdir()
    run(compose_config(tiny), tmp_path / "plain", NoLogger(), plain)
    run(compose_config([*tiny, "eval.every=100"]), tmp_path / "curved", NoLogger(), curved)
    points = json.loads((tmp_path / "curved" / LearningCurve.FILE).read_text())
    assert [p["step"] for p in points] == [100, 200] and {"emd", "nll", "kl_ode"} <= set(points[0])
    assert (tmp_path / "curved" / "learning_curve.png").exists()
    assert not (tmp_path / "plain" / "learning_curve.png").exists()
    for key in ("kl_kde", "chamfer", "emd", "kl_ode", "final_loss"):
        assert plain[key] == curved[key], key


@pytest.mark.parametrize(("override", "message"), [
    (["eval.every=0"], "eval.every: must be an integer >= 1, got 0"),
    (["eval.every=100", "eval.curve_metrics=[nope]"], "eval.curve_metrics: nope not in eval.metrics (allowed: "),
    (["eval.every=100", "eval.curve_samples=10"], "eval.curve_samples: eval.curve_metrics need at least 2000"),
])
def test_bad_learning_curve_values_are_one_line_errors(override, message, tmp_path):
    with pytest.raises(Exception) as info:
        run(compose_config(override), tmp_path, NoLogger(), {})
    assert config_error(info.value).startswith(message), config_error(info.value)
