"""Layers: forward against the formula, backward against finite differences, extremes and dtypes."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import MSE
from nntrain.engine.network import Network

IN, UNITS, BATCH = 4, 3, 5
OPTIONS = {"linear": {"units": UNITS}, "leaky_relu": {"slope": 0.1}}


def sigmoid_reference(x):
    """The logistic function in the textbook stable two-branch form."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def softmax_reference(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# name -> y = f(x, params), written directly from the definition.
FORMULAS = {
    "linear": lambda x, p: x @ p["weight"] + p["bias"],
    "sigmoid": lambda x, p: sigmoid_reference(x),
    "tanh": lambda x, p: np.tanh(x),
    "relu": lambda x, p: np.where(x > 0, x, 0.0),
    "leaky_relu": lambda x, p: np.where(x > 0, x, 0.1 * x),
    "identity": lambda x, p: x,
    "softmax": lambda x, p: softmax_reference(x),
    "flatten": lambda x, p: x.reshape(len(x), -1),
}


def make(name, dtype=np.float64, seed=0):
    """A set-up layer of `name` for (BATCH, IN) inputs, with a non-zero bias where it has one."""
    rng = np.random.default_rng(seed)
    layer = LAYERS[name](**OPTIONS.get(name, {}))
    layer.setup((IN,), np.dtype(dtype), rng, "xavier", 0.1)
    if "bias" in layer.params:
        layer.params["bias"][...] = rng.standard_normal(layer.params["bias"].shape)
    return layer


def away_from_zero(rng, shape, low=0.1):
    """Inputs with |x| >= low, so no ReLU kink lies within a finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(low, 2.0, size=shape)


def rel_error(a, n, floor=1e-3):
    """Entrywise |a - n| / max(|a|, |n|, floor); the floor is far above the differencing noise (~1e-10)."""
    return np.max(np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor))


def numeric_grad(f, value, h=1e-5):
    """Centered differences of the scalar f() with respect to each entry of `value` (changed in place, restored)."""
    grad = np.zeros_like(value)
    flat, out = value.reshape(-1), grad.reshape(-1)
    for j in range(flat.size):
        old = flat[j]
        flat[j] = old + h
        plus = f()
        flat[j] = old - h
        minus = f()
        flat[j] = old
        out[j] = (plus - minus) / (2 * h)
    return grad


# Layers tested in their family's own file (one test file per module), by the file that claims them.
COVERED_ELSEWHERE = {
    "test_noise.py": {"dropout", "gaussian_noise"},
    "test_norm.py": {"batch_norm", "layer_norm"},
    "test_conv.py": {"conv2d"},
    "test_pool.py": {"max_pool2d", "avg_pool2d", "global_avg_pool"},
    "test_recurrent.py": {"rnn", "lstm", "gru"},
    "test_sequence.py": {"conv1d", "max_pool1d", "avg_pool1d", "time_pool"},
    "test_embedding.py": {"embedding"},
}


def test_every_registered_layer_is_covered():
    """A newly registered layer fails here until it has a reference formula here or is claimed in
    COVERED_ELSEWHERE by a test file that exists and names it (in quotes)."""
    import re
    from pathlib import Path

    assert set(LAYERS) == set(FORMULAS) | set().union(*COVERED_ELSEWHERE.values())
    here = Path(__file__).parent
    unclaimed = [
        f"{file}: {name}" + ("" if (here / file).exists() else " (no such file)")
        for file, names in COVERED_ELSEWHERE.items()
        for name in sorted(names)
        if not (here / file).exists() or not re.search(f"[\"']{re.escape(name)}[\"']", (here / file).read_text())
    ]
    assert not unclaimed, "not tested in the file that claims them: " + ", ".join(unclaimed)


def test_no_layer_name_appears_outside_the_engine():
    """What the program must know about a layer is declared on its class: no code outside engine/ tests a name."""
    import re
    from pathlib import Path

    import nntrain

    root = Path(nntrain.__file__).parent
    quoted = re.compile("[\"'](" + "|".join(map(re.escape, LAYERS)) + ")[\"']")
    found = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        if "engine" not in path.relative_to(root).parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if quoted.search(line)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_forward_matches_formula(name):
    layer = make(name)
    x = np.random.default_rng(1).standard_normal((BATCH, IN)) * 2
    expected = FORMULAS[name](x, layer.params)
    out = layer.forward(x, training=True)
    assert out.shape == expected.shape
    assert_allclose(out, expected, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_backward_matches_centered_differences(name):
    """Input and parameter gradients of sum(out * R) against centered differences, float64."""
    rng = np.random.default_rng(2)
    layer = make(name)
    x = away_from_zero(rng, (BATCH, IN))
    weights = rng.standard_normal((BATCH, layer.params["weight"].shape[1] if layer.params else IN))

    def f():
        return float(np.sum(layer.forward(x, training=True) * weights))

    f()
    analytic_x = layer.backward(weights.copy(), need_input_grad=True)
    analytic_params = {k: v.copy() for k, v in layer.grads.items()}

    assert rel_error(analytic_x, numeric_grad(f, x)) < 1e-6
    for key, value in layer.params.items():
        assert rel_error(analytic_params[key], numeric_grad(f, value)) < 1e-6, key


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_gradcheck_through_a_network(name):
    """check_gradients on linear -> layer -> linear -> mse passes for every tensor."""
    rng = np.random.default_rng(3)
    layers = [LAYERS["linear"](units=6), LAYERS[name](**OPTIONS.get(name, {})), LAYERS["linear"](units=2)]
    net = Network(layers, MSE(), IN, np.float64, rng, init="xavier")
    x = rng.standard_normal((BATCH, IN))
    t = rng.standard_normal((BATCH, 2))
    results = check_gradients(net, x, t)
    for r in results:
        # A ReLU pre-activation within 2 eps of 0 is a kink: counted, never a failure.
        assert r.passed and r.max_rel_error < 1e-6, r
        assert r.checked - r.kinks > 0, r


def test_relu_and_leaky_relu_slopes_at_and_around_zero():
    """Gradient 1 for x > 0, 0 (ReLU) or slope (leaky) for x <= 0, as torch's convention at 0."""
    x = np.array([[-2.0, -1e-12, 0.0, 1e-12, 3.0]])
    g = np.ones_like(x)
    relu, leaky = LAYERS["relu"](), LAYERS["leaky_relu"](slope=0.2)
    assert_array_equal(relu.forward(x, True), [[0, 0, 0, 1e-12, 3.0]])
    assert_array_equal(relu.backward(g), [[0, 0, 0, 1, 1]])
    assert_allclose(leaky.forward(x, True), [[-0.4, -2e-13, 0, 1e-12, 3.0]], rtol=1e-15)
    assert_array_equal(leaky.backward(g), [[0.2, 0.2, 0.2, 1, 1]])
    # kinks() records the side of 0 each unit was on, for gradcheck.
    assert_array_equal(relu.kinks(), [[False, False, False, True, True]])


def test_leaky_relu_default_slope():
    layer = LAYERS["leaky_relu"]()
    assert_allclose(layer.forward(np.array([[-5.0]]), True), [[-0.05]], rtol=1e-15)


def test_softmax_rows_sum_to_one_and_survive_large_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = LAYERS["softmax"]().forward(x, True)
    assert_allclose(y.sum(axis=1), 1.0, rtol=1e-15)
    assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-15, atol=1e-300)


def test_linear_shapes_and_zero_bias_at_setup():
    layer = LAYERS["linear"](units=7)
    out = layer.setup((4,), np.float64, np.random.default_rng(0), "he", 0.1)
    assert out == (7,)
    assert layer.params["weight"].shape == (4, 7) and layer.params["bias"].shape == (7,)
    assert_array_equal(layer.params["bias"], 0)


def test_linear_backward_without_input_grad():
    """need_input_grad=False returns None and fills the same parameter gradients."""
    layer = make("linear")
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((BATCH, IN)), rng.standard_normal((BATCH, UNITS))
    layer.forward(x, True)
    assert layer.backward(g, need_input_grad=True).shape == (BATCH, IN)
    with_input = {k: v.copy() for k, v in layer.grads.items()}
    layer.grads["weight"][...] = layer.grads["bias"][...] = np.nan
    assert layer.backward(g, need_input_grad=False) is None
    for key, value in with_input.items():
        assert_array_equal(layer.grads[key], value)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_extremes_finite_and_correct(dtype):
    """|x| = 1000 gives exactly 0 / 1 with a zero gradient, no overflow warning, in either precision."""
    x = np.array([[-1000.0, -50.0, -10.0, -1.0, 0.0, 1.0, 10.0, 50.0, 1000.0]], dtype=dtype)
    layer = LAYERS["sigmoid"]()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = layer.forward(x, True)
        dx = layer.backward(np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert y[0, 0] == 0.0 and y[0, -1] == 1.0
    assert dx[0, 0] == 0.0 and dx[0, -1] == 0.0
    atol = 1e-7 if dtype == np.float32 else 1e-16
    ref = sigmoid_reference(x)
    assert_allclose(y, ref, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=atol)
    assert_allclose(dx, ref * (1 - ref), rtol=1e-6 if dtype == np.float32 else 1e-12, atol=atol)


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_float32_layer_keeps_float32(name):
    """Outputs, input gradients and parameter gradients of a float32 layer stay float32."""
    layer = make(name, dtype=np.float32)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((BATCH, IN)).astype(np.float32)
    out = layer.forward(x, training=True)
    assert out.dtype == np.float32
    dx = layer.backward(np.ones_like(out), need_input_grad=True)
    assert dx.dtype == np.float32
    for key in layer.params:
        assert layer.params[key].dtype == np.float32, key
        assert layer.grads[key].dtype == np.float32, key
    # ...and agree with the float64 formula to float32 precision.
    p64 = {k: v.astype(np.float64) for k, v in layer.params.items()}
    assert_allclose(out, FORMULAS[name](x.astype(np.float64), p64), rtol=1e-5, atol=1e-6)
