"""The training loop: the EMA warm-up; the saved training state resumes bit for bit; a stop request and a
non-finite loss end training at their step."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from diffusion_runner import train as training
from diffusion_runner.build import build, build_loss
from diffusion_runner.errors import Interrupted
from diffusion_runner.family import Loss
from diffusion_runner.train import EMA, train
from tests.conftest import compose_config


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


def _setup(steps=60, **kwargs):
    """The default model's training on a small set, from fixed seeds: (model, loss, data, train's keywords)."""
    cfg = compose_config([f"train.steps={steps}", "train.n_data=500"])
    torch.manual_seed(0)
    parts = build(cfg, torch.device("cpu"))
    data = torch.as_tensor(parts.dataset.sample(500, np.random.default_rng(0)))
    args = dict(optimizer=instantiate(cfg.train.optimizer), scheduler=instantiate(cfg.train.scheduler), steps=steps,
                batch_size=64, ema_decay=0.99, log_every=20, generator=torch.Generator().manual_seed(1), **kwargs)
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
    args.update(checkpoint_every=1 if per_step else 5, save=saved.append)
    with pytest.raises(FloatingPointError, match="the loss is nan at step 7"):
        train(model, NanAtStep7(), data, **args)
    assert [s["step"] for s in saved] == ([1, 2, 3, 4, 5, 6] if per_step else [5])
