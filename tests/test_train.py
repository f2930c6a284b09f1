"""The training loop's EMA warm-up."""

from __future__ import annotations

import pytest
import torch

from diffusion_runner.train import EMA


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
