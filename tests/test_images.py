"""Images: the U-Net, the digits dataset end to end (score family and chain), the classifier cache, and the
feature metrics."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch

from diffusion_runner.__main__ import config_error
from diffusion_runner.chain.objective import discretized_gaussian_nll
from diffusion_runner.data import Digits
from diffusion_runner.errors import ConfigError
from diffusion_runner.images import classifier as classifiers
from diffusion_runner.images.metrics import frechet_distance, kid
from diffusion_runner.loggers import NoLogger
from diffusion_runner.nets import UNet
from diffusion_runner.pipeline import run
from tests.conftest import compose_config

SIZES = (1, 2, 3, 4, 6, 8, 12, 16)


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_unet_keeps_every_image_size_it_admits_and_refuses_the_others_in_one_line(levels):
    features = torch.randn(3, 10)
    for height in SIZES:
        for width in SIZES:
            factor = 2 ** (levels - 1)
            if height % factor or width % factor:
                with pytest.raises(ConfigError) as refused:
                    UNet((2, height, width), 10, channels=8, channel_mults=[1] * levels)
                assert "\n" not in str(refused.value) and f"divisible by {factor}" in str(refused.value)
                continue
            net = UNet((2, height, width), 10, channels=8, channel_mults=[1] * levels, out_shape=(4, height, width))
            out = net(torch.randn(3, 2, height, width), features)
            assert out.shape == (3, 4, height, width)


def test_unet_refuses_points_and_its_output_depends_on_time():
    with pytest.raises(ConfigError, match="takes images .*use an MLP"):
        UNet((2,), 10)
    torch.manual_seed(0)
    net = UNet((1, 8, 8), 10)
    for p in net.parameters():  # away from the zero-initialised output, so the features reach it
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(4, 1, 8, 8)
    assert not torch.allclose(net(x, torch.zeros(4, 10)), net(x, torch.ones(4, 10)))


def test_digits_split_is_stratified_fixed_and_disjoint():
    a, b = Digits(), Digits()
    assert a.train.shape == (1437, 1, 8, 8) and a.held_out.shape == (360, 1, 8, 8)
    assert np.array_equal(a.held_out, b.held_out)
    assert a.train.min() == -1 and a.train.max() == 1
    assert np.bincount(a.held_out_labels).min() >= 35  # every digit held out in its share
    train = {row.tobytes() for row in a.train}
    assert not any(row.tobytes() in train for row in a.sample(360, np.random.default_rng(0)))


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_a_shift():
    a = np.random.default_rng(0).standard_normal((500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)  # |mu_a - mu_b|^2, equal covariances


def test_kid_is_unbiased_on_two_draws_of_one_gaussian_and_positive_between_two():
    rng = np.random.default_rng(1)
    same = [kid(rng.standard_normal((200, 16)), rng.standard_normal((200, 16)), rng, subsets=5)[0] for _ in range(40)]
    mean, se = np.mean(same), np.std(same, ddof=1) / np.sqrt(len(same))
    assert abs(mean) < 3 * se
    shifted = kid(rng.standard_normal((200, 16)), 0.3 + rng.standard_normal((200, 16)), rng, subsets=5)
    assert shifted[0] > 10 * se and shifted[0] > 3 * shifted[1]


TINY_DIGITS = ["experiment=digits", "train.steps=20", "train.batch_size=32", "train.log_every=10",
               "sampler.steps=4", "eval.n_samples=64", "eval.frames=4", "eval.snapshots=3",
               "eval.metrics.likelihood.n_points=16"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One classifier cache for the tests that do not test the cache."""
    return tmp_path_factory.mktemp("classifier")


def digits_job(tmp_path, name, *overrides, cache=None):
    cache = cache or tmp_path / "cache"
    ode = [] if "family=chain" in overrides else ["eval.metrics.likelihood.steps=2"]
    cfg = compose_config([*TINY_DIGITS, *ode, f"eval.metrics.features.cache_dir={cache}", *overrides])
    out = tmp_path / name
    out.mkdir()
    results = {}
    run(cfg, out, NoLogger(), results)
    return out, results


def test_digits_job_end_to_end_with_the_classifier_cache_built_reused_and_rebuilt(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="diffusion_runner")
    out, first = digits_job(tmp_path, "built")
    (cache,) = (tmp_path / "cache").glob("classifier-digits-*.pt")
    assert "training the Digits classifier" in caplog.text
    samples = np.load(out / "samples.npy")
    assert samples.shape == (64, 1, 8, 8) and samples.dtype == np.float32 and np.isfinite(samples).all()
    for name in ("samples.png", "trajectory.png", "forward.png", "loss.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert (out / "animation.gif").read_bytes()[:6] == b"GIF89a"
    assert not (out / "density.png").exists()  # a 2-D histogram means nothing for images
    for skipped in ("chamfer", "emd", "kl_kde", "on_mode"):
        assert skipped not in first
    assert "metric chamfer skipped: it serves points, and Digits holds images" in caplog.text
    assert first["features_n"] == 64 and first["classifier_accuracy"] > 0.97
    for key in ("fd", "fd_floor", "kid", "kid_floor", "c2st", "c2st_floor", "confidence", "label_max_dev"):
        assert np.isfinite(first[key]), key
    assert first["fd"] > first["fd_floor"]  # 20 steps of training are far from the data
    assert len(first["label_shares"].split()) == 10
    assert first["nll_kind"] == "ode" and first["nll_divergence"] == "hutchinson"
    assert first["bpd_discrete"] == pytest.approx(first["nll_bpd"] + 3)  # dequantised: log2 of the 1/8 bin width
    json.dumps(first)

    caplog.clear()
    stamp = cache.stat().st_mtime_ns
    _, again = digits_job(tmp_path, "reused")
    assert "classifier loaded from" in caplog.text and "training the" not in caplog.text
    assert cache.stat().st_mtime_ns == stamp
    assert again["fd"] == first["fd"] and again["c2st"] == first["c2st"]

    caplog.clear()
    cache.write_bytes(b"not a checkpoint")
    _, rebuilt = digits_job(tmp_path, "rebuilt")
    assert "is unusable" in caplog.text and "training the Digits classifier" in caplog.text
    assert torch.load(cache, weights_only=True)["accuracy"] == rebuilt["classifier_accuracy"]
    assert rebuilt["fd"] == pytest.approx(first["fd"])  # the same recipe trains the same classifier


def test_conditional_digits_report_the_share_of_the_requested_label(tmp_path, cache):
    out, results = digits_job(tmp_path, "three", "model.conditional=true", "sampler.label=3", "sampler.guidance=1",
                              cache=cache)
    assert 0 <= results["on_label"] <= 1 and np.all(np.load(out / "labels.npy") == 3)
    assert results["bpd_discrete"] == pytest.approx(results["nll_bpd"] + 3)  # the label's images, dequantised
    assert "on_label" not in digits_job(tmp_path, "free", cache=cache)[1]


def test_the_chain_trains_on_digits_with_the_unet_and_a_learned_variance(tmp_path, cache):
    out, results = digits_job(tmp_path, "chain", "family=chain", "model=chain_unet", "model.variance=learned",
                              "loss.objective=hybrid", "model.schedule.T=50", cache=cache)
    assert results["nll_kind"] == "elbo"
    assert results["bpd_discrete"] == pytest.approx(results["nll_bpd"])  # a discretised decoder: no dequantisation
    assert (out / "forward.png").exists() and np.load(out / "samples.npy").shape == (64, 1, 8, 8)


@pytest.mark.parametrize("mean,logvar", [(0.3, -4.0), (0.97, -9.0), (-2.0, 0.0), (0.0, -20.0), (1.5, -6.0)])
def test_the_chains_discretised_decoder_gives_probabilities_summing_to_one_over_the_grid(mean, logvar):
    levels = (torch.arange(17, dtype=torch.float64) / 8 - 1)[:, None]
    nll = discretized_gaussian_nll(levels, torch.full_like(levels, mean), torch.full_like(levels, logvar), 1 / 8)
    assert torch.isfinite(nll).all() and torch.exp(-nll).sum().item() == pytest.approx(1.0, abs=1e-9)
    normal = torch.distributions.Normal(torch.tensor(mean, dtype=torch.float64), math.exp(logvar / 2))
    inner = normal.cdf(torch.tensor([0.0625, 0.1875], dtype=torch.float64))  # the bin of x = 1/8
    assert torch.exp(-nll[9]).item() == pytest.approx(float(inner[1] - inner[0]), rel=1e-6, abs=1e-12)


def test_the_classifier_is_for_its_data(tmp_path):
    digits = Digits()
    other = Digits(split_seed=1)
    assert classifiers.fingerprint(digits) != classifiers.fingerprint(other)
    assert classifiers.fingerprint(digits) == classifiers.fingerprint(Digits())


def test_unet_on_points_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(Exception) as info:
        run(compose_config(["model=unet"]), tmp_path, NoLogger(), {})
    message = config_error(info.value)
    assert message is not None and "\n" not in message
    assert message.startswith("model.backbone: the U-Net takes images"), message
