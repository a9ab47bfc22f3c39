"""check_gradients: passes on correct networks, fails on broken ones, restores values, handles kinks."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES, MSE
from nntrain.engine.network import Network

CLASSES = {"mse": 3, "mae": 3, "cross_entropy": 3, "binary_cross_entropy": 2, "hinge": 2, "multiclass_hinge": 3, "squared_hinge": 3, "huber": 3}


def mixed_network(loss_name, seed=0, dtype=np.float64):
    """Every activation once, between linears, ending as the loss expects (softmax / sigmoid fused)."""
    L = LAYERS
    layers = [
        L["linear"](units=6), L["sigmoid"](),
        L["linear"](units=6), L["tanh"](),
        L["linear"](units=6), L["relu"](),
        L["linear"](units=6), L["leaky_relu"](slope=0.1),
        L["linear"](units=5), L["softmax"](),
        L["linear"](units=5), L["identity"](),
    ]  # fmt: skip
    binary = loss_name in ("binary_cross_entropy", "hinge")
    layers.append(L["linear"](units=1 if binary else 3))
    if loss_name == "cross_entropy":
        layers.append(L["softmax"]())
    if loss_name == "binary_cross_entropy":
        layers.append(L["sigmoid"]())
    return Network(layers, LOSSES[loss_name](), 4, dtype, np.random.default_rng(seed), init="xavier")


def data(net, loss_name, seed=0, batch=8):
    rng = np.random.default_rng(100 + seed)
    x = rng.standard_normal((batch, 4))
    y = rng.integers(0, CLASSES[loss_name], batch)
    return x, net.loss.encode(y, CLASSES[loss_name], np.float64)


def by_name(results):
    return {r.name: r for r in results}


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_passes_on_mixed_network(loss_name, seed):
    """Every tensor of a correct float64 network is within 1e-6, whatever the (seeded) weights and data."""
    net = mixed_network(loss_name, seed)
    assert net.fused == (loss_name in ("cross_entropy", "binary_cross_entropy"))
    x, t = data(net, loss_name, seed)
    results = check_gradients(net, x, t)
    assert [r.name for r in results] == [p.key for p in net.params] + ["input"]
    for r in results:
        assert r.checked > 0 and r.checked - r.kinks > 0, r
        assert r.passed and r.max_rel_error < 1e-6, r


@pytest.mark.parametrize(
    "make",
    [
        # Linear regression, one sample: dL/dw = 2 (w x - t) x = 2 (0.5e-5 - 100) 1e-5 ~ -0.002, exact from
        # backprop and far above `tiny`; but L ~ 1e4, so rounding L alone moves the differences by ~2e-12 / eps.
        lambda: (
            Network([LAYERS["linear"](units=1)], MSE(), 1, np.float64, np.random.default_rng(0)),
            np.array([[1e-5]]),
            np.array([[100.0]]),
            {"layers.0.weight": [[0.5]], "layers.0.bias": [0.0]},
        ),
        # Hinge with two active samples of each label and one shared bias: dL/db = -(1 - 1 + 1 - 1) / 4 = 0
        # exactly, and L does not depend on b at all, but rounding makes the differences ~1e-12.
        lambda: (
            Network([LAYERS["linear"](units=1)], LOSSES["hinge"](), 2, np.float64, np.random.default_rng(0)),
            np.array([[0.7, 0.1], [0.2, 0.9], [0.4, 0.3], [0.5, 0.5]]),
            np.array([[1.0], [-1.0], [1.0], [-1.0]]),
            {"layers.0.weight": [[0.3], [-0.2]], "layers.0.bias": [0.1]},
        ),
    ],
    ids=["small-gradient-large-loss", "zero-gradient-by-cancellation"],
)
def test_correct_small_gradients_pass(make):
    """Backprop through one linear layer is exact; the check must not report its small entries as wrong.

    The module promises 1e-6 on every entry larger than `tiny` (1e-7); the differencing noise is
    about |L| * 1e-16 / eps, so it has to be allowed for when judging small entries.
    """
    net, x, t, state = make()
    net.load_state_dict({k: np.array(v, dtype=np.float64) for k, v in state.items()})
    for r in check_gradients(net, x, t):
        assert r.passed, r


# ---------------------------------------------------------------- it can fail


def _scaled_backward(original, factor):
    def backward(self, grad, need_input_grad=True):
        out = original(self, grad, need_input_grad)
        return None if out is None else out * factor

    return backward


# Options for the layers that take images: their test network is conv2d -> the layer -> flatten -> linear.
IMAGE_OPTIONS = {"conv2d": {"filters": 2, "kernel_size": 2}, "max_pool2d": {"kernel_size": 2, "stride": 1},
                 "avg_pool2d": {"kernel_size": 2, "stride": 1}, "global_avg_pool": {}}  # fmt: skip


SEQUENCE_OPTIONS = {"rnn": {"units": 3}, "lstm": {"units": 3}, "gru": {"units": 3}, "conv1d": {"filters": 2, "kernel_size": 2},
                    "max_pool1d": {"kernel_size": 2, "stride": 1}, "avg_pool1d": {"kernel_size": 2, "stride": 1},
                    "time_pool": {"mode": "mean"}}  # fmt: skip


# Layers that take token ids have no input gradient to break (test_embedding checks theirs).
@pytest.mark.parametrize("name", sorted(n for n in LAYERS if not LAYERS[n].integer_input))
def test_fails_when_a_layer_backward_is_broken(name, monkeypatch):
    """A 1% error in one layer's input gradient fails every tensor below it, and only those."""
    rng = np.random.default_rng(1)
    if LAYERS[name].sample_ndim == 2:  # (6, 3) sequences through a linear layer per step first
        layers = [LAYERS["linear"](units=4), LAYERS[name](**SEQUENCE_OPTIONS[name]), LAYERS["flatten"](),
                  LAYERS["linear"](units=2)]  # fmt: skip
        net = Network(layers, MSE(), (6, 3), np.float64, np.random.default_rng(0), init="xavier")
        x = rng.standard_normal((6, 6, 3))
    elif LAYERS[name].sample_ndim == 3:  # (2, 5, 5) images through a convolution first
        layers = [LAYERS["conv2d"](filters=2, kernel_size=2), LAYERS[name](**IMAGE_OPTIONS[name]), LAYERS["flatten"](),
                  LAYERS["linear"](units=2)]  # fmt: skip
        net = Network(layers, MSE(), (2, 5, 5), np.float64, np.random.default_rng(0), init="xavier")
        x = rng.standard_normal((6, 2, 5, 5))
    else:
        layers = [
            LAYERS["linear"](units=5),
            LAYERS[name](**({"units": 5} if name == "linear" else {})),
            LAYERS["linear"](units=2),
        ]
        net = Network(layers, MSE(), 3, np.float64, np.random.default_rng(0), init="xavier")
        x = rng.standard_normal((6, 3))
    t = rng.standard_normal((6, 2))
    top = f"layers.{len(layers) - 1}"
    assert all(r.passed for r in check_gradients(net, x, t))  # correct before the break

    cls = type(layers[1])
    monkeypatch.setattr(cls, "backward", _scaled_backward(cls.backward, 1.01))
    results = by_name(check_gradients(net, x, t))
    # Above the broken layer the gradients are still right (for 'linear' all three linears are broken,
    # but each one's own parameter gradients are computed before its input gradient is scaled).
    assert results[f"{top}.weight"].passed and results[f"{top}.bias"].passed
    # Below batch_norm the linear bias's true gradient is exactly 0 (the batch mean is subtracted),
    # so scaling it changes nothing and the check rightly passes it.
    below = ("layers.0.weight", "input") if name == "batch_norm" else ("layers.0.weight", "layers.0.bias", "input")
    for key in below:
        assert not results[key].passed, results[key]
        assert results[key].max_rel_error > 1e-3, results[key]


def test_fails_when_a_parameter_gradient_is_broken(monkeypatch):
    """Only the tampered tensor (every linear's weight) fails; biases and the input still pass."""
    original = LAYERS["linear"].backward

    def backward(self, grad, need_input_grad=True):
        out = original(self, grad, need_input_grad)
        self.grads["weight"] *= 1.01
        return out

    net = mixed_network("mse")
    x, t = data(net, "mse")
    monkeypatch.setattr(LAYERS["linear"], "backward", backward)
    for r in check_gradients(net, x, t):
        assert r.passed == (not r.name.endswith("weight")), r


@pytest.mark.parametrize("loss_name", sorted(LOSSES))
def test_fails_when_a_loss_backward_is_broken(loss_name, monkeypatch):
    """A 1% error in dL/dz fails every tensor whose gradient is not zero (0 * 1.01 is still right)."""
    net = mixed_network(loss_name)
    x, t = data(net, loss_name)
    net.loss_and_grad(x, t)
    nonzero = {p.key for p in net.params if np.abs(p.grad).max() > 1e-9} | {"input"}
    assert len(nonzero) > len(net.params) // 2
    cls = type(net.loss)
    original = cls.backward
    monkeypatch.setattr(cls, "backward", lambda self: original(self) * 1.01)
    for r in check_gradients(net, x, t):
        if r.name in nonzero:
            assert not r.passed and r.max_rel_error > 1e-3, r


# ---------------------------------------------------------------- restoring values


def _snapshot(net):
    return {p.key: p.value.copy() for p in net.params}


def test_parameters_and_input_restored_exactly():
    net = mixed_network("cross_entropy")
    x, t = data(net, "cross_entropy")
    before, x_before = _snapshot(net), x.copy()
    check_gradients(net, x, t)
    for key, value in before.items():
        assert_array_equal(net.state_dict()[key], value, err_msg=key)
    assert_array_equal(x, x_before)


class RaisingMSE(MSE):
    """MSE whose forward raises on call number `fail_on` (1 = the analytic pass)."""

    def __init__(self, fail_on):
        self.calls, self.fail_on = 0, fail_on

    def forward(self, z, t):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("loss failed")
        return super().forward(z, t)


@pytest.mark.parametrize("fail_on", [3, 4, 5, 40, 101])
def test_parameters_restored_when_the_loss_raises(fail_on):
    """Whatever stencil point the loss dies on, the perturbed entry goes back to its exact old value."""
    layers = [LAYERS["linear"](units=4), LAYERS["tanh"](), LAYERS["linear"](units=2)]
    net = Network(layers, RaisingMSE(fail_on), 3, np.float64, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    before = _snapshot(net)
    with pytest.raises(RuntimeError, match="loss failed"):
        check_gradients(net, x, t)
    assert net.loss.calls == fail_on  # it died where intended, mid-perturbation
    for key, value in before.items():
        assert_array_equal(net.state_dict()[key], value, err_msg=key)


# ---------------------------------------------------------------- kinks


def _kinked_relu_network():
    """linear(2 -> 3) -> relu -> linear(3 -> 1), mse, with unit 0's pre-activation 5e-5 for sample 0.

    Weight entries perturbed by ±2 eps = ±2e-4 (with x = 1) move that pre-activation across 0.
    """
    layers = [LAYERS["linear"](units=3), LAYERS["relu"](), LAYERS["linear"](units=1)]
    net = Network(layers, MSE(), 2, np.float64, np.random.default_rng(0))
    net.load_state_dict(
        {
            "layers.0.weight": np.array([[0.5, -0.3, 0.8], [-0.5, 0.6, 0.4]]),
            "layers.0.bias": np.array([5e-5, 0.2, 0.1]),
            "layers.2.weight": np.array([[1.5], [-0.7], [0.9]]),
            "layers.2.bias": np.array([0.1]),
        }
    )
    x = np.array([[1.0, 1.0], [0.3, -0.8], [-1.0, 0.5]])
    t = np.array([[2.0], [-1.0], [0.5]])
    pre = x @ net.params[0].value + net.params[1].value
    assert abs(pre[0, 0]) < 1e-4  # sample 0, unit 0 sits on the kink
    assert (np.abs(np.delete(pre.ravel(), 0)) > 1e-2).all()  # every other unit is far from it
    return net, x, t


def test_kinks_are_counted_not_failed():
    net, x, t = _kinked_relu_network()
    results = by_name(check_gradients(net, x, t))
    # Crossing entries: weight[0, 0], weight[1, 0] (x = 1), bias[0], and both inputs of sample 0 (|w| = 0.5).
    assert results["layers.0.weight"].kinks == 2
    assert results["layers.0.bias"].kinks == 1
    assert results["input"].kinks == 2
    assert results["layers.2.weight"].kinks == 0  # the pre-activations do not depend on it
    for r in results.values():
        assert r.passed and r.max_rel_error < 1e-6, r
        assert r.checked - r.kinks > 0, r


def test_kink_crossings_would_fail_without_detection(monkeypatch):
    """The same entries compared naively disagree: the kink count is what keeps them from failing."""
    net, x, t = _kinked_relu_network()
    monkeypatch.setattr(LAYERS["relu"], "kinks", lambda self: None)
    results = by_name(check_gradients(net, x, t))
    assert all(r.kinks == 0 for r in results.values())
    assert not results["layers.0.weight"].passed
    assert not results["layers.0.bias"].passed


@pytest.mark.parametrize("loss_name", ["mae", "hinge"])
def test_loss_kinks_are_counted(loss_name):
    """MAE and hinge report their own kinks: an output within eps of the target / margin is not a failure."""
    net = Network([LAYERS["linear"](units=1)], LOSSES[loss_name](), 1, np.float64, np.random.default_rng(0))
    net.load_state_dict({"layers.0.weight": np.array([[0.5]]), "layers.0.bias": np.array([0.0])})
    # mae: z = 0.5 x vs t, sample 0 has z - t = 5e-5.  hinge: t = +1, slack = 1 - 0.5 x = 5e-5 for sample 0.
    x = np.array([[2.0 - 1e-4], [-1.0], [4.0]])
    t = (
        np.array([[0.5 * (2.0 - 1e-4) - 5e-5], [1.0], [-1.0]])
        if loss_name == "mae"
        else np.array([[1.0], [1.0], [-1.0]])
    )
    results = by_name(check_gradients(net, x, t))
    assert results["layers.0.weight"].kinks == 1 and results["layers.0.bias"].kinks == 1
    assert all(r.passed for r in results.values()), results


def test_max_entries_samples_large_tensors():
    layers = [LAYERS["linear"](units=30), LAYERS["tanh"](), LAYERS["linear"](units=2)]
    net = Network(layers, MSE(), 10, np.float64, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    results = by_name(check_gradients(net, rng.standard_normal((4, 10)), rng.standard_normal((4, 2)), max_entries=20))
    assert results["layers.0.weight"].checked == 20  # 300 entries, 20 sampled
    assert results["layers.0.bias"].checked == 20
    assert results["layers.2.bias"].checked == 2  # smaller than max_entries: all of them
    assert all(r.passed for r in results.values())
