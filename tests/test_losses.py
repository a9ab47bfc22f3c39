"""Losses: worked values, gradients against finite differences, stability, encodings, fused softmax."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network

LN2 = np.log(2.0)


def numeric_grad(loss, z, t, h=1e-5):
    """Centered differences of loss.forward(z, t) with respect to each entry of z."""
    grad = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        old = z[idx]
        z[idx] = old + h
        plus = loss.forward(z, t)
        z[idx] = old - h
        minus = loss.forward(z, t)
        z[idx] = old
        grad[idx] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, n, floor=1e-4):
    """Entrywise relative error; the floor sits far above the differencing noise (~1e-11 here)."""
    return np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor))


def test_every_registered_loss_is_covered():
    assert set(LOSSES) == {
        "mse", "mae", "huber", "cross_entropy", "binary_cross_entropy", "hinge", "multiclass_hinge", "squared_hinge"
    }


# ---------------------------------------------------------------- worked examples


def test_mse_worked_example():
    z = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([[0.0, 2.5], [5.0, 1.0]])
    loss = LOSSES["mse"]()
    # diff = [[1, -0.5], [-2, 3]]; squares 1 + 0.25 + 4 + 9 = 14.25 over 4 entries = 3.5625
    assert loss.forward(z, t) == pytest.approx(3.5625, rel=1e-15)
    # dL/dz = 2 diff / 4 = [[0.5, -0.25], [-1, 1.5]]
    assert_allclose(loss.backward(), [[0.5, -0.25], [-1.0, 1.5]], rtol=1e-15)


def test_mse_averages_over_batch_and_outputs_like_torch():
    """torch.nn.MSELoss(reduction='mean') divides by batch * outputs, not by batch alone."""
    rng = np.random.default_rng(0)
    z, t = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    loss = LOSSES["mse"]()
    value = loss.forward(z, t)
    assert value == pytest.approx(np.sum((z - t) ** 2) / 18, rel=1e-14)
    assert value != pytest.approx(np.sum((z - t) ** 2) / 6, rel=1e-3)  # the per-sample-sum convention
    assert_allclose(loss.backward(), 2 * (z - t) / 18, rtol=1e-14)


def test_mae_worked_example():
    z = np.array([[1.0, 2.0], [3.0, 4.0]])
    t = np.array([[0.0, 2.5], [5.0, 1.0]])
    loss = LOSSES["mae"]()
    # |diff| = 1 + 0.5 + 2 + 3 = 6.5 over 4 entries = 1.625
    assert loss.forward(z, t) == pytest.approx(1.625, rel=1e-15)
    # dL/dz = sign(diff) / 4
    assert_allclose(loss.backward(), [[0.25, -0.25], [-0.25, 0.25]], rtol=1e-15)


def test_cross_entropy_worked_example():
    z = np.array([[0.0, 0.0], [0.0, np.log(3.0)]])
    t = np.array([1, 0])
    loss = LOSSES["cross_entropy"]()
    # row 0: softmax [1/2, 1/2], target 1 -> -ln(1/2) = ln 2
    # row 1: softmax [1/4, 3/4], target 0 -> -ln(1/4) = 2 ln 2;  mean = 1.5 ln 2
    assert loss.forward(z, t) == pytest.approx(1.5 * LN2, rel=1e-14)
    # (softmax - onehot) / 2 = [[0.5, -0.5], [-0.75, 0.75]] / 2
    assert_allclose(loss.backward(), [[0.25, -0.25], [-0.375, 0.375]], rtol=1e-14)
    assert_allclose(loss.predict(z), [[0.5, 0.5], [0.25, 0.75]], rtol=1e-14)


def test_binary_cross_entropy_worked_example():
    z = np.array([[0.0], [np.log(3.0)]])
    t = np.array([[1.0], [0.0]])
    loss = LOSSES["binary_cross_entropy"]()
    # sigmoid(0) = 1/2, t = 1 -> -ln(1/2) = ln 2;  sigmoid(ln 3) = 3/4, t = 0 -> -ln(1/4) = 2 ln 2
    # mean = 1.5 ln 2
    assert loss.forward(z, t) == pytest.approx(1.5 * LN2, rel=1e-14)
    # (sigmoid - t) / 2 = [(0.5 - 1) / 2, (0.75 - 0) / 2]
    assert_allclose(loss.backward(), [[-0.25], [0.375]], rtol=1e-14)
    assert_allclose(loss.predict(z), [[0.5], [0.75]], rtol=1e-14)


def test_hinge_worked_example():
    loss = LOSSES["hinge"]()
    t = loss.encode(np.array([1, 0, 1]), 2, np.float64)  # labels +1, -1, +1
    z = np.array([[2.0], [0.5], [0.25]])
    # slack = 1 - t z = [1 - 2, 1 + 0.5, 1 - 0.25] = [-1, 1.5, 0.75] -> hinge [0, 1.5, 0.75]
    # mean = 2.25 / 3 = 0.75
    assert loss.forward(z, t) == pytest.approx(0.75, rel=1e-15)
    # -t [slack > 0] / 3 = [0, +1/3, -1/3]
    assert_allclose(loss.backward(), [[0.0], [1 / 3], [-1 / 3]], rtol=1e-15)


def test_hinge_margin_option():
    loss = LOSSES["hinge"](margin=2.0)
    t = loss.encode(np.array([1, 0, 1]), 2, np.float64)
    z = np.array([[2.0], [0.5], [0.25]])
    # slack = 2 - t z = [0, 2.5, 1.75]; the first sits on the kink and contributes 0 and no gradient
    # mean = 4.25 / 3
    assert loss.forward(z, t) == pytest.approx(4.25 / 3, rel=1e-15)
    assert_allclose(loss.backward(), [[0.0], [1 / 3], [-1 / 3]], rtol=1e-15)


# ---------------------------------------------------------------- encodings


def test_hinge_maps_classes_to_minus_and_plus_one():
    loss = LOSSES["hinge"]()
    t = loss.encode(np.array([0, 1, 1, 0]), 2, np.float32)
    assert t.shape == (4, 1) and t.dtype == np.float32
    assert_array_equal(t[:, 0], [-1, 1, 1, -1])
    # A confident correct score has no loss on either side.
    assert loss.forward(np.array([[-2.0], [2.0], [1.5], [-1.0]]), t) == 0.0


def test_encodings():
    y = np.array([2, 0, 1])
    onehot = LOSSES["mse"]().encode(y, 3, np.float32)
    assert onehot.dtype == np.float32
    assert_array_equal(onehot, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert_array_equal(LOSSES["mse"]().encode(np.array([1.5, 2.5]), None, np.float64), [[1.5], [2.5]])
    indices = LOSSES["cross_entropy"]().encode(y, 3, np.float32)
    assert indices.dtype == np.int64
    assert_array_equal(indices, y)
    bce = LOSSES["binary_cross_entropy"]().encode(np.array([0, 1]), 2, np.float64)
    assert bce.shape == (2, 1)
    assert_array_equal(bce[:, 0], [0.0, 1.0])


def test_binary_losses_expect_one_output():
    for name in ("binary_cross_entropy", "hinge"):
        assert LOSSES[name]().expected_width(2, 1) == 1
    assert LOSSES["cross_entropy"]().expected_width(4, 1) == 4


# ---------------------------------------------------------------- gradients


def example(name, rng):
    """(loss, z, t) in float64 with every point at least 0.1 away from a kink."""
    loss = LOSSES[name]()
    if name in ("mse", "mae"):
        z = rng.standard_normal((5, 3))
        t = z + rng.choice([-1, 1], z.shape) * rng.uniform(0.1, 1.0, z.shape)
    elif name == "huber":  # |z - t| in [0.1, 0.8] or [1.2, 2]: away from 0 and from delta = 1
        z = rng.standard_normal((5, 3))
        size = np.where(rng.random(z.shape) < 0.5, rng.uniform(0.1, 0.8, z.shape), rng.uniform(1.2, 2.0, z.shape))
        t = z + rng.choice([-1, 1], z.shape) * size
    elif name in ("cross_entropy", "multiclass_hinge"):
        z, t = rng.standard_normal((5, 4)) * 2, rng.integers(0, 4, 5)
        if name == "multiclass_hinge":  # keep every term z_j - z_y + 1 out of [-0.1, 0.1]
            for _ in range(100):
                margins = z - z[np.arange(5), t][:, None] + 1
                margins[np.arange(5), t] = 1
                if (np.abs(margins) >= 0.1).all():
                    break
                z = rng.standard_normal((5, 4)) * 2
            assert (np.abs(margins) >= 0.1).all()
    else:
        y = np.array([0, 1, 0, 1, 1, 0])
        t = loss.encode(y, 2, np.float64)
        z = rng.standard_normal((6, 1)) * 2
        if name == "hinge":  # keep the slack 1 - t z out of [-0.1, 0.1]
            slack = 1 - t * z
            z = np.where(np.abs(slack) < 0.1, z + 0.5, z)
            assert (np.abs(1 - t * z) >= 0.1).all()
    return loss, z, t


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_gradient_matches_centered_differences(name):
    rng = np.random.default_rng(7)
    loss, z, t = example(name, rng)
    loss.forward(z, t)
    analytic = loss.backward().copy()
    assert analytic.shape == z.shape
    assert rel_error(analytic, numeric_grad(loss, z, t)) < 1e-6


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_extreme_logits(dtype):
    """Logits of ±1000 give exact, finite loss and gradient (log-sum-exp), no overflow."""
    loss = LOSSES["cross_entropy"]()
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0], [1000.0, 1000.0]], dtype=dtype)
    t = np.array([0, 0, 1])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss.forward(z, t)
        grad = loss.backward()
    # row losses: 0 (right and sure), 2000 (wrong and sure), ln 2 (a tie); mean = (2000 + ln 2) / 3
    assert np.isfinite(value) and value == pytest.approx((2000 + LN2) / 3, rel=1e-6)
    assert np.isfinite(grad).all()
    # (softmax - onehot) / 3: [[0, 0], [-1, 1], [0.5, -0.5]] / 3
    assert_allclose(grad, np.array([[0, 0], [-1, 1], [0.5, -0.5]]) / 3, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_extreme_logits(dtype):
    loss = LOSSES["binary_cross_entropy"]()
    z = np.array([[1000.0], [-1000.0], [1000.0], [-1000.0]], dtype=dtype)
    t = np.array([[1.0], [0.0], [0.0], [1.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value = loss.forward(z, t)
        grad = loss.backward()
    # per sample: 0, 0, 1000, 1000 (max(z,0) - z t + log1p(e^-1000)); mean 500
    assert np.isfinite(value) and value == pytest.approx(500.0, rel=1e-6)
    # (sigmoid - t) / 4 = [0, 0, 1, -1] / 4
    assert_allclose(grad, np.array([[0.0], [0.0], [0.25], [-0.25]]), atol=1e-7)
    assert grad.dtype == dtype


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_float32_gradient_stays_float32(name):
    rng = np.random.default_rng(8)
    loss, z, t = example(name, rng)
    z = z.astype(np.float32)
    t = t.astype(np.float32) if t.dtype.kind == "f" else t
    value = loss.forward(z, t)
    assert isinstance(value, float)
    assert loss.backward().dtype == np.float32


# ---------------------------------------------------------------- fused softmax / sigmoid


def _pair(last, loss_name, classes):
    """A network ending in `last` (fused into the loss) and the same network on logits, same weights."""
    fused = Network(
        [LAYERS["linear"](units=8), LAYERS["tanh"](), LAYERS["linear"](units=classes), LAYERS[last]()],
        LOSSES[loss_name](),
        3,
        np.float64,
        np.random.default_rng(0),
    )
    logits = Network(
        [LAYERS["linear"](units=8), LAYERS["tanh"](), LAYERS["linear"](units=classes)],
        LOSSES[loss_name](),
        3,
        np.float64,
        np.random.default_rng(0),
    )
    return fused, logits


def test_fused_softmax_cross_entropy():
    fused, logits = _pair("softmax", "cross_entropy", 4)
    assert fused.fused and not logits.fused
    assert len(fused.chain) == 3  # the softmax layer is left to the loss
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((10, 3)) * 3, rng.integers(0, 4, 10)

    loss_fused, z, _ = fused.loss_and_grad(x, t)
    loss_logits, z_logits, _ = logits.loss_and_grad(x, t)
    assert_array_equal(z, z_logits)  # the chain stops at the logits
    assert loss_fused == loss_logits
    for p, q in zip(fused.params, logits.params):
        assert_array_equal(p.grad, q.grad)

    # The same value as applying the softmax layer and taking -log p of the target.
    probs = LAYERS["softmax"]().forward(z, True)
    assert loss_fused == pytest.approx(-np.mean(np.log(probs[np.arange(10), t])), rel=1e-12)

    predicted = fused.predict(x)
    assert predicted.shape == (10, 4)
    assert_allclose(predicted.sum(axis=1), 1.0, rtol=1e-14)
    assert (predicted > 0).all()
    assert_allclose(predicted, probs, rtol=1e-13)


def test_fused_network_passes_gradcheck():
    fused, _ = _pair("softmax", "cross_entropy", 4)
    rng = np.random.default_rng(2)
    x, t = rng.standard_normal((6, 3)), rng.integers(0, 4, 6)
    for r in check_gradients(fused, x, t):
        assert r.passed and r.max_rel_error < 1e-6, r


def test_fused_sigmoid_binary_cross_entropy():
    fused, logits = _pair("sigmoid", "binary_cross_entropy", 1)
    assert fused.fused
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 3))
    t = fused.loss.encode(rng.integers(0, 2, 10), 2, np.float64)
    assert fused.loss_and_grad(x, t)[0] == logits.loss_and_grad(x, t)[0]
    predicted = fused.predict(x)
    assert ((predicted > 0) & (predicted < 1)).all()
    assert_allclose(predicted, 1 / (1 + np.exp(-fused.forward(x))), rtol=1e-13)


def test_softmax_before_another_loss_is_not_fused():
    net = Network(
        [LAYERS["linear"](units=3), LAYERS["softmax"]()], LOSSES["mse"](), 2, np.float64, np.random.default_rng(0)
    )
    assert not net.fused and len(net.chain) == 2
    assert_allclose(net.forward(np.ones((2, 2))).sum(axis=1), 1.0, rtol=1e-14)
