"""PNG figures of one job. Points of any dimension are shown by their first two coordinates
(1-D data as histograms). Uses matplotlib's object API, so no display or global state is needed."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from diffusion_runner.atomic import atomic_path

Limits = tuple[float, float, float, float]


def plot_limits(points: np.ndarray, margin: float = 0.1) -> Limits:
    """Square-ish box (xmin, xmax, ymin, ymax) around the central 99.8% of the points."""
    lo, hi = np.percentile(points[:, : min(2, points.shape[1])], [0.1, 99.9], axis=0)
    pad = margin * (hi - lo).max()
    lo, hi = lo - pad, hi + pad
    if len(lo) == 1:
        return float(lo[0]), float(hi[0]), 0.0, 1.0
    return float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])


def density_panel(ax: Axes, points: np.ndarray, lims: Limits, title: str = "", bins: int = 120) -> None:
    """2-D histogram of the points as an image of counts (a density histogram for 1-D data)."""
    if points.shape[1] == 1:
        ax.hist(points[:, 0], bins=bins, range=lims[:2], density=True, color="tab:blue")
    else:
        ax.hist2d(points[:, 0], points[:, 1], bins=bins, range=[lims[:2], lims[2:]], cmap="magma")
        ax.set_aspect("equal")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save(fig: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")


def samples_vs_truth(samples: np.ndarray, reference: np.ndarray, path: Path) -> None:
    """Generated points over fresh ground-truth points."""
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    lims = plot_limits(reference)
    if samples.shape[1] == 1:
        ax.hist(reference[:, 0], bins=100, range=lims[:2], density=True, alpha=0.5, label="ground truth")
        ax.hist(samples[:, 0], bins=100, range=lims[:2], density=True, alpha=0.5, label="generated")
    else:
        ax.scatter(reference[:, 0], reference[:, 1], s=1, alpha=0.3, label="ground truth", color="tab:gray")
        ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3, label="generated", color="tab:red")
        ax.set_xlim(lims[:2])
        ax.set_ylim(lims[2:])
        ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=8)
    ax.set_title("generated vs ground truth")
    save(fig, path)


def density(samples: np.ndarray, lims: Limits, path: Path, title: str = "generated density") -> None:
    fig = Figure(figsize=(5, 5))
    density_panel(fig.subplots(), samples, lims, title)
    save(fig, path)


def trajectory(snapshots: Sequence[tuple[float, np.ndarray]], lims: Limits, path: Path) -> None:
    """One density panel per kept state of the reverse process, from the prior (t = T) to t = eps."""
    fig = Figure(figsize=(2.6 * len(snapshots), 2.8))
    for ax, (t, x) in zip(fig.subplots(1, len(snapshots)), snapshots, strict=True):
        density_panel(ax, x, lims, f"t = {t:.3g}", bins=80)
    save(fig, path)


def loss_curve(losses: np.ndarray, path: Path) -> None:
    """Per-step training loss with a moving average over ~1% of the steps."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.3, alpha=0.4, color="tab:blue", label="step")
    w = max(1, len(losses) // 100)
    if len(losses) >= w:
        smooth = np.convolve(losses, np.ones(w) / w, mode="valid")
        ax.plot(steps[w - 1 :], smooth, color="tab:blue", label=f"moving mean ({w})")
    if np.all(losses > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    save(fig, path)


def confusion(counts: np.ndarray, path: Path, rows: str, columns: str) -> None:
    """A count matrix as an image, each row normalised to shares (printed in the cells)."""
    shares = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    fig = Figure(figsize=(1 + 0.5 * counts.shape[1], 1 + 0.5 * counts.shape[0]))
    ax = fig.subplots()
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), share in np.ndenumerate(shares):
        if share >= 0.005:
            ax.text(j, i, f"{share:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if share > 0.5 else "black")
    ax.set_xticks(range(counts.shape[1]))
    ax.set_yticks(range(counts.shape[0]))
    ax.set_xlabel(columns)
    ax.set_ylabel(rows)
    save(fig, path)


def animation(snapshots: Sequence[tuple[float, np.ndarray]], lims: Limits, path: Path, seconds: float = 4.0) -> None:
    """An animated GIF of the reverse process, one density frame per kept state (from t = T to eps), the last held
    for a second; `seconds` is the time the frames before it take."""
    frames = []
    for t, x in snapshots:
        fig = Figure(figsize=(3.2, 3.4))
        density_panel(fig.subplots(), x, lims, f"t = {t:.3g}", bins=80)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        frames.append(Image.open(buffer).convert("P", palette=Image.Palette.ADAPTIVE))
    step = max(20, int(1000 * seconds / max(1, len(frames) - 1)))
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], loop=0,
                       duration=[step] * (len(frames) - 1) + [1000])


def forward_process(times: np.ndarray, mean: np.ndarray, std: np.ndarray, x_T: np.ndarray, prior_std: float,
                    path: Path, title: str) -> None:
    """The forward process of one coordinate: the mean and std of x_t against t (a band of mean +- 2 std), and the
    data's marginal at T (a histogram of x_T) beside the prior N(0, prior_std^2) the sampler starts from."""
    fig = Figure(figsize=(9, 3.6))
    left, right = fig.subplots(1, 2)
    left.plot(times, mean, color="tab:blue", label="mean of x_t")
    left.fill_between(times, mean - 2 * std, mean + 2 * std, color="tab:blue", alpha=0.2, label="mean ± 2 std")
    left.plot(times, std, color="tab:orange", label="std of x_t")
    left.set_xlabel("t")
    left.set_title(title, fontsize=9)
    left.legend(fontsize=8)
    span = 4 * max(prior_std, float(np.std(x_T)))
    grid = np.linspace(-span, span, 400)
    right.hist(x_T, bins=80, range=(-span, span), density=True, alpha=0.5, color="tab:blue", label="data at T")
    right.plot(grid, np.exp(-0.5 * (grid / prior_std) ** 2) / (prior_std * np.sqrt(2 * np.pi)), color="black",
               label=f"prior N(0, {prior_std:.3g}²)")
    right.set_title("the data's marginal at T against the prior", fontsize=9)
    right.legend(fontsize=8)
    save(fig, path)


def score_field(xy: np.ndarray, learned: np.ndarray, exact: np.ndarray, times: Sequence[float], path: Path) -> None:
    """The learned score against the exact one on a grid of 2-D points at a few times: a quiver of both (lengths
    scaled by the panel's 90th percentile of |s| and capped at one grid step) and a heat map of the error
    |s_theta - s| / |s|. xy: (G, G, 2) grid; learned, exact: (len(times), G, G, 2)."""
    fig = Figure(figsize=(3.2 * len(times), 6.4))
    axes = fig.subplots(2, len(times), squeeze=False)
    extent = (xy[..., 0].min(), xy[..., 0].max(), xy[..., 1].min(), xy[..., 1].max())
    for k, t in enumerate(times):
        scale = np.percentile(np.linalg.norm(exact[k], axis=-1), 90)
        top, bottom = axes[0, k], axes[1, k]
        for field, color, width in ((exact[k], "tab:gray", 0.008), (learned[k], "tab:red", 0.004)):
            arrows = field / scale
            arrows = arrows / np.maximum(1.0, np.linalg.norm(arrows, axis=-1, keepdims=True))
            top.quiver(xy[..., 0], xy[..., 1], arrows[..., 0], arrows[..., 1], color=color, angles="xy",
                       scale_units="xy", scale=1.0 / (xy[1, 0, 0] - xy[0, 0, 0]), width=width)
        top.set_title(f"t = {t:.3g}: learned (red), exact (gray)", fontsize=8)
        error = np.linalg.norm(learned[k] - exact[k], axis=-1) / np.maximum(np.linalg.norm(exact[k], axis=-1),
                                                                           1e-12)
        image = bottom.imshow(error.T, origin="lower", extent=extent, cmap="viridis", vmin=0, vmax=1)
        bottom.set_title("error |s_θ - s| / |s|", fontsize=8)
        for ax in (top, bottom):
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(image, ax=axes[1, :].tolist(), shrink=0.8, label="relative error (clipped at 1)")
    save(fig, path)


def learning_curve(points: Sequence[dict[str, float]], path: Path) -> None:
    """Each metric of the periodic evaluation against the training step (top) and the training seconds (bottom);
    `points`: {step, seconds, metric: value, ...} in step order."""
    names = [k for k in points[0] if k not in ("step", "seconds")]
    fig = Figure(figsize=(3.4 * max(1, len(names)), 5.6), layout="constrained")
    axes = fig.subplots(2, max(1, len(names)), squeeze=False)
    for k, name in enumerate(names):
        values = [p.get(name, np.nan) for p in points]
        for ax, x, label in ((axes[0, k], "step", "step"), (axes[1, k], "seconds", "training seconds")):
            ax.plot([p[x] for p in points], values, marker="o", color="tab:blue")
            ax.set_xlabel(label)
        axes[0, k].set_title(name, fontsize=9)
    save(fig, path)


def paths(states: np.ndarray, reference: np.ndarray, path: Path, title: str, n_lines: int = 300) -> None:
    """A transport's paths: states (times, n, >= 2) of n points from their start (blue) to their end (red), the
    first n_lines of them drawn as lines, over the target's reference points (gray); first two coordinates."""
    fig = Figure(figsize=(5.5, 5.5))
    ax = fig.subplots()
    ax.scatter(reference[:, 0], reference[:, 1], s=1, alpha=0.15, color="tab:gray", label="target")
    lines = states[:, :n_lines, :2]
    ax.plot(lines[..., 0], lines[..., 1], color="tab:olive", alpha=0.35, linewidth=0.6)
    ax.scatter(states[0, :, 0], states[0, :, 1], s=2, alpha=0.6, color="tab:blue", label="start (t = 0)")
    ax.scatter(states[-1, :, 0], states[-1, :, 1], s=2, alpha=0.6, color="tab:red", label="end (t = 1)")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", markerscale=6, fontsize=8)
    ax.set_title(title, fontsize=9)
    save(fig, path)
