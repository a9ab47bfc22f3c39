"""Learning curves: metrics.csv drawn per epoch, as an image (matplotlib) or as a few lines of Unicode.

One panel per quantity: the loss, each metric of train.metrics, the learning rate. In each, the
training split is a solid line and the validation split a dashed one; several runs are overlaid,
one colour per run. A dotted vertical line marks each run's best epoch (the one best.npz holds),
with a dot on the monitored quantity (train.monitor) at that epoch.
"""

from __future__ import annotations

import math

import numpy as np

from . import figure
from .runs import Run

SPLIT_STYLE = {"train": "-", "val": "--"}


def panels_of(runs: list[Run]) -> list[str]:
    """The quantities drawn, in order: loss, then every metric any run has (first seen first), then lr."""
    names = ["loss"]
    for run in runs:
        columns, _ = run.metrics()
        for c in columns:
            for split in SPLIT_STYLE:
                if c.startswith(split + "_"):
                    name = c[len(split) + 1 :]
                    if name not in names:
                        names.append(name)
    if any("lr" in run.metrics()[0] for run in runs):
        names.append("lr")
    return names


def curve_data(runs: list[Run]) -> dict:
    """The numbers the curves draw: per run its epochs, every metrics.csv column but seconds, best epoch, monitor."""
    out = []
    for run in runs:
        columns, values = run.metrics()
        out.append({
            "run": run.name,
            "path": str(run.path),
            "epoch": [int(e) for e in values.get("epoch", [])],
            "series": {c: figure.as_list(values[c]) for c in columns if c not in ("epoch", "seconds")},
            "best_epoch": run.best_epoch(),
            "monitor": run.monitor(),
        })
    return {"runs": out, "panels": panels_of(runs)}


def render_curves(runs: list[Run], fmt: str) -> figure.Figure:
    """Loss, metrics and learning rate per epoch of one or several runs (see the module docstring)."""
    from ...errors import NntrainError

    data = curve_data(runs)
    empty = [r["run"] for r in data["runs"] if not r["epoch"]]
    if empty:
        raise NntrainError(f"{', '.join(empty)}: metrics.csv has no finished epoch yet; no curves to draw")
    panels = data["panels"]
    columns = 1 if len(panels) == 1 else 2
    rows = math.ceil(len(panels) / columns)
    size = (figure.SIZE[0], max(figure.SIZE[1], 2.5 * rows))
    with figure.drawing():
        fig = figure.new_figure(size)
        axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False, sharex=True)).reshape(-1)
        colors = figure.class_colors(len(runs))
        several = len(runs) > 1
        for ax, panel in zip(axes, panels):
            for k, run in enumerate(data["runs"]):
                epochs = run["epoch"]
                series = run["series"]
                if panel == "lr":
                    if "lr" in series:
                        ax.plot(epochs, series["lr"], color=colors[k], label=run["run"] if several else "lr")
                    continue
                for split, style in SPLIT_STYLE.items():
                    column = f"{split}_{panel}"
                    if column in series:
                        label = f"{run['run']} {split}" if several else split
                        ax.plot(epochs, series[column], style, color=colors[k], label=label, marker="." if len(epochs) < 30 else None)
                best = run["best_epoch"]
                if best is not None:
                    ax.axvline(best, color=colors[k], linestyle=":", linewidth=1)
                    monitor = run["monitor"]
                    if monitor in series and monitor.split("_", 1)[1] == panel and best in epochs:
                        ax.plot([best], [series[monitor][epochs.index(best)]], "o", color=colors[k], markersize=6)
            figure.integer_ticks(ax)
            ax.set_title("learning rate" if panel == "lr" else panel)
            ax.set_ylabel(panel)
            if panel == "lr" and _positive_and_varied([r["series"].get("lr", []) for r in data["runs"]]):
                ax.set_yscale("log")
            if panel == "loss" and _spans_decades([r["series"].get(c, []) for r in data["runs"] for c in ("train_loss", "val_loss")]):
                ax.set_yscale("log")
            ax.legend(fontsize=7, loc="best")
        for ax in axes[len(panels) :]:
            ax.set_visible(False)
        for ax in axes[max(0, len(panels) - columns) : len(panels)]:
            ax.set_xlabel("epoch")
        names = ", ".join(r["run"] for r in data["runs"])
        if several:
            best = " — dotted: each run's best epoch" if any(r["best_epoch"] for r in data["runs"]) else ""
        else:
            best = f" — best epoch {data['runs'][0]['best_epoch']} (dotted)" if data["runs"][0]["best_epoch"] else ""
        fig.suptitle(f"Learning curves: {names}{best}")
        return figure.finish("curves", fig, fmt, data)


def _finite(values) -> np.ndarray:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return a[np.isfinite(a)]


def _positive_and_varied(lists) -> bool:
    a = _finite([v for values in lists for v in values])
    return len(a) > 1 and a.min() > 0 and a.max() / a.min() >= 10


def _spans_decades(lists) -> bool:
    """A loss that falls by more than 100x reads better on a log scale."""
    return _positive_and_varied(lists) and (lambda a: a.max() / a.min() >= 100)(_finite([v for l in lists for v in l]))


# ---------------------------------------------------------------- terminal

TRAIN_MARK, VAL_MARK, BOTH_MARK = "●", "○", "◉"


def terminal_curves(runs: list[Run], width: int = 72, height: int = 12) -> str:
    """The loss per epoch of each run as a `height`-line chart at most `width` characters wide, no matplotlib.

    Per run: a title line, `height` lines of the chart (train ●, validation ○, both ◉; the y axis
    labelled with the highest and lowest loss), the x axis with ▲ under the best epoch, the first
    and last epoch numbers, and a legend with the last epoch's values. Runs are separated by a
    blank line.
    """
    width, height = max(width, 24), max(height, 3)
    blocks = []
    for run in runs:
        columns, values = run.metrics()
        epochs = values.get("epoch", np.array([]))
        title = f"{run.name}: loss per epoch"
        if not len(epochs):
            blocks.append(f"{title}\n(no finished epoch yet)")
            continue
        series = [(mark, split, values[f"{split}_loss"]) for mark, split in ((TRAIN_MARK, "train"), (VAL_MARK, "val")) if f"{split}_loss" in values]
        finite = np.concatenate([s[np.isfinite(s)] for _, _, s in series]) if series else np.array([])
        low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
        if high == low:
            high = low + 1.0
        labels = [f"{high:.4g}", f"{low:.4g}"]
        pad = max(len(s) for s in labels)
        plot_width = width - pad - 2  # "label ┤" / "      │"
        grid = [[" "] * plot_width for _ in range(height)]
        columns_of = _columns(len(epochs), plot_width)
        for mark, _, s in series:
            for j, v in zip(columns_of, s):
                if not math.isfinite(v):
                    continue
                r = int(round((high - v) / (high - low) * (height - 1)))
                cell = grid[r][j]
                grid[r][j] = mark if cell in (" ", mark) else BOTH_MARK
        lines = [title]
        for r in range(height):
            label = labels[0] if r == 0 else labels[1] if r == height - 1 else ""
            lines.append(f"{label:>{pad}} {'┤' if label else '│'}" + "".join(grid[r]).rstrip())
        axis = ["─"] * plot_width
        best = run.best_epoch()
        if best is not None and best in epochs:
            axis[columns_of[int(np.flatnonzero(epochs == best)[0])]] = "▲"
        lines.append(" " * pad + " └" + "".join(axis))
        first, last = f"{int(epochs[0])}", f"epoch {int(epochs[-1])}"
        lines.append(" " * (pad + 2) + first + last.rjust(plot_width - len(first)))
        legend = [f"{mark} {split} {s[-1]:.4g}" for mark, split, s in series]
        if best is not None:
            legend.append(f"▲ best epoch {best}")
        lines.append(" " * (pad + 2) + "  ".join(legend))
        blocks.append("\n".join(line[:width] for line in lines))
    return "\n\n".join(blocks)


def _columns(n: int, plot_width: int) -> list[int]:
    """The chart column of each of n epochs: spread over the width (several epochs share a column when n > width)."""
    if n == 1:
        return [0]
    return [int(round(k * (plot_width - 1) / (n - 1))) for k in range(n)]
