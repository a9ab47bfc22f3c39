"""Noise layers (engine/layers/noise.py): dropout and gaussian_noise.

Behaviour at eval and training time, statistics, determinism from the network's generator, and
a gradcheck that catches a wrong dropout backward. The gradchecks, state dicts, float32 and
config tests that mix these layers with batch_norm / layer_norm live in test_norm.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import build, layer
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.network import DEFAULT_RNG_SEED


# ---------------------------------------------------------------- dropout


@pytest.mark.parametrize("p", [0.0, 0.3, 0.9])
def test_dropout_eval_is_identity(p):
    drop = layer("dropout", p=p)
    x = np.random.default_rng(1).standard_normal((50, 4))
    state = drop.rng.bit_generator.state
    assert_array_equal(drop.forward(x, training=False), x)
    g = np.random.default_rng(2).standard_normal((50, 4))
    assert_array_equal(drop.backward(g), g)
    assert drop.rng.bit_generator.state == state  # eval draws nothing


def test_dropout_p_zero_is_identity_in_training():
    drop = layer("dropout", p=0.0)
    x = np.random.default_rng(1).standard_normal((50, 4))
    assert_array_equal(drop.forward(x, training=True), x)
    assert_array_equal(drop.backward(x * 2), x * 2)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_keeps_one_minus_p_and_scales(p):
    drop = layer("dropout", width=500, p=p)
    x = np.ones((200, 500))  # 100,000 units: the kept fraction is within ~0.002 of 1 - p
    y = drop.forward(x, training=True)
    kept = y != 0
    assert kept.mean() == pytest.approx(1 - p, abs=0.01)
    assert_allclose(y[kept], 1 / (1 - p), rtol=1e-15)
    assert np.unique(y).size == 2
    # Scaled so that the mean activation is unchanged.
    assert y.mean() == pytest.approx(1.0, abs=0.03)


def test_dropout_expected_output_is_the_input():
    """E[y] = x entry by entry: the average of 20,000 independent masks over one row v."""
    rng = np.random.default_rng(3)
    v = rng.uniform(0.5, 2.0, 6) * rng.choice([-1, 1], 6)
    drop = layer("dropout", width=6, p=0.4)
    y = drop.forward(np.tile(v, (20000, 1)), training=True)
    # Per entry the std of the mean is |v| sqrt(p / (1 - p)) / sqrt(20000) ~ 0.0058 |v|.
    assert_allclose(y.mean(axis=0), v, rtol=0.03)
    assert not np.allclose(y.mean(axis=0), v, rtol=1e-6)  # it is a real average of random masks


def test_dropout_gradient_flows_through_kept_units_only():
    p = 0.5
    drop = layer("dropout", width=8, p=p)
    rng = np.random.default_rng(4)
    x, g = rng.standard_normal((10, 8)), rng.standard_normal((10, 8))
    y = drop.forward(x, training=True)
    dx = drop.backward(g)
    kept = y != 0
    assert 0 < kept.sum() < kept.size
    assert_allclose(dx[kept], g[kept] / (1 - p), rtol=1e-15)
    assert_array_equal(dx[~kept], 0)


def test_dropout_same_rng_state_same_mask():
    x = np.random.default_rng(5).standard_normal((30, 4))
    a, b = layer("dropout", seed=7, p=0.5), layer("dropout", seed=7, p=0.5)
    assert_array_equal(a.forward(x, True), b.forward(x, True))
    state = a.rng.bit_generator.state
    first = a.forward(x, True)
    assert not np.array_equal(first, a.forward(x, True))  # the generator moves on: a new mask
    a.rng.bit_generator.state = state
    assert_array_equal(a.forward(x, True), first)  # restored state: the same mask again


def test_dropout_never_touches_global_random_state():
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    layer("dropout", p=0.5).forward(np.ones((10, 4)), True)
    layer("gaussian_noise", std=1.0).forward(np.ones((10, 4)), True)
    assert_array_equal(np.random.get_state()[1], before)


def test_stochastic_layer_without_rng_says_so():
    drop = LAYERS["dropout"](p=0.5)
    drop.setup((4,), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
    with pytest.raises(RuntimeError, match="rng"):
        drop.forward(np.ones((2, 4)), True)
    assert_array_equal(drop.forward(np.ones((2, 4)), False), 1)  # eval needs none


# ---------------------------------------------------------------- the network's generator


def test_network_rng_is_shared_with_layers_and_drives_dropout():
    spec = [("linear", {"units": 6}), ("dropout", {"p": 0.5}), ("gaussian_noise", {"std": 0.3}), ("linear", {"units": 2})]
    net = build(spec)
    assert all(l.rng is net.rng for l in net.layers)
    # The default generator has a fixed seed: two equal networks draw the same masks and noise.
    assert_array_equal(build(spec).forward(np.ones((5, 4)), True), net.forward(np.ones((5, 4)), True))
    assert net.rng.bit_generator.state != np.random.default_rng(DEFAULT_RNG_SEED).bit_generator.state  # it drew

    train = np.random.default_rng(99)
    net.rng = train  # what the trainer does: the run's training generator, saved in checkpoints
    assert net.rng is train and all(l.rng is train for l in net.layers)
    x = np.random.default_rng(6).standard_normal((5, 4))
    state = train.bit_generator.state
    first = net.forward(x, True)
    assert train.bit_generator.state != state  # the masks came from `train`
    train.bit_generator.state = state  # e.g. restored from a checkpoint's meta.rng
    assert_array_equal(net.forward(x, True), first)
    assert_array_equal(net.forward(x, False), net.forward(x, False))  # eval is deterministic
    with pytest.raises(TypeError, match="Generator"):
        net.rng = 42


# ---------------------------------------------------------------- gaussian noise


def test_gaussian_noise_eval_identity_and_training_std():
    noise = layer("gaussian_noise", width=500, std=0.3)
    x = np.random.default_rng(7).standard_normal((200, 500))
    assert_array_equal(noise.forward(x, training=False), x)
    y = noise.forward(x, training=True)
    d = y - x
    assert d.std() == pytest.approx(0.3, rel=0.01)  # 100,000 draws: ~0.2% sampling error
    assert abs(d.mean()) < 0.005
    g = np.random.default_rng(8).standard_normal(x.shape)
    assert_array_equal(noise.backward(g), g)


def test_gaussian_noise_default_and_zero_std():
    assert LAYERS["gaussian_noise"]().std == 0.1
    assert LAYERS["dropout"]().p == 0.5
    x = np.ones((3, 4))
    assert_array_equal(layer("gaussian_noise", std=0.0).forward(x, True), x)


# ---------------------------------------------------------------- gradcheck, randomness frozen

DROPOUT_NET = [("linear", {"units": 8}), ("tanh", {}), ("dropout", {"p": 0.3}), ("linear", {"units": 2})]


def test_gradcheck_catches_a_dropout_backward_that_ignores_the_mask(monkeypatch):
    """With the mask frozen the check is exact, so a wrong dropout backward fails below the layer."""
    net = build(DROPOUT_NET, seed=3)
    rng = np.random.default_rng(12)
    x, t = rng.standard_normal((7, 4)), rng.standard_normal((7, 2))
    monkeypatch.setattr(type(net.layers[2]), "backward", lambda self, grad, need_input_grad=True: grad)
    results = {r.name: r for r in check_gradients(net, x, t)}
    assert results["layers.3.weight"].passed  # above the broken layer
    assert not results["layers.0.weight"].passed and not results["input"].passed

