"""A small CNN classifier of a labelled image dataset, trained once on its training rows and cached.

Its penultimate layer (FEATURES units) is the feature space of the image metrics (diffusion_runner.images.metrics),
as Inception's is for FID. The cache file holds the weights, the held-out accuracy and a fingerprint of the
training data and recipe; a file that does not load, or whose fingerprint differs, is rebuilt (written atomically).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from diffusion_runner.atomic import atomic_path
from diffusion_runner.data.finite import Finite

log = logging.getLogger(__name__)

FEATURES = 128
RECIPE = {"version": 1, "epochs": 40, "batch": 64, "lr": 2e-3, "weight_decay": 1e-4, "seed": 0, "shift": 1}


def default_cache_dir() -> Path:
    """$XDG_CACHE_HOME/diffusion_runner, else ~/.cache/diffusion_runner."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diffusion_runner"


class Net(nn.Module):
    """conv3x3(32) -> conv3x3 stride 2 (64) -> conv3x3(64) -> global mean over space -> FEATURES -> classes."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(channels, 32, 3, padding=1), nn.SiLU(),
                                   nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.SiLU(),
                                   nn.Conv2d(64, 64, 3, padding=1), nn.SiLU())
        self.hidden = nn.Linear(64 * 2, FEATURES)
        self.head = nn.Linear(FEATURES, classes)

    def features(self, x: Tensor) -> Tensor:
        h = self.convs(x)
        return F.silu(self.hidden(torch.cat([h.mean((2, 3)), h.amax((2, 3))], dim=1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@dataclass
class Classifier:
    net: Net
    accuracy: float  # on the dataset's held-out rows

    @torch.no_grad()
    def run(self, x: np.ndarray, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """(penultimate features (n, FEATURES), class probabilities (n, classes)) of images x (n, C, H, W)."""
        self.net.eval()
        feats, probs = [], []
        for start in range(0, len(x), batch):
            f = self.net.features(torch.as_tensor(x[start:start + batch], dtype=torch.float32))
            feats.append(f.double().numpy())
            probs.append(torch.softmax(self.net.head(f), dim=1).double().numpy())
        return np.concatenate(feats), np.concatenate(probs)


def fingerprint(dataset: Finite) -> str:
    """sha256 of the training and held-out rows and labels and of the recipe: what the cached classifier is for."""
    h = hashlib.sha256(repr(sorted(RECIPE.items())).encode())
    for part in (dataset.train, dataset.train_labels, dataset.held_out, dataset.held_out_labels):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def _shifted(x: Tensor, generator: torch.Generator, shift: int) -> Tensor:
    """The batch moved by one random offset of up to `shift` pixels each way, padded with the background value -1
    (augmentation)."""
    padded = F.pad(x, (shift,) * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * shift + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]


def train(dataset: Finite) -> Classifier:
    """Adam with weight decay on cross-entropy over the training rows, RECIPE's epochs, shift augmentation."""
    generator = torch.Generator().manual_seed(RECIPE["seed"])
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(RECIPE["seed"])
    net = Net(dataset.shape[0], dataset.n_classes)
    torch.random.set_rng_state(torch_state)  # the job's own stream is left as it was
    x = torch.as_tensor(dataset.from_model(dataset.train))
    y = torch.as_tensor(dataset.train_labels)
    opt = torch.optim.AdamW(net.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    steps = RECIPE["epochs"] * -(-len(x) // RECIPE["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, RECIPE["lr"], total_steps=steps)
    net.train()
    for _ in range(RECIPE["epochs"]):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), RECIPE["batch"]):
            idx = order[start:start + RECIPE["batch"]]
            loss = F.cross_entropy(net(_shifted(x[idx], generator, RECIPE["shift"])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    classifier = Classifier(net, 0.0)
    _, probs = classifier.run(dataset.from_model(dataset.held_out))
    classifier.accuracy = float((probs.argmax(1) == dataset.held_out_labels).mean())
    return classifier


def load_or_train(dataset: Finite, cache_dir: Path | str | None = None) -> Classifier:
    """The cached classifier of `dataset` (under cache_dir, default default_cache_dir()), trained and cached when
    there is none, or when the file there does not load or was made for other data or another recipe."""
    key = fingerprint(dataset)
    path = Path(cache_dir or default_cache_dir()).expanduser() / f"classifier-{type(dataset).__name__.lower()}-" \
        f"{key[:16]}.pt"
    if path.exists():
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state["fingerprint"] != key:
                raise ValueError("fingerprint differs")
            net = Net(dataset.shape[0], dataset.n_classes)
            net.load_state_dict(state["net"])
            log.info("classifier loaded from %s (held-out accuracy %.4f)", path, state["accuracy"])
            return Classifier(net, float(state["accuracy"]))
        except Exception as e:  # noqa: BLE001 -- any unreadable cache is rebuilt
            log.warning("classifier cache %s is unusable (%s): rebuilding it", path, str(e).splitlines()[0][:200])
    log.info("training the %s classifier of the image metrics (cached at %s)", type(dataset).__name__, path)
    classifier = train(dataset)
    log.info("classifier: held-out accuracy %.4f", classifier.accuracy)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"net": classifier.net.state_dict(), "accuracy": classifier.accuracy, "fingerprint": key}, tmp)
    return classifier
