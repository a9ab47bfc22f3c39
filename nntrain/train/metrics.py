"""Metrics accumulated batch by batch from outputs already computed (no second forward pass)."""

from __future__ import annotations

import numbers

import numpy as np

# computed from the confusion matrix
CONFUSION_METRICS = ("balanced_accuracy", "f1", "precision", "recall")
# computed from every row's outputs (`loss.predict(z)`), kept until `result`: a ranking is not a sum over batches
SCORE_METRICS = ("roc_auc", "average_precision", "log_loss")
# need class probabilities: a loss whose `probabilities` is False (scores, e.g. hinge) cannot give them
PROBABILITY_METRICS = ("log_loss",)


def needs_probabilities(names) -> list[str]:
    """The metrics among `names` that need a loss with class probabilities (`loss.probabilities`)."""
    return [m for m in names if m in PROBABILITY_METRICS]


def check_threshold(loss, threshold: float, width: int | None = None) -> None:
    """ValueError unless `threshold` can decide between 2 classes from this loss's probabilities.

    `width` is the output width when known (1 or 2 for a binary task).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0 <= threshold <= 1:
        raise ValueError(f"the decision threshold must be a number in [0, 1], got {threshold!r}")
    if not loss.probabilities:
        raise ValueError(
            f"a decision threshold needs class probabilities, which loss '{loss.name}' does not give "
            "(its outputs are scores)"
        )
    if width is not None and width not in (1, 2):
        raise ValueError(f"a decision threshold needs a binary task (2 classes); the output has {width} columns")


def decide(loss, z: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Class indices (batch,) from outputs z: `loss.decide(z)`, or with a threshold 1 where P(class 1) >= threshold.

    P(class 1) is `loss.predict(z)`'s last column: the one unit of a binary loss, column 1 of two.
    ValueError for a threshold with a loss without probabilities or more than 2 output columns.
    """
    if threshold is None:
        return loss.decide(z)
    check_threshold(loss, threshold, z.shape[1])
    return (loss.predict(z)[:, -1] >= threshold).astype(np.int64)


def per_step_rows(z: np.ndarray, y: np.ndarray, lengths: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Outputs (N, T, K) and labels (N, T) of a prediction per step -> (real steps, K) and (real steps,)."""
    if lengths is None:
        return z.reshape(-1, z.shape[-1]), np.asarray(y).reshape(-1)
    real = np.arange(z.shape[1])[None, :] < np.asarray(lengths)[:, None]
    return z[real], np.asarray(y)[real]


class Metrics:
    """Running loss and metrics over an epoch or an evaluation.

    Classification: accuracy from `decide(loss, z, threshold)` (`loss.decide(z)` without a
    threshold) against class indices y: (batch,).
    With `n_classes` the accumulator also keeps `confusion`, an (n_classes, n_classes) int64
    count matrix C (rows: true class, columns: predicted class), from which `result` gives
      balanced_accuracy  the mean recall C_kk / sum_j C_kj over the classes present in y
                         (scikit-learn's balanced_accuracy_score);
      f1                 the macro mean of F1_k = 2 C_kk / (sum_j C_kj + sum_j C_jk) over the
                         classes that are true or predicted at least once (scikit-learn's
                         f1_score(average='macro', zero_division=0) with its default labels);
      precision, recall  P_k = C_kk / sum_j C_jk, R_k = C_kk / sum_j C_kj (0 where the sum is 0):
                         of class 1 for 2 classes (scikit-learn's average='binary'), else their
                         macro mean over the classes true or predicted at least once
                         (average='macro', zero_division=0);
    and `per_class()` all four per class.
    Scores (kept only when one of these is configured: every row's `loss.predict(z)`, float64):
      roc_auc            area under the ROC curve of the score of class 1 (2 classes), or the
                         one-vs-rest macro mean over the classes (scikit-learn's roc_auc_score,
                         multi_class='ovr'); ties count one half; nan when a class has no rows;
      average_precision  sum_n (R_n - R_{n-1}) P_n over the thresholds, of class 1 or the macro
                         mean over the one-hot columns of all classes (average_precision_score);
      log_loss           -mean_i log clip(P_i,y_i, eps, 1 - eps), eps of float64 (log_loss).
    The score of class 1 is P(class 1) for a loss with probabilities, else the score of a
    one-unit output, or z_1 - z_0 of two columns (what argmax compares).
    With `threshold` (2 classes, a loss with probabilities) rows are predicted class 1 where
    P(class 1) >= threshold; accuracy and the confusion matrix follow.
    Regression: mse, mae and r2 (averaged over outputs) against y: (batch,) or (batch, k).
    """

    def __init__(
        self,
        loss,
        names: list[str],
        to_target_units=None,
        *,
        n_classes: int | None = None,
        threshold: float | None = None,
    ):
        self.loss_fn, self.names = loss, names
        self.to_target_units = to_target_units  # regression outputs back to the targets' units
        needs = [m for m in CONFUSION_METRICS + SCORE_METRICS if m in names]
        if needs and n_classes is None:
            raise ValueError(f"metrics {', '.join(needs)} need the number of classes: Metrics(..., n_classes=...)")
        refused = needs_probabilities(names)
        if refused and not loss.probabilities:
            raise ValueError(
                f"metric {', '.join(refused)} needs class probabilities, which loss '{loss.name}' does not give "
                "(its outputs are scores); use cross_entropy or binary_cross_entropy"
            )
        if threshold is not None:
            check_threshold(loss, threshold)
            if n_classes != 2:
                raise ValueError(f"a decision threshold needs a binary task (2 classes), got n_classes={n_classes}")
        self.n_classes, self.threshold = n_classes, threshold
        self.confusion = None if n_classes is None else np.zeros((n_classes, n_classes), dtype=np.int64)
        self.n = 0
        self.loss_sum = self.loss_weight = 0.0  # batches' mean losses weighted by their rows (or class weights)
        self.correct = 0
        self.sse = self.sae = self.y_sum = self.y_sq = 0.0
        self.shift = None  # targets are summed relative to the first batch's mean, so r2 keeps its precision
        # Every row's outputs and labels, one array per batch, only for the metrics that rank or need them all.
        keep = any(m in names for m in SCORE_METRICS)
        self.scores: list[np.ndarray] | None = [] if keep else None
        self.labels: list[np.ndarray] | None = [] if keep else None
        # What `add` computes, decided once (it runs for every training batch).
        self._accuracy = "accuracy" in names
        self._decide = self._accuracy or self.confusion is not None
        self._regression = any(m in names for m in ("mse", "mae", "r2"))

    def without_confusion(self) -> Metrics:
        """Stop keeping the confusion matrix unless a metric needs it (the trainer's per-batch training metrics).

        Counting it costs a dozen small numpy calls per batch, which shows at small batch sizes.
        The outputs kept for roc_auc, average_precision and log_loss stay.
        """
        if not any(m in self.names for m in CONFUSION_METRICS):
            self.confusion = None
            self._decide = self._accuracy
        return self

    def add(self, loss: float, z: np.ndarray, y: np.ndarray, lengths: np.ndarray | None = None) -> None:
        """One batch: its mean loss, the outputs z it was computed from, its labels / values y.

        Call it right after the loss's forward on this batch: a class-weighted loss's mean
        counts with the batch's sum of weights (`loss.batch_weight`), so that the result is the
        weighted mean over all rows whatever the batches.

        A prediction per step (z: (N, T, K), y: (N, T): a language model, sequence labelling)
        counts every real step as a row: the steps before each sequence's length (`lengths`,
        None: all T), so accuracy is per step and the loss the mean over real steps.

        Nothing of z or y is kept (the trainer reuses their arrays for the next batch), except
        copies of `loss.predict(z)` and y when a metric needs every row's outputs.
        """
        if z.ndim == 3:
            z, y = per_step_rows(z, y, lengths)
        batch = len(z)
        # Everything is computed (and checked) before anything is added, so a refused batch leaves no trace.
        if self._decide:
            predicted = decide(self.loss_fn, z, self.threshold)
            counts = None if self.confusion is None else self._count(np.asarray(y), np.asarray(predicted))
        if self.scores is not None:
            labels = np.asarray(y).reshape(-1).astype(np.int64)  # a copy
            scores = np.array(self.loss_fn.predict(z), dtype=np.float64)  # a copy: predict may return z itself
            self._check_scores(labels, scores)
            self.scores.append(scores)
            self.labels.append(labels)
        if self._decide:
            if counts is not None:
                self.confusion += counts
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

    def _check_scores(self, labels: np.ndarray, scores: np.ndarray) -> None:
        k = self.n_classes
        if labels.size and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(f"true class indices must lie in [0, {k}); got {labels.min()}..{labels.max()}")
        widths = (1, 2) if k == 2 else (k,)
        if scores.ndim != 2 or scores.shape[0] != len(labels) or scores.shape[1] not in widths:
            raise ValueError(f"outputs of shape {scores.shape} for {len(labels)} rows of {k} classes")

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

    def kept(self) -> tuple[np.ndarray, np.ndarray]:
        """All rows' labels (n,) and `loss.predict` outputs (n, width) kept so far, float64."""
        if self.scores is None:
            raise ValueError("no outputs are kept: none of roc_auc, average_precision, log_loss is among the metrics")
        if len(self.scores) != 1:  # joined once; later batches append to the joined array's list
            width = 1 if self.n_classes == 2 else self.n_classes
            self.scores = [np.concatenate(self.scores) if self.scores else np.empty((0, width))]
            self.labels = [np.concatenate(self.labels) if self.labels else np.empty(0, dtype=np.int64)]
        return self.labels[0], self.scores[0]

    def per_class(self) -> dict[str, list]:
        """Precision, recall, F1 (zero_division=0) and support of every class, from the confusion matrix.

        scikit-learn's precision_recall_fscore_support(labels=range(n_classes), zero_division=0).
        """
        if self.confusion is None:
            raise ValueError("per_class needs the confusion matrix: Metrics(..., n_classes=...)")
        precision, recall, f1 = class_scores(self.confusion)
        return {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": self.confusion.sum(axis=1).tolist(),
        }

    def result(self) -> dict[str, float]:
        """The loss, then each metric of `names` in their order."""
        out = {"loss": self.loss_sum / self.loss_weight if self.loss_weight else 0.0}
        if "accuracy" in self.names:
            out["accuracy"] = self.correct / self.n
        if "balanced_accuracy" in self.names:
            out["balanced_accuracy"] = balanced_accuracy(self.confusion)
        if "f1" in self.names:
            out["f1"] = macro_f1(self.confusion)
        if "precision" in self.names or "recall" in self.names:
            out["precision"], out["recall"] = precision_recall(self.confusion)
        if self.scores is not None:
            y, scores = self.kept()
            binary = self.n_classes == 2
            if binary:  # one score per row: P(class 1), or what the decision compares
                score = binary_score(scores, self.loss_fn.probabilities)
            if "roc_auc" in self.names:
                out["roc_auc"] = roc_auc(y == 1, score) if binary else ovr_roc_auc(y, scores)
            if "average_precision" in self.names:
                ap = average_precision(y == 1, score) if binary else macro_average_precision(y, scores)
                out["average_precision"] = ap
            if "log_loss" in self.names:
                out["log_loss"] = log_loss(y, scores)
        if "mse" in self.names:
            out["mse"] = float(np.mean(self.sse) / self.n)
        if "mae" in self.names:
            out["mae"] = float(np.mean(self.sae) / self.n)
        if "r2" in self.names:
            total = self.y_sq - self.y_sum**2 / self.n
            out["r2"] = float(np.mean(1 - self.sse / np.where(total > 0, total, np.nan)))
        # In the order asked for (train.metrics), as metrics.csv has them: the screen, summary.json and eval agree.
        return {"loss": float(out["loss"]), **{k: float(out[k]) for k in self.names if k in out}}


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


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, 0 where b is 0 (scikit-learn's zero_division=0)."""
    return np.divide(a, b, out=np.zeros(len(a)), where=b > 0)


def class_scores(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: precision C_kk / column_k, recall C_kk / row_k, F1 2 C_kk / (row_k + column_k); 0 over 0 is 0."""
    tp, true, predicted = np.diagonal(confusion), confusion.sum(axis=1), confusion.sum(axis=0)
    return _ratio(tp, predicted), _ratio(tp, true), _ratio(2 * tp, true + predicted)


def precision_recall(confusion: np.ndarray) -> tuple[float, float]:
    """Precision and recall of class 1 for 2 classes, else macro over the classes true or predicted (nan: no rows)."""
    if not confusion.any():
        return float("nan"), float("nan")
    precision, recall, _ = class_scores(confusion)
    if len(confusion) == 2:  # average='binary', pos_label=1
        return float(precision[1]), float(recall[1])
    seen = (confusion.sum(axis=1) + confusion.sum(axis=0)) > 0
    return float(np.mean(precision[seen])), float(np.mean(recall[seen]))


def binary_score(outputs: np.ndarray, probabilities: bool) -> np.ndarray:
    """The score of class 1 of a binary task: P(class 1) (the last column), one unit's score, or z_1 - z_0.

    Two columns of raw scores are decided by argmax, so their difference is what ranks the rows.
    """
    if probabilities or outputs.shape[1] == 1:
        return outputs[:, -1]
    return outputs[:, 1] - outputs[:, 0]


def _ranked(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives (int64) above each distinct score, from the highest score down.

    Entry n counts the rows whose score is >= the n-th highest distinct score: rows with tied
    scores enter together, which is what makes ties count one half in the ROC area.
    """
    if len(score) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    order = np.argsort(score, kind="stable")[::-1]
    ranked = score[order]
    ends = np.flatnonzero(np.r_[ranked[1:] != ranked[:-1], True])  # the last row of each tied group
    tps = np.cumsum(positive[order], dtype=np.int64)[ends]
    return tps, ends + 1 - tps


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids between the distinct thresholds), nan without both classes.

    AUC = sum_n (FP_n - FP_{n-1}) (TP_n + TP_{n-1}) / (2 P N): the probability that a positive
    scores above a negative, ties counting one half (Mann-Whitney U / (P N)). The sum is of
    integers, exact, so the area is rounded once. nan also for a nan score.
    """
    tps, fps = _ranked(positive, score)
    if len(tps) == 0 or tps[-1] == 0 or fps[-1] == 0 or np.isnan(score).any():
        return float("nan")
    tp, fp = np.r_[0, tps], np.r_[0, fps]
    twice = int(np.dot(np.diff(fp), tp[1:] + tp[:-1]))
    return twice / (2 * int(tps[-1]) * int(fps[-1]))


def average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """AP = sum_n (R_n - R_{n-1}) P_n, R_n = TP_n / P, P_n = TP_n / (TP_n + FP_n) at each distinct threshold.

    No interpolation (scikit-learn's average_precision_score). 0 when no row is positive (as
    scikit-learn, whose recall is then 1 everywhere); nan with no rows or a nan score.
    """
    tps, fps = _ranked(positive, score)
    if len(tps) == 0 or np.isnan(score).any():
        return float("nan")
    if tps[-1] == 0:
        return 0.0
    return float(np.dot(np.diff(tps, prepend=0), tps / (tps + fps)) / tps[-1])


def ovr_roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """Macro mean over the classes c of roc_auc(y == c, scores[:, c]): nan when a class has no rows (or all)."""
    return float(np.mean([roc_auc(y == c, scores[:, c]) for c in range(scores.shape[1])]))


def macro_average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Macro mean over all classes c of average_precision(y == c, scores[:, c]); a class without rows scores 0."""
    return float(np.mean([average_precision(y == c, scores[:, c]) for c in range(scores.shape[1])]))


def log_loss(y: np.ndarray, probabilities: np.ndarray) -> float:
    """-mean_i log clip(P_i,y_i, eps, 1 - eps), eps = float64's machine epsilon (scikit-learn's log_loss).

    One column is P(class 1): P(class 0) is 1 - P(class 1), computed before the clip, as
    scikit-learn does. Rows are not renormalised. nan with no rows.
    """
    if len(y) == 0:
        return float("nan")
    p = probabilities if probabilities.shape[1] > 1 else np.hstack([1 - probabilities, probabilities])
    eps = np.finfo(np.float64).eps
    picked = np.clip(p[np.arange(len(y)), y], eps, 1 - eps)
    return float(-np.mean(np.log(picked)))
