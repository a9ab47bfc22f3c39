"""Metrics: confusion matrix accumulated batch by batch, balanced accuracy and macro F1, the existing metrics;
precision, recall, roc_auc, average_precision and log_loss against scikit-learn's values, the decision threshold."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from nntrain.engine.losses import LOSSES, Loss
from nntrain.train.metrics import PROBABILITY_METRICS, Metrics, decide, needs_probabilities

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


# ---------------------------------------------------------------- scikit-learn's values on fixed predictions
# tests/fixtures/metrics_sklearn.json, written by tests/fixtures/make_metric_fixtures.py (scikit-learn is not
# needed here): labels y, the outputs `loss.predict(z)` gives, and scikit-learn's metrics of them (null: undefined).

FIXTURES = json.loads((Path(__file__).parent / "fixtures" / "metrics_sklearn.json").read_text())["cases"]
SCORED = ["accuracy", "balanced_accuracy", "f1", "precision", "recall", "roc_auc", "average_precision", "log_loss"]


class Outputs(Loss):
    """A stand-in loss whose outputs z are already what `predict` gives; it decides as the fixtures' losses."""

    name = "outputs"

    def __init__(self, probabilities: bool):
        self.probabilities = probabilities

    def decide(self, z):
        if z.shape[1] > 1:
            return z.argmax(axis=1)
        return (z[:, 0] > (0.5 if self.probabilities else 0.0)).astype(np.int64)


def fixture(name):
    case = FIXTURES[name]
    y, outputs = np.array(case["y"], dtype=np.int64), np.array(case["outputs"], dtype=np.float64)
    names = SCORED if case["probabilities"] else [m for m in SCORED if m not in PROBABILITY_METRICS]
    return case, y, outputs, names


def metrics_for(case, names, loss=None):
    loss = loss or Outputs(case["probabilities"])
    return Metrics(loss, names, n_classes=case["n_classes"], threshold=case["threshold"])


def assert_matches(result: dict, expected: dict, names):
    for m in names:
        want = float("nan") if expected[m] is None else expected[m]
        assert result[m] == pytest.approx(want, rel=1e-12, abs=1e-15, nan_ok=True), m


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_metrics_match_sklearn(name):
    case, y, outputs, names = fixture(name)
    m = metrics_for(case, names)
    m.add(0.0, outputs, y)
    assert_array_equal(decide(m.loss_fn, outputs, case["threshold"]), case["predicted"])
    assert set(m.result()) == {"loss", *names}
    assert_matches(m.result(), case["expected"], names)
    per_class = m.per_class()
    assert set(per_class) == {"precision", "recall", "f1", "support"}
    assert per_class["support"] == case["per_class"]["support"]
    for key in ("precision", "recall", "f1"):
        assert len(per_class[key]) == case["n_classes"]
        assert per_class[key] == pytest.approx(case["per_class"][key], rel=1e-12, abs=1e-15), key


@pytest.mark.parametrize("name", ["binary_ties", "binary_one_unit", "binary_one_unit_threshold", "multiclass_3",
                                  "multiclass_4_absent", "multiclass_scores"])
def test_batches_of_any_size_give_the_one_batch_values(name):
    """The outputs are kept (copied: the caller reuses its arrays) and ranked once, whatever the batches."""
    case, y, outputs, names = fixture(name)
    once = metrics_for(case, names)
    once.add(0.0, outputs, y)
    batched = metrics_for(case, names)
    n = len(y)
    cuts = sorted({0, 1, 1, 7, n // 3, n // 3 + 2, n - 1, n})
    for start, stop in zip(cuts, cuts[1:] + [n]):  # one empty batch at the end, sizes 1 up to a third
        z, labels = outputs[start:stop].copy(), y[start:stop].copy()
        batched.add(0.0, z, labels)
        z[:] = np.nan  # the trainer overwrites its arrays with the next batch
        labels[:] = 0
    assert batched.result() == pytest.approx(once.result(), rel=1e-12, abs=1e-15, nan_ok=True)
    assert_matches(batched.result(), case["expected"], names)
    assert batched.per_class() == once.per_class()
    batched.result()  # result may be asked again (the kept arrays are joined once)
    assert_matches(batched.result(), case["expected"], names)


def engine_outputs(case, outputs):
    """A real loss and the z for which its predict(z) gives the fixture's outputs."""
    with np.errstate(divide="ignore"):  # exact 0 and 1 probabilities: logits of -inf / +inf
        if not case["probabilities"]:
            return LOSSES["hinge" if outputs.shape[1] == 1 else "multiclass_hinge"](), outputs
        if outputs.shape[1] == 1:
            return LOSSES["binary_cross_entropy"](), np.log(outputs) - np.log1p(-outputs)
        return LOSSES["cross_entropy"](), np.log(outputs)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_real_losses_match_sklearn(name):
    """cross_entropy on z = log P, binary_cross_entropy on z = logit p, hinge / multiclass_hinge on scores."""
    case, y, outputs, names = fixture(name)
    loss, z = engine_outputs(case, outputs)
    assert loss.probabilities == case["probabilities"]
    np.testing.assert_allclose(loss.predict(z), outputs, rtol=1e-14, atol=1e-16)
    m = metrics_for(case, names, loss)
    for start in range(0, len(y), 17):
        m.add(0.0, z[start : start + 17], y[start : start + 17])
    assert_array_equal(decide(loss, z, case["threshold"]), case["predicted"])
    assert_matches(m.result(), case["expected"], names)
    assert m.per_class()["support"] == case["per_class"]["support"]


def test_decision_threshold():
    loss = LOSSES["binary_cross_entropy"]()
    p = np.array([0.1, 0.31, 0.5, 0.7, 0.29, 0.9])
    z = (np.log(p) - np.log1p(-p))[:, None]
    y = np.array([0, 1, 1, 0, 0, 1])
    assert_array_equal(decide(loss, z), loss.decide(z))  # no threshold: the loss's own decision (p > 0.5)
    assert_array_equal(decide(loss, z, None), [0, 0, 0, 1, 0, 1])
    assert_array_equal(decide(loss, z, 0.3), [0, 1, 1, 1, 0, 1])  # P(class 1) >= threshold
    assert_array_equal(decide(loss, z, 0.0), np.ones(6))
    ce = LOSSES["cross_entropy"]()
    assert_array_equal(decide(ce, np.log(np.c_[1 - p, p]), 0.3), [0, 1, 1, 1, 0, 1])  # column 1 of two
    # P(class 1) = 0.5 exactly: argmax's tie goes to class 0, a threshold of 0.5 takes it as class 1
    assert_array_equal(decide(ce, np.zeros((1, 2))), [0])
    assert_array_equal(decide(ce, np.zeros((1, 2)), 0.5), [1])
    m = Metrics(loss, ["accuracy", "precision", "recall"], n_classes=2, threshold=0.3)
    m.add(0.0, z, y)
    assert_array_equal(m.confusion, [[2, 1], [0, 3]])
    out = m.result()
    assert out["accuracy"] == pytest.approx(5 / 6) and out["precision"] == pytest.approx(3 / 4) and out["recall"] == 1.0
    # training metrics without the confusion matrix decide with the threshold too
    m = Metrics(loss, ["accuracy"], n_classes=2, threshold=0.3).without_confusion()
    m.add(0.0, z, y)
    assert m.confusion is None and m.result()["accuracy"] == pytest.approx(5 / 6)


def test_a_threshold_needs_two_classes_and_probabilities():
    with pytest.raises(ValueError, match="probabilities.*'hinge'"):
        Metrics(LOSSES["hinge"](), ["accuracy"], n_classes=2, threshold=0.5)
    with pytest.raises(ValueError, match="probabilities"):
        decide(LOSSES["hinge"](), np.zeros((3, 1)), 0.5)
    with pytest.raises(ValueError, match="binary"):
        Metrics(CE, ["accuracy"], n_classes=3, threshold=0.5)
    with pytest.raises(ValueError, match="binary"):
        decide(CE, np.zeros((3, 3)), 0.5)
    for bad in (-0.1, 1.5, float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            Metrics(CE, ["accuracy"], n_classes=2, threshold=bad)


def test_log_loss_needs_probabilities():
    assert needs_probabilities(["accuracy", "log_loss", "roc_auc"]) == ["log_loss"]
    assert needs_probabilities(["roc_auc", "average_precision"]) == []
    for name in ("hinge", "multiclass_hinge", "squared_hinge", "mse"):
        loss = LOSSES[name]()
        assert not loss.probabilities
        with pytest.raises(ValueError, match=f"log_loss needs class probabilities, which loss '{name}'"):
            Metrics(loss, ["accuracy", "log_loss"], n_classes=2)
        Metrics(loss, ["roc_auc", "average_precision"], n_classes=2)  # rank-based: scores will do
    for name in ("cross_entropy", "binary_cross_entropy"):
        Metrics(LOSSES[name](), ["log_loss"], n_classes=2)


def test_new_metrics_need_the_class_count():
    for name in ("roc_auc", "average_precision", "log_loss", "precision", "recall"):
        with pytest.raises(ValueError, match="n_classes"):
            Metrics(CE, [name])


def test_outputs_are_kept_only_for_the_score_metrics():
    case, y, outputs, _ = fixture("multiclass_3")
    assert Metrics(CE, ["accuracy", "f1", "precision", "recall"], n_classes=3).scores is None
    # the trainer's per-batch training metrics drop the confusion matrix, never the kept outputs
    m = Metrics(CE, ["roc_auc", "average_precision", "log_loss"], n_classes=3).without_confusion()
    assert m.confusion is None
    m.add(0.0, np.log(outputs), y)
    assert_matches(m.result(), case["expected"], ["roc_auc", "average_precision", "log_loss"])
    m = Metrics(CE, ["precision", "recall", "roc_auc"], n_classes=3).without_confusion()
    assert m.confusion is not None  # precision / recall need it
    m.add(0.0, np.log(outputs), y)
    assert_matches(m.result(), case["expected"], ["precision", "recall", "roc_auc"])


def test_score_metrics_of_no_rows_are_nan_and_bad_batches_leave_no_trace():
    m = Metrics(CE, ["roc_auc", "average_precision", "log_loss", "precision", "recall"], n_classes=3)
    assert all(np.isnan(v) for k, v in m.result().items() if k != "loss")
    with pytest.raises(ValueError, match=r"true class indices must lie in \[0, 3\)"):
        m.add(0.0, np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="outputs of shape"):
        Metrics(CE, ["roc_auc"], n_classes=3).add(0.0, np.zeros((2, 4)), np.array([0, 1]))
    assert m.n == 0 and m.confusion.sum() == 0 and len(m.kept()[0]) == 0 and m.kept()[1].shape == (0, 3)


def test_non_finite_outputs_give_nan_rankings():
    m = Metrics(LOSSES["hinge"](), ["roc_auc", "average_precision"], n_classes=2)
    m.add(0.0, np.array([[0.3], [np.nan], [1.0], [-2.0]]), np.array([0, 1, 1, 0]))
    assert np.isnan(m.result()["roc_auc"]) and np.isnan(m.result()["average_precision"])
    # infinite scores still rank (a diverging hinge model), tied infinities count one half
    m = Metrics(LOSSES["hinge"](), ["roc_auc"], n_classes=2)
    m.add(0.0, np.array([[np.inf], [np.inf], [1.0], [-np.inf]]), np.array([1, 0, 1, 0]))
    # pairs (positive, negative): (inf, inf) 1/2, (inf, -inf) 1, (1, inf) 0, (1, -inf) 1 -> 2.5 / 4
    assert m.result()["roc_auc"] == 0.625


def test_per_class_over_all_classes():
    m = Metrics(CE, ["accuracy"], n_classes=4)
    m.add(0.0, scores_for(PRED, 4), Y)
    out = m.per_class()
    # CONFUSION: columns 5, 3, 2, 0; rows 6, 3, 1, 0; class 3 neither true nor predicted scores 0
    assert out["support"] == [6, 3, 1, 0]
    assert out["precision"] == pytest.approx([4 / 5, 2 / 3, 1 / 2, 0.0], rel=1e-15)
    assert out["recall"] == pytest.approx([4 / 6, 2 / 3, 1.0, 0.0], rel=1e-15)
    assert out["f1"] == pytest.approx([8 / 11, 2 / 3, 2 / 3, 0.0], rel=1e-15)
    with pytest.raises(ValueError, match="n_classes"):
        Metrics(CE, ["accuracy"]).per_class()
