"""What a trained network outputs on one split: confusion matrix, ROC and precision-recall curves, predicted vs
actual, residuals.

The confusion matrix is `nntrain eval`'s (api.evaluate_run), so the picture and the command agree.
The ROC and precision-recall curves rank the rows by the score of class 1, the one `eval` ranks
by for roc_auc and average_precision (train.metrics.binary_score): P(class 1), or the difference
of two raw scores. Regression values are in the target's own units (data.scale_target undone).
"""

from __future__ import annotations

import numpy as np

from . import figure
from .runs import Run, checkpoint_text, choose_split, split_outputs


def _title(what: str, run: Run, exp, split: str, samples: int) -> str:
    return f"{what}: {run.name}, {split} split ({samples} samples), {checkpoint_text(exp)}"


# ---------------------------------------------------------------- confusion


def render_confusion(run: Run, fmt: str, which: str = "best", split: str | None = None) -> figure.Figure:
    """Heatmap of the confusion matrix (rows: true class, columns: predicted), each cell's count written in it and
    its colour the fraction of its row (the recall of the true class on the diagonal)."""
    from ...api import evaluate_run

    exp = run.exp(which)
    split = choose_split(exp, split)
    result = evaluate_run(run.path, which, split)
    confusion = np.asarray(result["confusion"], dtype=np.int64)
    classes = [str(c) for c in result["classes"]]
    k = len(classes)
    data = {
        "split": split,
        "checkpoint": result["checkpoint"],
        "samples": result["samples"],
        "classes": classes,
        "confusion": confusion.tolist(),
        "accuracy": float(np.trace(confusion) / max(1, confusion.sum())),
    }
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        rows = confusion.sum(axis=1, keepdims=True)
        fraction = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
        image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, label="fraction of the true class")
        if k <= 20:
            for (i, j), count in np.ndenumerate(confusion):
                ax.text(j, i, str(count), ha="center", va="center", fontsize=8 if k <= 10 else 6,
                        color="white" if fraction[i, j] > 0.5 else "black")  # fmt: skip
        ticks = np.arange(k) if k <= 30 else np.linspace(0, k - 1, 30).round().astype(int)
        ax.set_xticks(ticks, [classes[t] for t in ticks], rotation=90 if max(map(len, classes)) > 3 else 0)
        ax.set_yticks(ticks, [classes[t] for t in ticks])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.grid(False)
        ax.set_title(_title("Confusion matrix", run, exp, split, result["samples"]) + f"\naccuracy {data['accuracy']:.4f}")
        return figure.finish("confusion", fig, fmt, data)


# ---------------------------------------------------------------- ROC and precision-recall


def binary_scores(run: Run, which: str, split: str | None):
    """(exp, split, positive (n,) bool, score (n,)) of a binary classifier's rows of the split."""
    from ...train.metrics import binary_score

    exp = run.exp(which)
    split = choose_split(exp, split)
    y, z = split_outputs(exp, split)
    score = binary_score(np.asarray(exp.network.loss.predict(z), dtype=np.float64), exp.network.loss.probabilities)
    return exp, split, y.reshape(-1) == 1, score


def ranked(positive: np.ndarray, score: np.ndarray):
    """(thresholds, true positives, false positives) at each distinct score from the highest down: the rows
    scoring at least the threshold are predicted positive (tied rows enter together)."""
    order = np.argsort(-score, kind="stable")
    s = score[order]
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, np.int64)
    tps = np.cumsum(positive[order], dtype=np.int64)[ends]
    return s[ends], tps, ends + 1 - tps


def roc_curve(positive: np.ndarray, score: np.ndarray) -> dict:
    """False and true positive rates from (0, 0) through every distinct threshold to (1, 1), and the area (trapezoids)."""
    thresholds, tps, fps = ranked(positive, score)
    p, n = int(positive.sum()), int((~positive).sum())
    tpr = np.r_[0, tps] / p if p else np.full(len(tps) + 1, np.nan)
    fpr = np.r_[0, fps] / n if n else np.full(len(fps) + 1, np.nan)
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)) if p and n else float("nan")
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [None, *thresholds.tolist()], "auc": auc}


def pr_curve(positive: np.ndarray, score: np.ndarray) -> dict:
    """Precision and recall at every distinct threshold (highest first), and the average precision
    AP = sum_n (R_n - R_n-1) P_n (no interpolation), as `eval` computes average_precision."""
    thresholds, tps, fps = ranked(positive, score)
    p = int(positive.sum())
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / p if p else np.zeros(len(tps))
    ap = float(np.sum(np.diff(np.r_[0, recall]) * precision)) if p else 0.0
    return {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": thresholds.tolist(), "ap": ap,
            "positive_fraction": p / max(1, len(positive))}  # fmt: skip


def render_roc(run: Run, fmt: str, which: str = "best", split: str | None = None) -> figure.Figure:
    """The ROC curve of a binary classifier: true positive rate against false positive rate as the decision
    threshold on the score of class 1 falls; the diagonal is a random guess; the legend gives the area."""
    exp, split, positive, score = binary_scores(run, which, split)
    data = {"split": split, "checkpoint": exp.source, "samples": int(len(score)), "positive_class": exp.dataset.classes[1],
            **roc_curve(positive, score)}  # fmt: skip
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], ":", color="grey", label="random guess")
        ax.plot(data["fpr"], data["tpr"], drawstyle="default", label=f"ROC, area {data['auc']:.4f}")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel(f"true positive rate (recall of '{data['positive_class']}')")
        ax.legend(loc="lower right")
        ax.set_title(_title("ROC curve", run, exp, split, data["samples"]))
        return figure.finish("roc", fig, fmt, data)


def render_pr(run: Run, fmt: str, which: str = "best", split: str | None = None) -> figure.Figure:
    """Precision against recall of class 1 as the threshold falls (a step at each distinct score); the
    horizontal line is the share of positives, what a random guess reaches; the legend gives AP."""
    exp, split, positive, score = binary_scores(run, which, split)
    data = {"split": split, "checkpoint": exp.source, "samples": int(len(score)), "positive_class": exp.dataset.classes[1],
            **pr_curve(positive, score)}  # fmt: skip
    with figure.drawing():
        fig = figure.new_figure()
        ax = fig.subplots()
        ax.axhline(data["positive_fraction"], linestyle=":", color="grey", label="random guess")
        ax.plot([0, *data["recall"]], [data["precision"][0] if data["precision"] else 1, *data["precision"]],
                drawstyle="steps-pre", label=f"precision-recall, AP {data['ap']:.4f}")  # fmt: skip
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel(f"recall of '{data['positive_class']}'")
        ax.set_ylabel("precision")
        ax.legend(loc="lower left")
        ax.set_title(_title("Precision-recall curve", run, exp, split, data["samples"]))
        return figure.finish("pr", fig, fmt, data)


# ---------------------------------------------------------------- regression

MAX_TARGET_PANELS = 4


def regression_values(run: Run, which: str, split: str | None):
    """(exp, split, actual (n, k), predicted (n, k)) in the target's units."""
    exp = run.exp(which)
    split = choose_split(exp, split)
    y, z = split_outputs(exp, split)
    predicted = exp.to_target_units(np.asarray(exp.network.loss.predict(z), dtype=np.float64))
    n = len(y)
    return exp, split, np.asarray(y, dtype=np.float64).reshape(n, -1), np.asarray(predicted, dtype=np.float64).reshape(n, -1)


def _target_names(exp, k: int) -> list[str]:
    target = exp.config.data.target
    if isinstance(target, str) and k == 1:
        return [target]
    if isinstance(target, list) and len(target) == k:
        return [str(t) for t in target]
    return ["y"] if k == 1 else [f"y{j}" for j in range(k)]


def _regression_data(exp, split, actual, predicted) -> dict:
    residual = actual - predicted
    mse = float(np.mean(residual**2)) if residual.size else float("nan")
    total = np.sum((actual - actual.mean(axis=0)) ** 2, axis=0)
    r2 = float(np.mean(1 - np.sum(residual**2, axis=0) / np.where(total > 0, total, np.nan)))
    return {"split": split, "checkpoint": exp.source, "samples": int(len(actual)), "targets": _target_names(exp, actual.shape[1]),
            "actual": actual.tolist(), "predicted": predicted.tolist(), "residual": residual.tolist(),
            "mse": mse, "mae": float(np.mean(np.abs(residual))) if residual.size else float("nan"), "r2": r2}  # fmt: skip


def render_scatter(run: Run, fmt: str, which: str = "best", split: str | None = None) -> figure.Figure:
    """Predicted against actual value, one point per row (one panel per target column, up to 4); the diagonal
    is a perfect prediction."""
    exp, split, actual, predicted = regression_values(run, which, split)
    data = _regression_data(exp, split, actual, predicted)
    panels = min(actual.shape[1], MAX_TARGET_PANELS)
    with figure.drawing():
        fig = figure.new_figure()
        axes = np.atleast_1d(fig.subplots(1, panels, squeeze=False).reshape(-1))
        for j, ax in enumerate(axes):
            a, p = actual[:, j], predicted[:, j]
            both = np.concatenate([a, p])
            both = both[np.isfinite(both)]
            lo, hi = (float(both.min()), float(both.max())) if len(both) else (0.0, 1.0)
            ax.plot([lo, hi], [lo, hi], ":", color="grey", label="predicted = actual")
            ax.scatter(a, p, s=8, alpha=0.6, label="rows")
            ax.set_xlabel(f"actual {data['targets'][j]}")
            ax.set_ylabel(f"predicted {data['targets'][j]}")
            ax.set_aspect("equal", adjustable="datalim")
            ax.legend(loc="upper left", fontsize=7)
        fig.suptitle(_title("Predicted vs actual", run, exp, split, data["samples"]) + f" — R² {data['r2']:.4f}, MSE {data['mse']:.4g}")
        return figure.finish("scatter", fig, fmt, data)


def render_residuals(run: Run, fmt: str, which: str = "best", split: str | None = None) -> figure.Figure:
    """Residuals (actual - predicted) against the predicted value, with the zero line, and their histogram
    (of the first target column; the data holds all)."""
    exp, split, actual, predicted = regression_values(run, which, split)
    data = _regression_data(exp, split, actual, predicted)
    residual = actual[:, 0] - predicted[:, 0]
    with figure.drawing():
        fig = figure.new_figure()
        left, right = fig.subplots(1, 2, width_ratios=[2, 1])
        left.axhline(0, color="grey", linestyle=":")
        left.scatter(predicted[:, 0], residual, s=8, alpha=0.6)
        left.set_xlabel(f"predicted {data['targets'][0]}")
        left.set_ylabel("residual (actual - predicted)")
        finite = residual[np.isfinite(residual)]
        right.hist(finite, bins=min(40, max(5, len(finite) // 5)), orientation="horizontal", color="C0", alpha=0.8)
        right.axhline(0, color="grey", linestyle=":")
        right.sharey(left)
        right.set_xlabel("rows")
        right.set_title("distribution")
        fig.suptitle(_title("Residuals", run, exp, split, data["samples"]) + f" — MAE {data['mae']:.4g}")
        return figure.finish("residuals", fig, fmt, data)
