"""Metrics: confusion matrix accumulated batch by batch, balanced accuracy and macro F1, the existing metrics."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from nntrain.engine.losses import LOSSES
from nntrain.train.metrics import Metrics

CE = LOSSES["cross_entropy"]()


def scores_for(predicted, n_classes):
    """Outputs whose argmax is `predicted`."""
    z = np.zeros((len(predicted), n_classes))
    z[np.arange(len(predicted)), predicted] = 1.0
    return z


# Worked example, 4 classes; class 3 is neither true nor predicted.
Y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
PRED = np.array([0, 0, 0, 0, 1, 2, 1, 1, 0, 2])
CONFUSION = np.array(
    [
        [4, 1, 1, 0],  # true 0 (6 rows): 4 right, one taken for 1, one for 2
        [1, 2, 0, 0],  # true 1 (3 rows)
        [0, 0, 1, 0],  # true 2 (1 row)
        [0, 0, 0, 0],  # class 3: no rows, no predictions
    ]
)


def sklearn_f1_macro(y, predicted):
    """f1_score(y, predicted, average='macro', zero_division=0) written out as scikit-learn defines it."""
    labels = np.union1d(y, predicted)
    scores = []
    for c in labels:
        tp = np.sum((predicted == c) & (y == c))
        precision = tp / np.sum(predicted == c) if np.any(predicted == c) else 0.0
        recall = tp / np.sum(y == c) if np.any(y == c) else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0)
    return float(np.mean(scores))


def sklearn_balanced_accuracy(y, predicted):
    """balanced_accuracy_score: the mean recall over the classes present in y."""
    return float(np.mean([np.mean(predicted[y == c] == c) for c in np.unique(y)]))


def test_worked_example():
    m = Metrics(CE, ["accuracy", "balanced_accuracy", "f1"], n_classes=4)
    m.add(0.5, scores_for(PRED, 4), Y)
    assert m.confusion.dtype == np.int64 and m.confusion.shape == (4, 4)
    assert_array_equal(m.confusion, CONFUSION)
    out = m.result()
    assert set(out) == {"loss", "accuracy", "balanced_accuracy", "f1"}
    # accuracy: (4 + 2 + 1) / 10
    assert out["accuracy"] == pytest.approx(0.7, rel=1e-15)
    # recalls 4/6, 2/3, 1/1 over the 3 classes present in y (class 3 has no rows): (2/3 + 2/3 + 1) / 3 = 7/9
    assert out["balanced_accuracy"] == pytest.approx(7 / 9, rel=1e-15)
    # F1_k = 2 tp / (true_k + predicted_k): 8 / (6 + 5), 4 / (3 + 3), 2 / (1 + 2); class 3 is left out
    # (8/11 + 2/3 + 2/3) / 3 = 68/99  (class 0: precision 4/5, recall 4/6, 2PR/(P+R) = 8/11)
    assert out["f1"] == pytest.approx(68 / 99, rel=1e-14)
    assert out["f1"] == pytest.approx(sklearn_f1_macro(Y, PRED), rel=1e-14)
    assert out["balanced_accuracy"] == pytest.approx(sklearn_balanced_accuracy(Y, PRED), rel=1e-14)


def test_a_class_predicted_but_never_true_scores_zero_f1():
    predicted = PRED.copy()
    predicted[5] = 3  # a true 0 taken for class 3, which has no rows
    m = Metrics(CE, ["balanced_accuracy", "f1"], n_classes=4)
    m.add(0.0, scores_for(predicted, 4), Y)
    # columns now 5, 3, 1, 1: F1 = 8/11, 4/6, 2/(1 + 1) = 1, 0/(0 + 1) = 0 -> (8/11 + 2/3 + 1 + 0) / 4 = 79/132
    assert m.result()["f1"] == pytest.approx(79 / 132, rel=1e-14)
    assert m.result()["f1"] == pytest.approx(sklearn_f1_macro(Y, predicted), rel=1e-14)
    # balanced accuracy ignores class 3 (no rows): recalls 4/6, 2/3, 1 again
    assert m.result()["balanced_accuracy"] == pytest.approx(7 / 9, rel=1e-15)


def test_perfect_and_imbalanced_predictions():
    m = Metrics(CE, ["accuracy", "balanced_accuracy", "f1"], n_classes=3)
    y = np.array([0, 1, 2, 2, 1])
    m.add(0.0, scores_for(y, 3), y)
    assert m.result() == {"loss": 0.0, "accuracy": 1.0, "balanced_accuracy": 1.0, "f1": 1.0}
    # 95 / 5 data, always predicting the majority: accuracy 0.95 but balanced accuracy 0.5
    y = np.array([0] * 95 + [1] * 5)
    m = Metrics(CE, ["accuracy", "balanced_accuracy", "f1"], n_classes=2)
    m.add(0.1, scores_for(np.zeros(100, dtype=np.int64), 2), y)
    out = m.result()
    assert out["accuracy"] == pytest.approx(0.95)
    assert out["balanced_accuracy"] == pytest.approx(0.5)
    # F1: class 0 2 * 95 / (95 + 100) = 190/195, class 1 0 -> 95/195
    assert out["f1"] == pytest.approx(95 / 195, rel=1e-14)


def test_confusion_over_batches_equals_once():
    rng = np.random.default_rng(0)
    n, k = 503, 5
    y = rng.integers(0, k, n)
    z = rng.standard_normal((n, k)) + 1.5 * np.eye(k)[y]  # better than chance, not perfect
    once = Metrics(CE, ["accuracy", "balanced_accuracy", "f1"], n_classes=k)
    once.add(1.0, z, y)
    batched = Metrics(CE, ["accuracy", "balanced_accuracy", "f1"], n_classes=k)
    for start, stop in [(0, 1), (1, 64), (64, 64), (64, 200), (200, 457), (457, n)]:  # uneven, one empty
        batched.add(1.0, z[start:stop], y[start:stop])
    assert_array_equal(batched.confusion, once.confusion)
    # against a per-sample count
    reference = np.zeros((k, k), dtype=np.int64)
    np.add.at(reference, (y, z.argmax(axis=1)), 1)
    assert_array_equal(once.confusion, reference)
    assert once.confusion.sum() == n
    assert batched.result() == pytest.approx(once.result(), rel=1e-15)
    predicted = z.argmax(axis=1)
    assert once.result()["f1"] == pytest.approx(sklearn_f1_macro(y, predicted), rel=1e-13)
    assert once.result()["balanced_accuracy"] == pytest.approx(sklearn_balanced_accuracy(y, predicted), rel=1e-13)
    assert 0.3 < once.result()["balanced_accuracy"] < 0.95


@pytest.mark.parametrize("name", ["binary_cross_entropy", "hinge", "squared_hinge"])
def test_binary_losses_use_their_own_decision(name):
    """One-output losses: the confusion matrix is 2 x 2 from loss.decide (z > 0 for logits and scores)."""
    loss = LOSSES[name]()
    z = np.array([[2.0], [-1.0], [0.3], [-0.2], [0.1]])
    y = np.array([1, 0, 0, 1, 1])  # decide: 1, 0, 1, 0, 1
    m = Metrics(loss, ["balanced_accuracy", "f1"], n_classes=2)
    m.add(0.0, z, y)
    assert_array_equal(m.confusion, [[1, 1], [1, 2]])
    # recalls 1/2 and 2/3 -> 7/12; F1 2/(2 + 2) = 1/2 and 4/(3 + 3) = 2/3 -> 7/12
    assert m.result()["balanced_accuracy"] == pytest.approx(7 / 12, rel=1e-15)
    assert m.result()["f1"] == pytest.approx(7 / 12, rel=1e-15)


def test_confusion_is_kept_whatever_the_metric_names():
    m = Metrics(CE, ["accuracy"], n_classes=4)
    m.add(0.2, scores_for(PRED, 4), Y)
    assert_array_equal(m.confusion, CONFUSION)
    assert set(m.result()) == {"loss", "accuracy"}
    assert Metrics(CE, ["accuracy"]).confusion is None


def test_confusion_metrics_need_the_class_count():
    for name in ("balanced_accuracy", "f1"):
        with pytest.raises(ValueError, match="n_classes"):
            Metrics(CE, ["accuracy", name])


def test_labels_outside_the_classes_are_refused():
    m = Metrics(CE, ["f1"], n_classes=3)
    with pytest.raises(ValueError, match=r"true class indices must lie in \[0, 3\)"):
        m.add(0.0, scores_for(np.array([0, 1]), 3), np.array([0, 3]))
    with pytest.raises(ValueError, match="predicted"):
        m.add(0.0, scores_for(np.array([0, 3]), 4), np.array([0, 1]))  # a 4-wide output for 3 classes
    assert m.confusion.sum() == 0 and m.n == 0  # nothing half-counted


def test_loss_and_accuracy_accumulate_as_before():
    m = Metrics(CE, ["accuracy"], n_classes=4)
    m.add(1.0, scores_for(PRED[:4], 4), Y[:4])  # 4 rows, all right
    m.add(4.0, scores_for(PRED[4:], 4), Y[4:])  # 6 rows, 3 right
    out = m.result()
    assert out["loss"] == pytest.approx((1.0 * 4 + 4.0 * 6) / 10)
    assert out["accuracy"] == pytest.approx(0.7)


def test_regression_metrics_unchanged():
    loss = LOSSES["mse"]()
    y = np.array([[1.0], [2.0], [3.0], [4.0]])
    z = np.array([[1.5], [2.0], [2.0], [5.0]])
    m = Metrics(loss, ["mse", "mae", "r2"])
    m.add(0.1, z[:3], y[:3])
    m.add(0.5, z[3:], y[3:])
    out = m.result()
    # errors 0.5, 0, -1, 1: mse (0.25 + 0 + 1 + 1) / 4 = 0.5625, mae 2.5 / 4; r2 = 1 - 2.25 / 5 (SS_tot of 1..4 is 5)
    assert out["mse"] == pytest.approx(0.5625, rel=1e-15)
    assert out["mae"] == pytest.approx(0.625, rel=1e-15)
    assert out["r2"] == pytest.approx(1 - 2.25 / 5, rel=1e-14)
    assert out["loss"] == pytest.approx((0.1 * 3 + 0.5) / 4)
    assert m.confusion is None
    # to_target_units is applied before comparing
    m = Metrics(loss, ["mae"], to_target_units=lambda out: out * 2)
    m.add(0.0, z / 2, y)
    assert m.result()["mae"] == pytest.approx(0.625, rel=1e-15)


@pytest.mark.parametrize("name", ["cross_entropy", "multiclass_hinge"])
def test_class_weighted_loss_over_batches_equals_once(name):
    """A weighted loss's batch means combine by the batches' weight sums: sum w l / sum w over all rows."""
    loss = LOSSES[name](class_weights={"0": 5.0, "2": 0.5})
    loss.set_class_weights(["0", "1", "2"], np.array([10, 10, 10]))
    rng = np.random.default_rng(1)
    n = 211
    y = np.r_[np.zeros(20, dtype=np.int64), rng.integers(1, 3, n - 20)]  # class 0 only in the first batch
    z = rng.standard_normal((n, 3))
    once = Metrics(loss, ["accuracy"])
    once.add(loss.forward(z, y), z, y)
    batched = Metrics(loss, ["accuracy"])
    for start, stop in [(0, 32), (32, 50), (50, 150), (150, n)]:
        batched.add(loss.forward(z[start:stop], y[start:stop]), z[start:stop], y[start:stop])
    assert batched.result()["loss"] == pytest.approx(once.result()["loss"], rel=1e-12)
    w = np.array([5.0, 1.0, 0.5])[y]
    per_row = LOSSES[name]()  # the same loss unweighted, row by row
    losses = np.array([per_row.forward(z[i : i + 1], y[i : i + 1]) for i in range(n)])
    assert once.result()["loss"] == pytest.approx(np.dot(w, losses) / w.sum(), rel=1e-12)
