"""The decision boundary of a classifier of two inputs, over the data, and how it formed over the epochs.

The plane of the two features, in their own units (before data.scale), is cut into a grid x grid
lattice of points; the network decides the class of each (as `predict` does: scaled as the run's
training data, the run's decision rule). Each cell takes its class's colour, paler where the
network is less sure (the predicted class's probability, or a binary score's distance from its
threshold); the split's rows are drawn over it in the colours of their true classes.

`boundary-epochs` draws the same for every saved epoch checkpoint (train.checkpoint_every, and
last.npz), as small multiples (png, svg) or as an animated GIF (fmt "gif"), over one lattice, so
the frames compare.
"""

from __future__ import annotations

import numpy as np

from . import figure
from .runs import Run, checkpoint_epoch, checkpoint_text, choose_split, spread

MARGIN = 0.08  # of each axis' range, around the data
MAX_POINTS = 2000  # rows of the split drawn over the boundary (spread evenly over it)
MAX_PANELS = 12  # boundary-epochs: checkpoints shown, spread evenly from the first to the last


def lattice(exp, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of the grid: `grid` values over the range of every row of the data (all splits), plus a margin."""
    raw = exp.scaler.inverse(np.asarray(exp.dataset.X[: len(exp.dataset.y)], dtype=np.float64))
    low, high = np.nanmin(raw, axis=0), np.nanmax(raw, axis=0)
    span = np.where(high > low, high - low, 1.0)
    low, high = low - MARGIN * span, high + MARGIN * span
    return np.linspace(low[0], high[0], grid), np.linspace(low[1], high[1], grid)


def decide_grid(exp, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(class (len(ys), len(xs)) int, confidence in [0, 1] of the same shape) of the network at each lattice point."""
    from ...train.metrics import decide

    gx, gy = np.meshgrid(xs, ys)
    points = np.column_stack([gx.ravel(), gy.ravel()])
    loss = exp.network.loss
    with np.errstate(all="ignore"):
        z = exp.network.forward(exp.scaler.transform(points, exp.dtype), training=False)
        classes = decide(loss, z, exp.threshold)
        confidence = _confidence(loss, z, exp.dataset.n_classes)
    return classes.reshape(gx.shape).astype(np.int64), confidence.reshape(gx.shape)


def _confidence(loss, z: np.ndarray, n_classes: int) -> np.ndarray:
    """How sure the network is at each point, 0 (a tie) to 1: the decided class's probability rescaled from
    1/K..1, or for raw scores tanh of the margin between the two best."""
    if loss.probabilities:
        p = np.asarray(loss.predict(z), dtype=np.float64)
        if p.shape[1] == 1:
            p = np.hstack([1 - p, p])
        top = p.max(axis=1)
        return np.clip((top - 1 / n_classes) / (1 - 1 / n_classes), 0, 1)
    z = np.asarray(z, dtype=np.float64)
    if z.shape[1] == 1:
        return np.tanh(np.abs(z[:, 0]))
    two = np.sort(z, axis=1)[:, -2:]
    return np.tanh(two[:, 1] - two[:, 0])


def points_of(exp, split: str, max_points: int):
    """(raw features (n, 2), true classes (n,), positions in the split) of up to max_points rows of the split."""
    positions = spread(len(exp.splits[split]), max_points)
    X, y, _ = exp.rows(split, positions)
    return exp.scaler.inverse(np.asarray(X, dtype=np.float64)), np.asarray(y).reshape(-1), positions


def _image(classes: np.ndarray, confidence: np.ndarray, colors) -> np.ndarray:
    """RGB cells: each class's colour mixed with white, from 25% (a tie) to 85% (sure)."""
    palette = np.array([c[:3] for c in colors])
    alpha = (0.25 + 0.6 * confidence)[..., None]
    return palette[classes] * alpha + (1 - alpha)


def _draw(ax, exp, xs, ys, classes, confidence, points, labels, colors, legend: bool, size: float = 10) -> None:
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    ax.imshow(_image(classes, confidence, colors), origin="lower", extent=extent, aspect="auto", interpolation="nearest")
    for k, name in enumerate(exp.dataset.classes):
        chosen = labels == k
        ax.scatter(points[chosen, 0], points[chosen, 1], s=size, color=colors[k], edgecolors="black", linewidths=0.3,
                   label=f"class {name}")  # fmt: skip
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.grid(False)
    if legend:
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)


def _feature_names(exp) -> list[str]:
    names = list(exp.dataset.feature_names)
    return names if len(names) == 2 else ["x0", "x1"]


def render_boundary(run: Run, fmt: str, which: str = "best", split: str | None = None, grid: int = 200,
                    max_points: int = MAX_POINTS) -> figure.Figure:  # fmt: skip
    """The decision regions of checkpoint `which` over the plane, with the split's rows (default: train)."""
    exp = run.exp(which)
    split = choose_split(exp, split, ("train", "val", "test"))
    grid = _check_grid(grid)
    xs, ys = lattice(exp, grid)
    classes, confidence = decide_grid(exp, xs, ys)
    points, labels, positions = points_of(exp, split, max_points)
    accuracy = float(np.mean(_decide_points(exp, points) == labels)) if len(labels) else float("nan")
    data = {"split": split, "checkpoint": exp.source, "epoch": checkpoint_epoch(exp), "classes": list(exp.dataset.classes),
            "features": _feature_names(exp), "x": xs.tolist(), "y": ys.tolist(), "predicted": classes.tolist(),
            "confidence": confidence.tolist(), "points": points.tolist(), "labels": labels.tolist(),
            "rows": positions.tolist(), "accuracy": accuracy}  # fmt: skip
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        colors = figure.class_colors(len(exp.dataset.classes))
        _draw(ax, exp, xs, ys, classes, confidence, points, labels, colors, legend=True)
        ax.set_xlabel(data["features"][0])
        ax.set_ylabel(data["features"][1])
        ax.set_title(f"Decision boundary: {run.name}, {checkpoint_text(exp)}\n{split} split ({len(labels)} rows drawn,"
                     f" accuracy {accuracy:.4f})")  # fmt: skip
        return figure.finish("boundary", fig, fmt, data)


def _decide_points(exp, points: np.ndarray) -> np.ndarray:
    from ...train.metrics import decide

    with np.errstate(all="ignore"):
        return decide(exp.network.loss, exp.network.forward(exp.scaler.transform(points, exp.dtype), training=False), exp.threshold)


def _check_grid(grid) -> int:
    from ...errors import NntrainError

    if not isinstance(grid, (int, np.integer)) or isinstance(grid, bool) or not 2 <= grid <= 2000:
        raise NntrainError(f"grid must be a whole number of cells per axis from 2 to 2000, got {grid!r}")
    return int(grid)


def epoch_checkpoints(run: Run, frames: int) -> list[tuple[int, str]]:
    """Up to `frames` of the run's (epoch, checkpoint path) pairs, spread evenly from the first to the last."""
    from ...errors import NntrainError

    found = run.epoch_checkpoints()
    if len(found) < 2:
        raise NntrainError(
            f"{run.name} has {len(found)} epoch checkpoint(s); the boundary's evolution needs at least 2"
            " (train with train.checkpoint_every: 1, or a few)"
        )
    if not isinstance(frames, (int, np.integer)) or isinstance(frames, bool) or frames < 2:
        raise NntrainError(f"frames must be a whole number of at least 2, got {frames!r}")
    return [(found[k][0], str(found[k][1])) for k in spread(len(found), int(frames))]


def render_boundary_epochs(run: Run, fmt: str, split: str | None = None, grid: int = 100, frames: int = MAX_PANELS,
                           max_points: int = MAX_POINTS) -> figure.Figure:  # fmt: skip
    """The decision regions at each chosen epoch checkpoint: small multiples (png, svg) or one GIF frame each."""
    base = run.exp("last")
    split = choose_split(base, split, ("train", "val", "test"))
    grid = _check_grid(grid)
    xs, ys = lattice(base, grid)
    points, labels, positions = points_of(base, split, max_points)
    chosen = epoch_checkpoints(run, frames)
    epochs, predicted, confidences = [], [], []
    for epoch, path in chosen:
        exp = run.exp(path, data=False)  # only the parameters differ: the lattice and points are the run's
        classes, confidence = decide_grid(exp, xs, ys)
        epochs.append(epoch)
        predicted.append(classes)
        confidences.append(confidence)
    data = {"split": split, "epochs": epochs, "checkpoints": [path for _, path in chosen], "classes": list(base.dataset.classes),
            "features": _feature_names(base), "x": xs.tolist(), "y": ys.tolist(),
            "predicted": [p.tolist() for p in predicted], "points": points.tolist(), "labels": labels.tolist(),
            "rows": positions.tolist()}  # fmt: skip
    colors = figure.class_colors(len(base.dataset.classes))
    names = data["features"]
    with figure.drawing():
        if fmt == "gif":
            frames_rgb = []
            for epoch, classes, confidence in zip(epochs, predicted, confidences):
                fig = figure.new_figure()
                ax = fig.subplots()
                _draw(ax, base, xs, ys, classes, confidence, points, labels, colors, legend=True)
                ax.set_xlabel(names[0])
                ax.set_ylabel(names[1])
                ax.set_title(f"Decision boundary: {run.name}, epoch {epoch} of {epochs[-1]} ({split} split)")
                frames_rgb.append(figure.rgb_frame(fig))
            return figure.Figure("boundary-epochs", "gif", figure.gif(frames_rgb), data, (frames_rgb[0].shape[1], frames_rgb[0].shape[0]))
        rows, columns = figure.tile_grid(len(epochs), aspect=figure.SIZE[0] / figure.SIZE[1])
        fig = figure.new_figure()
        axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True)).reshape(-1)
        for ax, epoch, classes, confidence in zip(axes, epochs, predicted, confidences):
            _draw(ax, base, xs, ys, classes, confidence, points, labels, colors, legend=False, size=2)
            ax.set_title(f"epoch {epoch}", fontsize=8)
            ax.tick_params(labelsize=6)
        for ax in axes[len(epochs) :]:
            ax.set_visible(False)
        fig.supxlabel(names[0])
        fig.supylabel(names[1])
        fig.suptitle(f"Decision boundary over the epochs: {run.name} ({split} split, {len(labels)} rows drawn)")
        return figure.finish("boundary-epochs", fig, fmt, data)
