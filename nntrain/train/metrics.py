"""Metrics accumulated batch by batch from outputs already computed (no second forward pass)."""

from __future__ import annotations

import numpy as np

CONFUSION_METRICS = ("balanced_accuracy", "f1")  # computed from the confusion matrix


class Metrics:
    """Running loss and metrics over an epoch or an evaluation.

    Classification: accuracy from `loss.decide(z)` against class indices y: (batch,).
    With `n_classes` the accumulator also keeps `confusion`, an (n_classes, n_classes) int64
    count matrix (rows: true class, columns: predicted class), from which `result` gives
      balanced_accuracy  the mean recall C_kk / sum_j C_kj over the classes present in y
                         (scikit-learn's balanced_accuracy_score);
      f1                 the macro mean of F1_k = 2 C_kk / (sum_j C_kj + sum_j C_jk) over the
                         classes that are true or predicted at least once (scikit-learn's
                         f1_score(average='macro', zero_division=0) with its default labels).
    Regression: mse, mae and r2 (averaged over outputs) against y: (batch,) or (batch, k).
    """

    def __init__(self, loss, names: list[str], to_target_units=None, *, n_classes: int | None = None):
        self.loss_fn, self.names = loss, names
        self.to_target_units = to_target_units  # regression outputs back to the targets' units
        needs = [m for m in CONFUSION_METRICS if m in names]
        if needs and n_classes is None:
            raise ValueError(f"metrics {', '.join(needs)} need the number of classes: Metrics(..., n_classes=...)")
        self.n_classes = n_classes
        self.confusion = None if n_classes is None else np.zeros((n_classes, n_classes), dtype=np.int64)
        self.n = 0
        self.loss_sum = self.loss_weight = 0.0  # batches' mean losses weighted by their rows (or class weights)
        self.correct = 0
        self.sse = self.sae = self.y_sum = self.y_sq = 0.0
        self.shift = None  # targets are summed relative to the first batch's mean, so r2 keeps its precision
        # What `add` computes, decided once (it runs for every training batch).
        self._accuracy = "accuracy" in names
        self._decide = self._accuracy or self.confusion is not None
        self._regression = any(m in names for m in ("mse", "mae", "r2"))

    def without_confusion(self) -> Metrics:
        """Stop keeping the confusion matrix unless a metric needs it (the trainer's per-batch training metrics).

        Counting it costs a dozen small numpy calls per batch, which shows at small batch sizes.
        """
        if not any(m in self.names for m in CONFUSION_METRICS):
            self.confusion = None
            self._decide = self._accuracy
        return self

    def add(self, loss: float, z: np.ndarray, y: np.ndarray) -> None:
        """One batch: its mean loss, the outputs z it was computed from, its labels / values y.

        Call it right after the loss's forward on this batch: a class-weighted loss's mean
        counts with the batch's sum of weights (`loss.batch_weight`), so that the result is the
        weighted mean over all rows whatever the batches.

        Nothing of z or y is kept (the trainer reuses their arrays for the next batch).
        """
        batch = len(z)
        if self._decide:
            predicted = self.loss_fn.decide(z)
            if self.confusion is not None:  # counted (and checked) before anything is added
                self.confusion += self._count(np.asarray(y), np.asarray(predicted))
            if self._accuracy:
                self.correct += int(np.count_nonzero(predicted == y))
        self.n += batch
        weight = getattr(self.loss_fn, "batch_weight", None)
        weight = batch if weight is None else weight
        self.loss_weight += weight
        self.loss_sum += loss * weight
        if self._regression:
            target = y.reshape(batch, -1)
            out = self.to_target_units(z) if self.to_target_units else z
            diff = out.astype(np.float64) - target
            self.sse = self.sse + np.sum(diff * diff, axis=0)
            self.sae = self.sae + np.sum(np.abs(diff), axis=0)
            if self.shift is None:
                self.shift = target.mean(axis=0)
            centred = target - self.shift
            self.y_sum = self.y_sum + centred.sum(axis=0)
            self.y_sq = self.y_sq + np.sum(centred * centred, axis=0)

    def _count(self, y: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        """One batch's confusion matrix: cell (true, predicted) is bin true * k + predicted of a bincount."""
        k = self.n_classes
        y, predicted = y.reshape(-1).astype(np.int64, copy=False), predicted.reshape(-1).astype(np.int64, copy=False)
        for what, labels in (("true", y), ("predicted", predicted)):
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"{what} class indices must lie in [0, {k}); got {labels.min()}..{labels.max()}")
        codes = y * k
        codes += predicted
        return np.bincount(codes, minlength=k * k).reshape(k, k)

    def result(self) -> dict[str, float]:
        out = {"loss": self.loss_sum / self.loss_weight if self.loss_weight else 0.0}
        if "accuracy" in self.names:
            out["accuracy"] = self.correct / self.n
        if "balanced_accuracy" in self.names:
            out["balanced_accuracy"] = balanced_accuracy(self.confusion)
        if "f1" in self.names:
            out["f1"] = macro_f1(self.confusion)
        if "mse" in self.names:
            out["mse"] = float(np.mean(self.sse) / self.n)
        if "mae" in self.names:
            out["mae"] = float(np.mean(self.sae) / self.n)
        if "r2" in self.names:
            total = self.y_sq - self.y_sum**2 / self.n
            out["r2"] = float(np.mean(1 - self.sse / np.where(total > 0, total, np.nan)))
        return {k: float(v) for k, v in out.items() if k == "loss" or k in self.names}


def balanced_accuracy(confusion: np.ndarray) -> float:
    """Mean per-class recall over the classes with at least one true row (nan when there is none)."""
    support = confusion.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    return float(np.mean(np.diagonal(confusion)[present] / support[present]))


def macro_f1(confusion: np.ndarray) -> float:
    """Macro F1 over the classes that are true or predicted at least once (nan when there is none).

    F1_k = 2 tp / (2 tp + fp + fn) = 2 C_kk / (row_k + column_k); a class predicted but never
    true (or true but never predicted) scores 0, as scikit-learn with zero_division=0.
    """
    seen = confusion.sum(axis=1) + confusion.sum(axis=0)
    labels = seen > 0
    if not labels.any():
        return float("nan")
    return float(np.mean(2 * np.diagonal(confusion)[labels] / seen[labels]))
