"""Figures of images (channels, height, width) in [-1, 1]: a grid of samples, the reverse process as a strip and as
a GIF, and the forward process on one image. One channel is drawn in gray, three as RGB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from diffusion_runner.atomic import atomic_path
from diffusion_runner.plots import save


def tile(images: np.ndarray, columns: int, pad: int = 1) -> np.ndarray:
    """(n, C, H, W) images in [-1, 1] -> one (rows (H + pad), columns (W + pad), C) array in [0, 1], clipped."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    out = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c))
    for k, image in enumerate(np.clip((images + 1) / 2, 0, 1)):
        i, j = divmod(k, columns)
        out[pad + i * (h + pad):pad + i * (h + pad) + h, pad + j * (w + pad):pad + j * (w + pad) + w] = \
            image.transpose(1, 2, 0)
    return out


def show(ax, array: np.ndarray, title: str = "") -> None:
    ax.imshow(array[..., 0] if array.shape[-1] == 1 else array, cmap="gray", vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def grid(samples: np.ndarray, path: Path, labels: np.ndarray | None = None, count: int = 100) -> None:
    """The first `count` samples in a square grid; with labels, ordered by requested label (one row each)."""
    if labels is not None:
        order = np.argsort(labels[:len(samples)], kind="stable")
        samples = samples[order]
    shown = samples[:count]
    columns = int(np.ceil(np.sqrt(len(shown))))
    fig = Figure(figsize=(6, 6 * (-(-len(shown) // columns)) / columns + 0.4))
    show(fig.subplots(), tile(shown, columns), f"{len(shown)} generated images")
    save(fig, path)


def strip(snapshots: Sequence[tuple[float, np.ndarray]], path: Path, count: int = 8) -> None:
    """The reverse process: one column per kept state (from t = T to the end), one row per image (the first
    `count`)."""
    states = np.stack([x[:count] for _, x in snapshots], axis=1)  # (count, states, C, H, W)
    fig = Figure(figsize=(1.1 * len(snapshots), 1.1 * len(states) + 0.5))
    ax = fig.subplots()
    show(ax, tile(states.reshape(-1, *states.shape[2:]), len(snapshots)),
          "reverse process, t = " + "  ".join(f"{t:.3g}" for t, _ in snapshots))
    save(fig, path)


def animation(frames: Sequence[tuple[float, np.ndarray]], path: Path, count: int = 16, seconds: float = 4.0,
              scale: int = 12) -> None:
    """An animated GIF of the reverse process on the first `count` images (a square grid, each pixel drawn
    `scale` x `scale`), the last frame held for a second."""
    columns = int(np.ceil(np.sqrt(count)))
    pictures = []
    for _, x in frames:
        array = (tile(x[:count], columns) * 255).astype(np.uint8)
        image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
        pictures.append(image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST))
    step = max(20, int(1000 * seconds / max(1, len(pictures) - 1)))
    with atomic_path(path) as tmp:
        pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], loop=0,
                         duration=[step] * (len(pictures) - 1) + [1000])


def forward(image: np.ndarray, levels: Sequence[tuple[str, float, float]], rng: np.random.Generator,
            path: Path, title: str) -> None:
    """The forward process on one image (C, H, W): m x_0 + s z for each (caption, m, s) of `levels`, one noise draw
    z for all."""
    z = rng.standard_normal(image.shape)
    fig = Figure(figsize=(1.3 * len(levels), 1.9))
    for ax, (caption, m, s) in zip(fig.subplots(1, len(levels), squeeze=False)[0], levels, strict=True):
        show(ax, tile((m * image + s * z)[None], 1, pad=0), caption)
    fig.suptitle(title, fontsize=9)
    save(fig, path)
