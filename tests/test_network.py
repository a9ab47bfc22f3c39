"""Network: CS231n sanity checks, backward modes, state dicts, initializers, seeds and float32 training."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine.init import INITIALIZERS, init_weight
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import OPTIMIZERS


def build(spec, loss="cross_entropy", in_features=5, dtype=np.float64, seed=0, **kw):
    """A Network from a compact spec: ["linear:16", "relu", ...]."""
    layers = []
    for item in spec:
        name, _, units = item.partition(":")
        layers.append(LAYERS[name](units=int(units)) if units else LAYERS[name]())
    return Network(layers, LOSSES[loss](), in_features, dtype, np.random.default_rng(seed), **kw)


def balanced(n_per_class, classes, features, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    return rng.standard_normal((len(y), features)), y


# ---------------------------------------------------------------- sanity checks


@pytest.mark.parametrize("softmax", [False, True])
def test_initial_loss_is_log_of_class_count(softmax):
    """With tiny weights every class gets probability ~1/C, so the loss is ~ln C (CS231n)."""
    classes = 4
    x, y = balanced(25, classes, 5)
    spec = ["linear:16", "relu", f"linear:{classes}"] + (["softmax"] if softmax else [])
    net = build(spec, init="normal", init_scale=1e-3)
    loss = net.loss.forward(net.forward(x), net.loss.encode(y, classes, np.float64))
    assert loss == pytest.approx(np.log(classes), abs=1e-4)


def test_initial_binary_loss_is_log_2():
    x, y = balanced(20, 2, 5)
    net = build(
        ["linear:8", "tanh", "linear:1", "sigmoid"], loss="binary_cross_entropy", init="normal", init_scale=1e-3
    )
    loss = net.loss.forward(net.forward(x), net.loss.encode(y, 2, np.float64))
    assert loss == pytest.approx(np.log(2), abs=1e-4)


@pytest.mark.parametrize(
    "optimizer, options",
    [("adam", {"lr": 0.02}), ("sgd", {"lr": 0.5, "momentum": 0.9})],
)
def test_overfits_twenty_samples(optimizer, options):
    """A small network drives the loss on 20 random samples to ~0 (CS231n): the whole loop learns."""
    x, y = balanced(5, 4, 5, seed=1)
    y = np.random.default_rng(2).permutation(y)  # labels unrelated to x: only memorizing works
    net = build(["linear:32", "tanh", "linear:4"], seed=3, init="xavier")
    t = net.loss.encode(y, 4, np.float64)
    opt = OPTIMIZERS[optimizer](**options)
    first = net.loss_and_grad(x, t)[0]
    for _ in range(300):
        loss, _, _ = net.loss_and_grad(x, t)
        opt.step(net.params)
    assert first > 1.0
    assert loss < 0.01
    assert_array_equal(net.loss.decide(net.forward(x)), y)


# ---------------------------------------------------------------- backward


@pytest.mark.parametrize(
    "spec",
    [
        ["linear:6", "relu", "linear:3"],
        ["tanh", "linear:6", "sigmoid", "linear:3"],  # an activation below the first linear
        ["linear:6", "leaky_relu", "linear:6", "softmax", "linear:3", "softmax"],
    ],
)
def test_backward_without_input_grad(spec):
    """input_grad=False returns None and fills exactly the parameter gradients input_grad=True does."""
    net = build(spec, in_features=4)
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((7, 4)), rng.integers(0, 3, 7)
    loss, _, dx = net.loss_and_grad(x, t, input_grad=True)
    assert dx.shape == x.shape
    with_input = [p.grad.copy() for p in net.params]
    for p in net.params:
        p.grad[...] = np.nan
    loss2, _, none = net.loss_and_grad(x, t, input_grad=False)
    assert none is None
    assert loss2 == loss
    for p, g in zip(net.params, with_input):
        assert_array_equal(p.grad, g, err_msg=p.key)


def test_input_gradient_matches_centered_differences():
    net = build(["linear:6", "tanh", "linear:3"], in_features=4)
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((3, 4)), rng.integers(0, 3, 3)
    _, _, dx = net.loss_and_grad(x, t, input_grad=True)
    h, numeric = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        numeric[idx] = (net.loss.forward(net.forward(xp), t) - net.loss.forward(net.forward(xm), t)) / (2 * h)
    assert_allclose(dx, numeric, rtol=1e-6, atol=1e-9)


def test_params_are_the_layers_arrays():
    """Param.value / Param.grad alias the layer's arrays: optimizer steps change what forward uses."""
    net = build(["linear:3", "relu", "linear:2"], in_features=2)
    assert [p.key for p in net.params] == ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias"]
    assert [p.decay for p in net.params] == [True, False, True, False]
    assert net.params[0].value is net.layers[0].params["weight"]
    assert net.params[0].grad is net.layers[0].grads["weight"]


# ---------------------------------------------------------------- state dict


def test_state_dict_round_trip():
    a, b = build(["linear:4", "relu", "linear:2"], seed=0), build(["linear:4", "relu", "linear:2"], seed=1)
    x = np.random.default_rng(0).standard_normal((3, 5))
    state = {k: v.copy() for k, v in a.state_dict().items()}
    b.load_state_dict({**state, "optim.steps": np.array(3), "meta.epoch": np.array(1)})  # a checkpoint's other keys
    assert_array_equal(b.forward(x), a.forward(x))
    assert b.params[0].value is b.layers[0].params["weight"]  # copied in place, still shared


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("layers.2.bias"), "missing"),
        (lambda s: s.__setitem__("layers.3.weight", np.zeros((2, 2))), "unexpected"),
        (lambda s: s.__setitem__("layers.2.weight", np.zeros((2, 4))), "shape"),
        (lambda s: s.__setitem__("layers.0.bias", np.zeros((1, 4))), "shape"),
    ],
    ids=["missing", "extra", "transposed", "extra-dim"],
)
def test_load_state_dict_rejects_wrong_keys_and_shapes(change, message):
    net = build(["linear:4", "relu", "linear:2"])
    state = {k: v + 1.0 for k, v in net.state_dict().items()}
    change(state)
    with pytest.raises(ValueError, match=message):
        net.load_state_dict(state)


def test_rejected_load_leaves_network_unchanged():
    """A state dict that is rejected must not be half applied (the shape error is on the last tensor)."""
    net = build(["linear:4", "relu", "linear:2"])
    before = {k: v.copy() for k, v in net.state_dict().items()}
    state = {k: v + 1.0 for k, v in before.items()}
    state["layers.2.bias"] = np.zeros(3)
    with pytest.raises(ValueError):
        net.load_state_dict(state)
    for key, value in before.items():
        assert_array_equal(net.state_dict()[key], value, err_msg=key)


# ---------------------------------------------------------------- initializers and seeds


def test_initializers_registered():
    assert set(INITIALIZERS) == {"he", "xavier", "normal", "uniform", "he_uniform", "xavier_normal", "lecun", "orthogonal"}


def test_he_std():
    w = init_weight("he", 500, 400, np.random.default_rng(0), 0.01, np.float64)
    assert w.shape == (500, 400)
    # 200,000 draws: the sample std is within ~0.2% of sqrt(2 / fan_in) = 0.0632.
    assert w.std() == pytest.approx(np.sqrt(2 / 500), rel=0.01)
    assert abs(w.mean()) < 1e-3


def test_xavier_limit():
    fan_in, fan_out = 300, 500
    w = init_weight("xavier", fan_in, fan_out, np.random.default_rng(0), 0.01, np.float64)
    limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.999 * limit  # uses the whole interval
    assert w.std() == pytest.approx(limit / np.sqrt(3), rel=0.01)  # uniform(-a, a) has std a / sqrt 3


def test_normal_and_uniform_use_init_scale():
    rng = np.random.default_rng(0)
    assert init_weight("normal", 400, 400, rng, 0.05, np.float64).std() == pytest.approx(0.05, rel=0.01)
    u = init_weight("uniform", 400, 400, rng, 0.05, np.float64)
    assert np.abs(u).max() <= 0.05 and np.abs(u).max() > 0.0499


def test_unknown_initializer():
    with pytest.raises(KeyError, match="unknown initializer"):
        init_weight("glorot", 2, 2, np.random.default_rng(0), 0.1, np.float64)


def test_layer_init_overrides_model_init():
    layers = [LAYERS["linear"](units=300, init="normal", init_scale=0.5), LAYERS["linear"](units=300)]
    net = Network(layers, LOSSES["mse"](), 300, np.float64, np.random.default_rng(0), init="he", init_scale=0.01)
    assert net.params[0].value.std() == pytest.approx(0.5, rel=0.02)
    assert net.params[2].value.std() == pytest.approx(np.sqrt(2 / 300), rel=0.02)


def test_same_seed_same_weights():
    spec = ["linear:8", "relu", "linear:3"]
    a, b, c = build(spec, seed=42), build(spec, seed=42), build(spec, seed=43)
    for p, q in zip(a.params, b.params):
        assert_array_equal(p.value, q.value)
    assert not np.array_equal(a.params[0].value, c.params[0].value)
    # float32 from the same seed: the same draws, rounded (weights are drawn in float64, then cast).
    d = build(spec, seed=42, dtype=np.float32)
    for p, q in zip(a.params, d.params):
        assert q.value.dtype == np.float32
        assert_array_equal(q.value, p.value.astype(np.float32))


# ---------------------------------------------------------------- float32 end to end

OPTIMIZER_SETTINGS = [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3}),
    ("adam", {"lr": 1e-3, "weight_decay": 1e-3}),
    ("rmsprop", {"lr": 1e-3, "momentum": 0.5, "centered": True, "weight_decay": 1e-3}),
]


@pytest.mark.parametrize("optimizer, options", OPTIMIZER_SETTINGS, ids=[o for o, _ in OPTIMIZER_SETTINGS])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "mae", "binary_cross_entropy", "hinge"])
def test_float32_training_never_upcasts(optimizer, options, loss):
    """Params, grads, outputs, input grads and optimizer buffers all stay float32 while training."""
    binary = loss in ("binary_cross_entropy", "hinge")
    width = 1 if binary else 3
    spec = ["linear:8", "sigmoid", "linear:8", "leaky_relu", f"linear:{width}"]
    spec += ["sigmoid"] if loss == "binary_cross_entropy" else ["softmax"] if loss == "cross_entropy" else []
    net = build(spec, loss=loss, in_features=4, dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    t = net.loss.encode(rng.integers(0, 2 if binary else 3, 16), 2 if binary else 3, np.float32)
    opt = OPTIMIZERS[optimizer](**options)
    losses = []
    for _ in range(5):
        loss_value, z, dx = net.loss_and_grad(x, t, input_grad=True)
        losses.append(loss_value)
        assert z.dtype == np.float32 and dx.dtype == np.float32
        opt.step(net.params)
        for p in net.params:
            assert p.value.dtype == np.float32, p.key
            assert p.grad.dtype == np.float32, p.key
            assert p.value is net.layers[int(p.key.split(".")[1])].params[p.key.split(".")[2]]  # updated in place
    assert net.predict(x).dtype == np.float32
    assert np.isfinite(losses).all() and losses[-1] != losses[0]
    state = opt.state_dict()
    assert len(state) > 1
    for key, value in state.items():
        if key != "steps":
            assert value.dtype == np.float32, key
