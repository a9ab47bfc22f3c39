"""multiclass_hinge, squared_hinge, huber and class weights: worked values, torch parity, gradients.

The torch references live in tests/fixtures/torch_losses.npz, written by
tests/fixtures/make_torch_loss_fixtures.py (torch is needed only to regenerate them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network

FIXTURES = np.load(Path(__file__).parent / "fixtures" / "torch_losses.npz", allow_pickle=False)
WEIGHTED = ("cross_entropy", "binary_cross_entropy", "hinge", "multiclass_hinge", "squared_hinge")

# The CS231n lecture example: scores of (cat, car, frog) for a cat, a car and a frog image.
CS231N_SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
CS231N_TARGETS = np.array([0, 1, 2])


def test_new_losses_are_registered_with_their_traits():
    assert {"multiclass_hinge", "squared_hinge", "huber"} <= set(LOSSES)
    assert LOSSES["multiclass_hinge"].tasks == ("classification",)
    assert LOSSES["squared_hinge"].tasks == ("classification",)
    assert LOSSES["huber"].tasks == ("regression",)
    # Neither is tied to a class count (build_network refuses data whose class count differs from `classes`).
    assert LOSSES["multiclass_hinge"].classes is None and LOSSES["squared_hinge"].classes is None
    assert not LOSSES["multiclass_hinge"].probabilities and LOSSES["multiclass_hinge"].fuses is None


# ---------------------------------------------------------------- multiclass hinge


def test_multiclass_hinge_cs231n_example():
    loss = LOSSES["multiclass_hinge"]()
    t = loss.encode(CS231N_TARGETS, 3, np.float64)
    assert t.dtype == np.int64
    # cat:  max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9 + 0 = 2.9
    # car:  max(0, 1.3 - 4.9 + 1) + max(0, 2.0 - 4.9 + 1) = 0 + 0  = 0
    # frog: max(0, 2.2 + 3.1 + 1) + max(0, 2.5 + 3.1 + 1) = 6.3 + 6.6 = 12.9
    # mean = 15.8 / 3
    assert loss.forward(CS231N_SCORES.copy(), t) == pytest.approx(15.8 / 3, rel=1e-13)
    # each positive term j: +1 on z_j and -1 on z_y, over the batch of 3
    expected = np.array([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 1.0, -2.0]]) / 3
    assert_allclose(loss.backward(), expected, rtol=1e-15)
    assert_array_equal(loss.decide(CS231N_SCORES), [1, 1, 1])  # the highest score wins: car, car, car
    assert_array_equal(loss.kinks(), [[False, True, False], [False, False, False], [True, True, False]])


def test_multiclass_hinge_margin_option_and_target_term():
    loss = LOSSES["multiclass_hinge"](margin=2.0)
    z = np.array([[1.0, 0.0, 1.5]])
    # terms j != y = 0: max(0, 0 - 1 + 2) = 1, max(0, 1.5 - 1 + 2) = 2.5; the target's own "margin" 2 is not a term
    assert loss.forward(z, np.array([0])) == pytest.approx(3.5, rel=1e-15)
    assert_allclose(loss.backward(), [[-2.0, 1.0, 1.0]], rtol=1e-15)
    # well separated: no loss at all and a zero gradient
    assert loss.forward(np.array([[5.0, 0.0, 2.9]]), np.array([0])) == 0.0
    assert_array_equal(loss.backward(), [[0.0, 0.0, 0.0]])


def test_multiclass_hinge_width_is_the_class_count():
    loss = LOSSES["multiclass_hinge"]()
    assert loss.expected_width(2, 1) == 2 and loss.expected_width(7, 1) == 7


# ---------------------------------------------------------------- squared hinge


def test_squared_hinge_width_and_encoding_follow_the_class_count():
    loss = LOSSES["squared_hinge"]()
    assert loss.expected_width(2, 1) == 1  # binary: one score, as `hinge`
    assert loss.expected_width(3, 1) == 3 and loss.expected_width(10, 1) == 10
    binary = loss.encode(np.array([0, 1, 1]), 2, np.float32)
    assert binary.shape == (3, 1) and binary.dtype == np.float32
    assert_array_equal(binary[:, 0], [-1, 1, 1])
    multi = loss.encode(np.array([2, 0, 1]), 3, np.float32)
    assert multi.dtype == np.int64
    assert_array_equal(multi, [2, 0, 1])
    assert_array_equal(loss.decide(np.array([[0.3], [-0.2], [0.0]])), [1, 0, 0])
    assert_array_equal(loss.decide(np.array([[0.3, 0.1, 2.0], [1.0, 0.0, -1.0]])), [2, 0])


def test_squared_hinge_binary_worked_example():
    loss = LOSSES["squared_hinge"]()
    t = loss.encode(np.array([1, 0, 1]), 2, np.float64)  # labels +1, -1, +1
    z = np.array([[2.0], [0.5], [0.25]])
    # slack = 1 - t z = [-1, 1.5, 0.75] -> squares of the positive part [0, 2.25, 0.5625]; mean 2.8125 / 3
    assert loss.forward(z, t) == pytest.approx(0.9375, rel=1e-15)
    # -2 t max(slack, 0) / 3 = [0, 2 * 1.5 / 3, -2 * 0.75 / 3] = [0, 1, -0.5]
    assert_allclose(loss.backward(), [[0.0], [1.0], [-0.5]], rtol=1e-15)


def test_squared_hinge_multiclass_cs231n_example():
    loss = LOSSES["squared_hinge"]()
    t = loss.encode(CS231N_TARGETS, 3, np.float64)
    # cat 2.9^2 = 8.41; car 0; frog 6.3^2 + 6.6^2 = 39.69 + 43.56 = 83.25; mean 91.66 / 3
    assert loss.forward(CS231N_SCORES.copy(), t) == pytest.approx(91.66 / 3, rel=1e-13)
    # 2 * term on z_j, minus their sum on z_y, over 3
    expected = np.array([[-5.8, 5.8, 0.0], [0.0, 0.0, 0.0], [12.6, 13.2, -25.8]]) / 3
    assert_allclose(loss.backward(), expected, rtol=1e-13)


# ---------------------------------------------------------------- huber


def test_huber_worked_example():
    z = np.array([[0.5, -2.0], [1.0, 3.0]])
    t = np.zeros((2, 2))
    loss = LOSSES["huber"]()  # delta 1
    # |d| < 1: d^2 / 2; else |d| - 1/2:  0.125 + 1.5 + 0.5 + 2.5 = 4.625 over 4 entries
    assert loss.forward(z, t) == pytest.approx(4.625 / 4, rel=1e-15)
    # clip(d, -1, 1) / 4
    assert_allclose(loss.backward(), [[0.125, -0.25], [0.25, 0.25]], rtol=1e-15)
    loss = LOSSES["huber"](delta=2.0)
    # |d| < 2: d^2 / 2; else 2 (|d| - 1):  0.125 + 2 + 0.5 + 4 = 6.625 over 4
    assert loss.forward(z, t) == pytest.approx(6.625 / 4, rel=1e-15)
    assert_allclose(loss.backward(), [[0.5, -2.0], [1.0, 2.0]] / np.float64(4), rtol=1e-15)


def test_huber_limits_are_half_mse_and_shifted_mae():
    rng = np.random.default_rng(4)
    z, t = rng.standard_normal((6, 2)), rng.standard_normal((6, 2))
    mse, mae = LOSSES["mse"]().forward(z, t), LOSSES["mae"]().forward(z, t)
    assert LOSSES["huber"](delta=100.0).forward(z, t) == pytest.approx(mse / 2, rel=1e-14)
    small = 1e-3  # every |d| here exceeds it: delta (mae - delta / 2)
    assert np.abs(z - t).min() > small
    assert LOSSES["huber"](delta=small).forward(z, t) == pytest.approx(small * (mae - small / 2), rel=1e-12)


def test_huber_regression_encoding():
    t = LOSSES["huber"]().encode(np.array([1.5, 2.5]), None, np.float32)
    assert t.shape == (2, 1) and t.dtype == np.float32


# ---------------------------------------------------------------- parity with torch


def _fixture(case):
    z, t, option, loss, grad = (FIXTURES[f"{case}.{key}"] for key in ("z", "t", "option", "loss", "grad"))
    return z, t, float(option), FIXTURES.get(f"{case}.weight"), float(loss), grad


def _named(weight):
    """Per-class weights as the config gives them: {class name: weight}, classes named "0", "1", ..."""
    return {str(c): float(w) for c, w in enumerate(weight)}


TORCH_CASES = {
    # case: (loss name, options from the fixture, factor nntrain's value has over torch's)
    "multimargin_p1_m1": ("multiclass_hinge", "margin", "classes"),
    "multimargin_p1_m05": ("multiclass_hinge", "margin", "classes"),
    "multimargin_p2_m1": ("squared_hinge", "margin", "classes"),
    "multimargin_p1_weighted": ("multiclass_hinge", "margin", 1),
    "multimargin_p2_weighted": ("squared_hinge", "margin", 1),
    "huber_d1": ("huber", "delta", 1),
    "huber_d05": ("huber", "delta", 1),
    "huber_d2": ("huber", "delta", 1),
    "ce_plain": ("cross_entropy", None, 1),
    "ce_weighted": ("cross_entropy", None, 1),
    "ce_balanced": ("cross_entropy", None, 1),
    "bce_weighted": ("binary_cross_entropy", None, 1),
}


def test_every_fixture_case_is_compared():
    assert set(FIXTURES["cases"]) == set(TORCH_CASES)


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_matches_torch(case):
    name, option, factor = TORCH_CASES[case]
    z, t, value, weight, torch_loss, torch_grad = _fixture(case)
    options = {option: value} if option else {}
    n_classes = z.shape[1] if z.shape[1] > 1 else 2
    if case.endswith("balanced") or case == "bce_weighted":
        options["class_weights"] = "balanced"
    elif weight is not None:
        options["class_weights"] = _named(weight)
    loss = LOSSES[name](**options)
    if weight is not None:
        loss.set_class_weights([str(c) for c in range(n_classes)], np.bincount(t, minlength=n_classes))
        assert_allclose(loss.weights, weight, rtol=1e-15)  # 'balanced' resolves to the weights torch was given
    target = loss.encode(t, None if name == "huber" else n_classes, np.float64)
    scale = z.shape[1] if factor == "classes" else 1  # torch's MultiMarginLoss divides by the class count
    assert loss.forward(z.copy(), target) == pytest.approx(scale * torch_loss, rel=1e-13)
    assert_allclose(loss.backward(), scale * torch_grad, rtol=1e-12, atol=1e-16)


def test_multimargin_fixture_is_not_trivially_zero():
    """The fixture data exercise both sides of the hinge, so the parity test means something."""
    z, t, *_ = _fixture("multimargin_p1_m1")
    loss = LOSSES["multiclass_hinge"]()
    loss.forward(z.copy(), t)
    active = loss.kinks()
    assert 0 < active.sum() < active.size - len(t)


# ---------------------------------------------------------------- gradients of a network


def _network(loss, width, hidden=5, in_features=3, seed=0):
    layers = [LAYERS["linear"](units=hidden), LAYERS["tanh"](), LAYERS["linear"](units=width)]
    return Network(layers, loss, in_features, np.float64, np.random.default_rng(seed))


GRADCHECK_CASES = [
    # (loss name, options, n_classes or None for regression)
    ("multiclass_hinge", {}, 4),
    ("multiclass_hinge", {"margin": 0.3}, 3),
    ("squared_hinge", {}, 2),
    ("squared_hinge", {}, 4),
    ("huber", {}, None),
    ("huber", {"delta": 0.2}, None),
    ("cross_entropy", {"class_weights": "balanced"}, 3),
    ("binary_cross_entropy", {"class_weights": {"1": 4.0}}, 2),
    ("hinge", {"class_weights": "balanced"}, 2),
    ("multiclass_hinge", {"class_weights": {"0": 0.5, "2": 3.0}}, 3),
    ("squared_hinge", {"class_weights": "balanced"}, 2),
    ("squared_hinge", {"class_weights": "balanced"}, 3),
]


@pytest.mark.parametrize("name, options, n_classes", GRADCHECK_CASES)
def test_network_gradcheck(name, options, n_classes):
    loss = LOSSES[name](**options)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((8, 3))
    if n_classes is None:
        y = rng.standard_normal((8, 2)) * 2
        width = loss.expected_width(None, 2)
    else:
        y = np.array([0, 0, 0, 0, 0, 1, 1, 1])
        y[-1] = n_classes - 1  # every class present; class 0 the majority
        y[-2] = n_classes - 2
        width = loss.expected_width(n_classes, 1)
        loss.set_class_weights([str(c) for c in range(n_classes)], np.bincount(y, minlength=n_classes))
        if "class_weights" in options:
            assert loss.weights is not None and not np.allclose(loss.weights, 1.0)
    network = _network(loss, width)
    # larger output weights spread the scores, so the hinges are active for some samples and not others
    network.params[2].value *= 3
    t = loss.encode(y, n_classes, np.float64)
    loss.forward(network.forward(x, training=True), t)
    if loss.kinks() is not None:  # both sides of the kinks occur in the batch
        assert 0 < loss.kinks().sum() < loss.kinks().size
    results = check_gradients(network, x, t)
    assert [r.name for r in results][-1] == "input"
    for r in results:
        assert r.passed and r.max_rel_error < 1e-6, r
    assert sum(r.checked - r.kinks for r in results) > 0.9 * sum(r.checked for r in results)


# A linear layer set by hand so that one term sits exactly on its kink for x = [1, 0.5]:
# z = x W + b with W = [[1, 2, 0], [0, 0, 0]], b = [0, -2, -5] gives z = [1, 0, -5], and for
# target 0 the term z_1 - z_0 + 1 is exactly 0. Perturbing x_0, W_00, W_01, W_10, W_11, b_0
# or b_1 moves it across 0; a finite difference there mixes the two slopes (for the squared
# hinge and huber, whose slope is continuous, still an O(h) error of about h / 3 = 3e-5, far
# above the 1e-6 tolerance), so those entries must be counted as kinks and not fail.
KINK_W = np.array([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
KINK_B = np.array([0.0, -2.0, -5.0])


@pytest.mark.parametrize(
    "name, width, weight, bias, target",
    [
        ("multiclass_hinge", 3, KINK_W, KINK_B, np.array([0])),
        ("squared_hinge", 3, KINK_W, KINK_B, np.array([0])),
        # binary: z = 1 for label +1, slack 1 - z = 0
        ("squared_hinge", 1, KINK_W[:, :1], KINK_B[:1], np.array([[1.0]])),
        # huber delta 1: d = z - t = 1 - 0 = delta
        ("huber", 1, KINK_W[:, :1], KINK_B[:1], np.array([[0.0]])),
    ],
)
def test_kinks_are_counted_not_failed(name, width, weight, bias, target):
    def check(declare_kinks: bool):
        loss = LOSSES[name]()
        if not declare_kinks:
            loss.kinks = lambda: None  # as if the loss did not report where its derivative changes
        network = Network([LAYERS["linear"](units=width)], loss, 2, np.float64, np.random.default_rng(0))
        network.params[0].value[...] = weight
        network.params[1].value[...] = bias
        return {r.name: r for r in check_gradients(network, np.array([[1.0, 0.5]]), target)}

    results = check(True)
    assert all(r.passed for r in results.values()), results
    assert results["layers.0.weight"].kinks >= 2 and results["layers.0.bias"].kinks >= 1
    assert results["input"].kinks == 1  # x_0 crosses; x_1 meets zero weights and does not
    assert results["input"].max_rel_error < 1e-6  # x_1, away from the kink, was compared
    # Without the kink report the very same check fails: the finite difference straddles the kink.
    blind = check(False)
    assert sum(r.kinks for r in blind.values()) == 0
    assert not all(r.passed for r in blind.values())


# ---------------------------------------------------------------- class weights: resolution


def test_balanced_weights_follow_scikit_learn():
    y = np.array([0] * 6 + [1] * 3 + [2])  # imbalanced: 6, 3, 1
    loss = LOSSES["cross_entropy"](class_weights="balanced")
    loss.set_class_weights(["a", "b", "c"], np.bincount(y))
    # n_samples / (n_classes * count) = 10 / (3 * [6, 3, 1]) = [5/9, 10/9, 10/3]
    assert_allclose(loss.weights, [5 / 9, 10 / 9, 10 / 3], rtol=1e-15)
    assert loss.weights.dtype == np.float64
    # the defining property: every class carries the same total weight n_samples / n_classes
    assert_allclose(loss.weights * np.bincount(y), [10 / 3] * 3, rtol=1e-15)


def test_balanced_is_uniform_on_balanced_data():
    loss = LOSSES["hinge"](class_weights="balanced")
    loss.set_class_weights(["neg", "pos"], np.array([7, 7]))
    assert_array_equal(loss.weights, [1.0, 1.0])


def test_dict_weights_by_class_name_and_default_one():
    loss = LOSSES["multiclass_hinge"](class_weights={"setosa": 2.5, "virginica": 0.0})
    loss.set_class_weights(["setosa", "versicolor", "virginica"], np.array([50, 50, 50]))
    assert_array_equal(loss.weights, [2.5, 1.0, 0.0])
    empty = LOSSES["cross_entropy"](class_weights={})
    empty.set_class_weights(["x", "y"], np.array([3, 1]))
    assert_array_equal(empty.weights, [1.0, 1.0])


def test_numeric_class_names_are_matched_as_strings():
    loss = LOSSES["binary_cross_entropy"](class_weights={"1": 3.0})
    loss.set_class_weights([0, 1], np.array([9, 1]))  # names given as numbers still match "1"
    assert_array_equal(loss.weights, [1.0, 3.0])


def test_unknown_class_name_is_an_error_that_lists_the_classes():
    loss = LOSSES["cross_entropy"](class_weights={"cat": 1.0, "zebra": 2.0})
    with pytest.raises(ValueError, match=r"'zebra'.*classes: cat, dog, frog"):
        loss.set_class_weights(["cat", "dog", "frog"], np.array([1, 2, 3]))
    assert loss.weights is None  # nothing half-applied


def test_negative_weight_is_an_error():
    with pytest.raises(ValueError, match=r"class 'b'.*>= 0"):
        LOSSES["hinge"](class_weights={"a": 1.0, "b": -0.5})
    loss = LOSSES["hinge"](class_weights={"a": 1.0})
    loss.class_weights = {"a": 1.0, "b": -0.5}  # past the constructor's check: set_class_weights checks again
    with pytest.raises(ValueError, match=r"class 'b'.*>= 0"):
        loss.set_class_weights(["a", "b"], np.array([5, 5]))


def test_other_bad_class_weights():
    with pytest.raises(ValueError, match="'balanced'"):
        LOSSES["cross_entropy"](class_weights="balance")
    with pytest.raises(ValueError, match="weight 0"):
        LOSSES["cross_entropy"](class_weights={"a": 0.0, "b": 0.0}).set_class_weights(["a", "b"], np.array([1, 1]))
    with pytest.raises(ValueError, match="'b'.*no training rows"):
        LOSSES["cross_entropy"](class_weights="balanced").set_class_weights(["a", "b", "c"], np.array([4, 0, 2]))
    with pytest.raises(ValueError, match="2 counts for 3 classes"):
        LOSSES["cross_entropy"](class_weights="balanced").set_class_weights(["a", "b", "c"], np.array([4, 2]))


def test_config_schema_takes_class_weights_from_the_constructors():
    from pydantic import ValidationError

    from nntrain.config import LOSS_MODELS

    for name in WEIGHTED:
        assert LOSS_MODELS[name](name=name, class_weights="balanced").class_weights == "balanced"
        assert LOSS_MODELS[name](name=name, class_weights={"a": 2.0}).class_weights == {"a": 2.0}
        assert LOSS_MODELS[name](name=name).class_weights is None
    for name in ("mse", "mae", "huber"):
        assert "class_weights" not in LOSS_MODELS[name].model_fields
    with pytest.raises(ValidationError):
        LOSS_MODELS["cross_entropy"](name="cross_entropy", class_weights="auto")
    with pytest.raises(ValidationError):
        LOSS_MODELS["huber"](name="huber", delta=0.0)
    assert LOSS_MODELS["multiclass_hinge"](name="multiclass_hinge").margin == 1.0
    assert LOSS_MODELS["huber"](name="huber").delta == 1.0


# ---------------------------------------------------------------- class weights: the weighted mean


def _weighted_example(name, n_classes, rng, dtype=np.float64):
    """(loss, z, y, t) with `n_classes` classes, weights {class c: c + 0.5} set on the loss."""
    loss = LOSSES[name](class_weights={str(c): c + 0.5 for c in range(n_classes)})
    y = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0])
    if n_classes > 2:
        y[[2, 5]] = n_classes - 1
    loss.set_class_weights([str(c) for c in range(n_classes)], np.bincount(y, minlength=n_classes))
    z = (rng.standard_normal((len(y), loss.expected_width(n_classes, 1))) * 1.5).astype(dtype)
    return loss, z, y, loss.encode(y, n_classes, dtype)


WEIGHTED_CASES = [
    ("cross_entropy", 3),
    ("cross_entropy", 2),
    ("binary_cross_entropy", 2),
    ("hinge", 2),
    ("multiclass_hinge", 4),
    ("squared_hinge", 2),
    ("squared_hinge", 3),
]


@pytest.mark.parametrize("name, n_classes", WEIGHTED_CASES)
def test_weighted_mean_equals_manual_computation(name, n_classes):
    """L = sum_i w_{y_i} l_i / sum_i w_{y_i}, and dL/dz_i = w_{y_i} dl_i/dz_i / sum_i w_{y_i}.

    l_i and dl_i/dz_i come from the unweighted loss on a batch of one sample (the mean of one).
    """
    loss, z, y, t = _weighted_example(name, n_classes, np.random.default_rng(5))
    plain = LOSSES[name]()
    per_sample, per_grad = [], []
    for i in range(len(y)):
        per_sample.append(plain.forward(z[i : i + 1].copy(), t[i : i + 1]))
        per_grad.append(plain.backward()[0].copy())
    w = y + 0.5  # the weight of each sample's class
    assert len(set(per_sample)) > 3  # not a degenerate batch
    expected = np.dot(w, per_sample) / w.sum()
    assert loss.forward(z.copy(), t) == pytest.approx(expected, rel=1e-13)
    assert_allclose(loss.backward(), (w / w.sum())[:, None] * np.array(per_grad), rtol=1e-13, atol=1e-17)
    # ... which is not the plain mean
    assert plain.forward(z.copy(), t) != pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("name, n_classes", WEIGHTED_CASES)
def test_equal_weights_give_the_plain_mean(name, n_classes):
    loss = LOSSES[name](class_weights={str(c): 2.0 for c in range(n_classes)})
    loss.set_class_weights([str(c) for c in range(n_classes)], np.ones(n_classes, dtype=np.int64))
    _, z, _, t = _weighted_example(name, n_classes, np.random.default_rng(6))
    plain = LOSSES[name]()
    assert loss.forward(z.copy(), t) == pytest.approx(plain.forward(z.copy(), t), rel=1e-14)
    assert_allclose(loss.backward(), plain.backward(), rtol=1e-14, atol=1e-17)


@pytest.mark.parametrize("name", WEIGHTED)
def test_without_weights_nothing_changes(name):
    """class_weights None (even after set_class_weights) and a loss never told its classes are the plain mean, bit for bit."""
    n_classes = 3 if name in ("cross_entropy", "multiclass_hinge", "squared_hinge") else 2
    _, z, y, t = _weighted_example(name, n_classes, np.random.default_rng(7))
    reference = LOSSES[name]()
    value, grad = reference.forward(z.copy(), t), reference.backward().copy()
    none = LOSSES[name](class_weights=None)
    none.set_class_weights([str(c) for c in range(n_classes)], np.bincount(y, minlength=n_classes))
    assert none.weights is None
    never_told = LOSSES[name](class_weights="balanced")  # set_class_weights never called
    for loss in (none, never_told):
        assert loss.forward(z.copy(), t) == value
        assert_array_equal(loss.backward(), grad)


def test_a_batch_of_zero_weight_classes_has_no_loss_and_no_gradient():
    loss = LOSSES["cross_entropy"](class_weights={"a": 0.0})
    loss.set_class_weights(["a", "b"], np.array([3, 3]))
    z = np.array([[1.0, 2.0], [0.5, -1.0]])
    assert loss.forward(z, np.array([0, 0])) == 0.0
    assert_array_equal(loss.backward(), np.zeros((2, 2)))
    # one sample of class b: its own loss, alone in the mean
    value = loss.forward(z.copy(), np.array([0, 1]))
    assert value == pytest.approx(np.log(np.exp(0.5) + np.exp(-1.0)) + 1.0, rel=1e-14)


def test_weights_can_be_assigned_back_from_a_checkpoint():
    """`weights` is the resolved state: assigning a saved vector restores the same loss."""
    rng = np.random.default_rng(9)
    loss, z, _, t = _weighted_example("multiclass_hinge", 4, rng)
    expected = loss.forward(z.copy(), t)
    restored = LOSSES["multiclass_hinge"](class_weights="balanced")
    restored.weights = loss.weights.copy()
    assert restored.forward(z.copy(), t) == expected
    restored.weights = None
    assert restored.forward(z.copy(), t) == LOSSES["multiclass_hinge"]().forward(z.copy(), t)


@pytest.mark.parametrize("name, n_classes", WEIGHTED_CASES)
def test_weighted_float32_stays_float32(name, n_classes):
    loss64, z64, _, t64 = _weighted_example(name, n_classes, np.random.default_rng(10))
    loss32, z32, _, t32 = _weighted_example(name, n_classes, np.random.default_rng(10), np.float32)
    value = loss32.forward(z32, t32)
    assert isinstance(value, float)
    grad = loss32.backward()
    assert grad.dtype == np.float32
    assert loss32.coef.dtype == np.float32  # the per-sample weights were used in float32
    assert value == pytest.approx(loss64.forward(z64, t64), rel=1e-5)
    assert_allclose(grad, loss64.backward(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["multiclass_hinge", "squared_hinge", "huber"])
def test_new_losses_keep_float32(name):
    loss = LOSSES[name]()
    rng = np.random.default_rng(12)
    if name == "huber":
        z, t = rng.standard_normal((5, 2)).astype(np.float32), rng.standard_normal((5, 2)).astype(np.float32)
    else:
        z = rng.standard_normal((5, 3)).astype(np.float32)
        t = loss.encode(np.array([0, 1, 2, 1, 0]), 3, np.float32)
    assert isinstance(loss.forward(z, t), float)
    assert loss.backward().dtype == np.float32
