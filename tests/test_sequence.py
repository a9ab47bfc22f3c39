"""conv1d, max_pool1d, avg_pool1d against torch.nn.Conv1d / MaxPool1d / AvgPool1d; time_pool against formulas.

Fixtures made by tests/fixtures/make_torch_sequence_fixtures.py (torch is not needed here):
every case's forward and backward must equal torch's within 1e-12 in float64, sequences of
different lengths in one padded batch included (torch runs each sequence alone, cut to its
length). Then time_pool against plain numpy formulas, gradient checks with and without
lengths, what padded steps may and may not change, out_lengths, float32 end to end, shapes
and their errors, the options as the constructor and the config see them, reused arrays
within a training step, inputs left alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain import config as cfg
from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS, ShapeError
from nntrain.engine.layers.sequence import AvgPool1d, Conv1d, MaxPool1d, TimePool
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network

FIXTURE = Path(__file__).parent / "fixtures" / "torch_sequence.npz"
DATA = np.load(FIXTURE, allow_pickle=False)
SEQUENCE_LAYERS = ("conv1d", "max_pool1d", "avg_pool1d")
CASES = [c for c in DATA["cases"] if str(DATA[f"{c}.layer"]) in SEQUENCE_LAYERS]
F64 = np.dtype(np.float64)


def fixture_layer(case: str):
    """The case's layer, set up for its input, with torch's parameters."""
    layer = LAYERS[str(DATA[f"{case}.layer"])](**json.loads(str(DATA[f"{case}.options"])))
    layer.setup(DATA[f"{case}.x"].shape[1:], F64, np.random.default_rng(0), "he", 0.01)
    for name in layer.params:
        layer.params[name][...] = DATA[f"{case}.{name}"]
    return layer


def setup(layer, in_shape, dtype=F64):
    return layer.setup(tuple(in_shape), np.dtype(dtype), np.random.default_rng(0), "he", 0.01)


def network(spec, in_shape, loss="mse", dtype=np.float64, seed=0) -> Network:
    layers = [LAYERS[name](**options) for name, options in spec]
    return Network(layers, LOSSES[loss](), in_shape, dtype, np.random.default_rng(seed), init="xavier")


def test_registered_with_declarations():
    assert (LAYERS["conv1d"], LAYERS["max_pool1d"], LAYERS["avg_pool1d"], LAYERS["time_pool"]) == (
        Conv1d,
        MaxPool1d,
        AvgPool1d,
        TimePool,
    )
    assert Conv1d.decayed == ("weight",) and Conv1d.width_option == "filters"
    for cls in (Conv1d, MaxPool1d, AvgPool1d, TimePool):
        assert cls.sample_ndim == 2 and cls.uses_lengths and not cls.integer_input
    for cls in (MaxPool1d, AvgPool1d, TimePool):
        assert cls.decayed == () and cls.width_option is None
    layer = Conv1d(filters=4, kernel_size=3)
    assert setup(layer, (9, 2)) == (7, 4)
    assert layer.params["weight"].shape == (4, 2, 3) and layer.params["bias"].shape == (4,)
    assert_array_equal(layer.params["bias"], 0)
    no_bias = Conv1d(filters=4, kernel_size=3, bias=False)
    setup(no_bias, (9, 2))
    assert set(no_bias.params) == set(no_bias.grads) == {"weight"}


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case):
    layer = fixture_layer(case)
    x, grad = DATA[f"{case}.x"], DATA[f"{case}.grad"]
    lengths = DATA[f"{case}.lengths"] if f"{case}.lengths" in DATA else None
    before = [a.copy() for a in (x, grad, lengths) if a is not None]
    layer.lengths = lengths
    y = layer.forward(x, training=True)
    expected = DATA[f"{case}.y"]
    assert y.shape == expected.shape and y.dtype == np.float64
    if lengths is None:
        assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    else:
        out = layer.out_lengths(lengths)
        assert_array_equal(out, DATA[f"{case}.out_lengths"])
        real = np.arange(y.shape[1]) < out[:, None]
        assert_allclose(y[real], expected[real], rtol=1e-12, atol=1e-12)
        if layer.name == "max_pool1d":
            assert_array_equal(y[~real], 0)  # a padded output step of max holds 0, not -inf
    dx = layer.backward(grad)
    assert_allclose(dx, DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)
    if lengths is not None:
        assert_array_equal(dx[np.arange(x.shape[1]) >= lengths[:, None]], 0)  # exactly 0
    for name in ("weight", "bias"):
        if name in layer.params:
            assert_allclose(layer.grads[name], DATA[f"{case}.d{name}"], rtol=1e-12, atol=1e-12)
        else:
            assert f"{case}.d{name}" not in DATA
    for a, b in zip([a for a in (x, grad, lengths) if a is not None], before):
        assert_array_equal(a, b)  # a layer never writes into its arguments


def test_fixture_covers_the_cases():
    """Every layer with and without lengths, torch's 'same' with odd and even kernels, ties, padding, gaps."""
    kinds = {(str(DATA[f"{c}.layer"]), f"{c}.lengths" in DATA) for c in CASES}
    assert kinds == {(name, with_lengths) for name in SEQUENCE_LAYERS for with_lengths in (False, True)}
    options = [json.loads(str(DATA[f"{c}.options"])) for c in CASES]
    same = {o["kernel_size"] % 2 for o in options if o.get("padding") == "same"}
    assert same == {0, 1}
    assert any("ties" in c for c in CASES) and any(o.get("dilation", 1) > 1 for o in options)


@pytest.mark.parametrize("case", CASES)
def test_output_shape_is_setups(case):
    layer = LAYERS[str(DATA[f"{case}.layer"])](**json.loads(str(DATA[f"{case}.options"])))
    out = setup(layer, DATA[f"{case}.x"].shape[1:])
    assert (len(DATA[f"{case}.x"]), *out) == DATA[f"{case}.y"].shape


def test_conv_without_input_gradient():
    case = "conv_stride_padding"
    layer = fixture_layer(case)
    layer.forward(DATA[f"{case}.x"], training=True)
    assert layer.backward(DATA[f"{case}.grad"], need_input_grad=False) is None
    assert_allclose(layer.grads["weight"], DATA[f"{case}.dweight"], rtol=1e-12, atol=1e-12)
    assert_allclose(layer.grads["bias"], DATA[f"{case}.dbias"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ["conv_defaults", "max_overlap", "avg_gaps"])
def test_non_contiguous_input(case):
    """Strided views as input (every other sample; a (N, C, T) array seen as (N, T, C)) give what their copy gives."""
    layer = fixture_layer(case)
    x = DATA[f"{case}.x"]
    for view in (np.repeat(x, 2, axis=0)[::2], np.ascontiguousarray(x.transpose(0, 2, 1)).transpose(0, 2, 1)):
        assert not view.flags.c_contiguous
        assert_allclose(layer.forward(view, training=True), DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
        assert_allclose(layer.backward(DATA[f"{case}.grad"]), DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)


def test_max_pool_evaluation_forward_then_backward():
    """An evaluation forward finds no argmax as it goes; a backward after it still routes the gradient right."""
    case = "max_overlap_lengths"
    layer = fixture_layer(case)
    layer.lengths = DATA[f"{case}.lengths"]
    layer.forward(DATA[f"{case}.x"], training=False)
    assert layer.argmax is None
    assert_allclose(layer.backward(DATA[f"{case}.grad"]), DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)


def test_conv_init_uses_torch_fans():
    """he: std sqrt(2 / (C k)); the layer's own init / init_scale override the model's."""
    layer = Conv1d(filters=64, kernel_size=5)
    setup(layer, (20, 8))
    assert np.std(layer.params["weight"]) == pytest.approx(np.sqrt(2 / (8 * 5)), rel=0.05)
    own = Conv1d(filters=4, kernel_size=3, init="uniform", init_scale=0.5)
    setup(own, (9, 2))
    assert 0.3 < np.abs(own.params["weight"]).max() <= 0.5


# ---------------------------------------------------------------- time_pool against formulas


def time_pool_reference(x, lengths, mode):
    """y (N, C) and dy/dx as a function of the upstream gradient, written from the definition, one sample at a time."""
    n, steps, c = x.shape
    lengths = np.full(n, steps) if lengths is None else lengths
    y, picks = np.zeros((n, c)), []
    for i, length in enumerate(lengths):
        real = x[i, :length]
        if mode == "last":
            y[i] = real[-1]
            picks.append(np.eye(length)[-1][:, None] * np.ones(c))
        elif mode == "mean":
            y[i] = real.sum(axis=0) / length
            picks.append(np.full((length, c), 1.0 / length))
        else:
            y[i] = real.max(axis=0)
            picks.append((np.arange(length)[:, None] == real.argmax(axis=0)).astype(float))

    def dx(grad):
        out = np.zeros_like(x)
        for i, length in enumerate(lengths):
            out[i, :length] = picks[i] * grad[i]
        return out

    return y, dx


@pytest.mark.parametrize("lengths", [None, [6, 1, 3, 6, 2]])
@pytest.mark.parametrize("mode", ["last", "mean", "max"])
def test_time_pool_matches_formulas(mode, lengths):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 6, 3))
    lengths = None if lengths is None else np.array(lengths)
    if lengths is not None:
        x[np.arange(6) >= lengths[:, None]] = 1e6  # padding larger than any real step: max must not see it
    layer = TimePool(mode=mode)
    assert setup(layer, (6, 3)) == (3,)
    layer.lengths = lengths
    before = x.copy()
    y = layer.forward(x, training=True)
    expected, dx_of = time_pool_reference(x, lengths, mode)
    assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    grad = rng.standard_normal((5, 3))
    dx = layer.backward(grad)
    assert_allclose(dx, dx_of(grad), rtol=1e-12, atol=1e-12)
    if lengths is not None:
        assert_array_equal(dx[np.arange(6) >= lengths[:, None]], 0)
    assert_array_equal(x, before)
    assert layer.backward(grad, need_input_grad=False) is None
    assert layer.out_lengths(np.array([6, 1, 3, 6, 2])) is None  # the time axis is gone


def test_time_pool_max_takes_the_first_maximum():
    x = np.array([[[1.0, 5.0], [3.0, 5.0], [3.0, 2.0]]])
    layer = TimePool(mode="max")
    setup(layer, (3, 2))
    assert_array_equal(layer.forward(x, training=True), [[3.0, 5.0]])
    assert_array_equal(layer.backward(np.array([[1.0, 2.0]])), [[[0, 2], [1, 0], [0, 0]]])
    assert_array_equal(layer.kinks(), [[1, 0]])


# ---------------------------------------------------------------- gradient checks

GRADCHECK_NETWORKS = {
    "conv_relu_mean": [
        ("conv1d", {"filters": 3, "kernel_size": 3, "padding": "same"}),
        ("relu", {}),
        ("time_pool", {"mode": "mean"}),
        ("linear", {"units": 2}),
    ],
    "conv_strided_max_pool": [
        ("conv1d", {"filters": 3, "kernel_size": 2, "stride": 2, "padding": 1, "bias": False}),
        ("tanh", {}),
        ("max_pool1d", {"kernel_size": 2, "stride": 1}),
        ("time_pool", {"mode": "max"}),
        ("linear", {"units": 2}),
    ],
    "conv_dilated_avg_last": [
        ("conv1d", {"filters": 2, "kernel_size": 2, "dilation": 2, "padding": 1}),
        ("avg_pool1d", {"kernel_size": 3, "stride": 1, "padding": 1}),
        ("time_pool", {"mode": "last"}),
        ("linear", {"units": 2}),
    ],
    "pool_first": [
        ("max_pool1d", {"kernel_size": 3, "stride": 2, "padding": 1}),
        ("conv1d", {"filters": 2, "kernel_size": 2, "padding": "same"}),
        ("avg_pool1d", {"kernel_size": 2}),
        ("time_pool", {"mode": "mean"}),
        ("linear", {"units": 2}),
    ],
}
STEPS, CHANNELS = 7, 2
VARIABLE = np.array([7, 3, 1, 5])


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("name", list(GRADCHECK_NETWORKS))
def test_gradcheck(name, with_lengths):
    net = network(GRADCHECK_NETWORKS[name], (STEPS, CHANNELS))
    for layer in net.layers:
        if "bias" in layer.params:
            layer.params["bias"][...] = np.random.default_rng(3).standard_normal(layer.params["bias"].shape)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, STEPS, CHANNELS))
    results = check_gradients(net, x, rng.standard_normal((4, 2)), lengths=VARIABLE if with_lengths else None)
    assert {p.key for p in net.params} | {"input"} == {r.name for r in results}
    for r in results:
        assert r.passed and r.checked > r.kinks and r.max_rel_error <= 1e-6, r


def test_gradcheck_catches_a_wrong_gradient():
    """The check is not vacuous: a conv1d whose input gradient leaks into one padded step fails it."""
    net = network(GRADCHECK_NETWORKS["conv_relu_mean"], (STEPS, CHANNELS))
    conv = net.layers[0]
    backward = conv.backward

    def wrong(grad, need_input_grad=True):
        dx = backward(grad, need_input_grad)
        if dx is not None:
            dx[2, 4] += 0.01  # sample 2 has 1 real step: step 4 is padding
        return dx

    conv.backward = wrong
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, STEPS, CHANNELS))
    results = {r.name: r for r in check_gradients(net, x, rng.standard_normal((4, 2)), lengths=VARIABLE, max_entries=1000)}
    assert not results["input"].passed
    assert results["layers.0.weight"].passed


# ---------------------------------------------------------------- variable lengths


PADDED_SPECS = {
    "conv1d": [("conv1d", {"filters": 2, "kernel_size": 3, "stride": 2, "padding": 1}), ("time_pool", {"mode": "mean"})],
    "conv1d_valid": [("conv1d", {"filters": 2, "kernel_size": 3}), ("time_pool", {"mode": "last"})],
    "max_pool1d": [("max_pool1d", {"kernel_size": 2, "stride": 1}), ("time_pool", {"mode": "max"})],
    "avg_pool1d": [("avg_pool1d", {"kernel_size": 3, "stride": 2, "padding": 1}), ("time_pool", {"mode": "mean"})],
    **{f"time_pool_{mode}": [("time_pool", {"mode": mode})] for mode in ("last", "mean", "max")},
    "stack": GRADCHECK_NETWORKS["pool_first"][:-1],
}


def _step(net, x, t, lengths=None):
    loss, z, dx = net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
    return loss, z.copy(), dx.copy(), [p.grad.copy() for p in net.params]


def _assert_same_step(got, expected):
    assert got[0] == expected[0]
    for a, b in zip([got[1], got[2], *got[3]], [expected[1], expected[2], *expected[3]]):
        assert_array_equal(a, b)


@pytest.mark.parametrize("name", list(PADDED_SPECS))
def test_padded_steps_change_nothing(name):
    """Whatever padded steps hold (noise, inf, NaN), loss, outputs and gradients are the same, and their gradient is 0."""
    spec = [*PADDED_SPECS[name], ("linear", {"units": 2})]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((4, STEPS, CHANNELS))
    t = rng.standard_normal((4, 2))
    padded = np.arange(STEPS) >= VARIABLE[:, None]
    x[padded] = 0
    expected = _step(network(spec, (STEPS, CHANNELS)), x, t, VARIABLE)
    assert_array_equal(expected[2][padded], 0)  # exactly 0
    for garbage in (1e3 * rng.standard_normal((padded.sum(), CHANNELS)), np.inf, -np.inf, np.nan):
        changed = x.copy()
        changed[padded] = garbage
        _assert_same_step(_step(network(spec, (STEPS, CHANNELS)), changed, t, VARIABLE), expected)


@pytest.mark.parametrize("name", list(PADDED_SPECS))
def test_whole_lengths_are_no_lengths(name):
    """lengths all equal to T give exactly what no lengths give."""
    spec = [*PADDED_SPECS[name], ("linear", {"units": 2})]
    rng = np.random.default_rng(8)
    x, t = rng.standard_normal((4, STEPS, CHANNELS)), rng.standard_normal((4, 2))
    net = network(spec, (STEPS, CHANNELS))
    _assert_same_step(_step(net, x, t, np.full(4, STEPS)), _step(net, x, t))
    expected = net.forward(x)
    y, lengths = x, np.full(4, STEPS)  # ... and layers given whole lengths directly (not through a Network) agree
    for layer in net.chain:
        layer.lengths = lengths if layer.uses_lengths else None
        y = layer.forward(y, training=False)
        lengths = layer.out_lengths(lengths)
    assert_array_equal(y, expected)


def test_a_variable_batch_is_each_sequence_alone():
    """Each sample of a padded batch with lengths gets what it gets alone, cut to its length (a stack of layers)."""
    spec = [*GRADCHECK_NETWORKS["pool_first"]]
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, STEPS, CHANNELS))
    lengths = np.array([7, 3, 4, 5])  # each long enough to go through the network alone
    batch = network(spec, (STEPS, CHANNELS)).forward(x, lengths=lengths)
    for i, length in enumerate(lengths):
        alone = network(spec, (int(length), CHANNELS)).forward(x[i : i + 1, :length])
        assert_allclose(batch[i], alone[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "layer, in_steps, lengths, expected",
    [
        (Conv1d(filters=2, kernel_size=3, stride=2, padding=1), 9, [9, 4, 1, 6], [5, 2, 1, 3]),
        (Conv1d(filters=2, kernel_size=3), 9, [9, 3, 2, 1], [7, 1, 1, 1]),  # shorter than the kernel: 1
        (Conv1d(filters=2, kernel_size=4, padding="same"), 9, [9, 3, 1], [9, 3, 1]),
        (Conv1d(filters=2, kernel_size=3, dilation=3, stride=2, padding=2), 12, [12, 8, 3], [5, 3, 1]),
        (MaxPool1d(kernel_size=2), 9, [9, 8, 3, 1], [4, 4, 1, 1]),
        (MaxPool1d(kernel_size=3, stride=2, padding=1), 9, [9, 4, 1], [5, 2, 1]),
        (AvgPool1d(kernel_size=4, stride=1, padding=2), 6, [6, 1], [7, 2]),
    ],
)
def test_out_lengths(layer, in_steps, lengths, expected):
    out_steps = setup(layer, (in_steps, 2))[0]
    assert layer.out_lengths(np.full(1, in_steps))[0] == out_steps  # whole sequences: the output's steps
    got = layer.out_lengths(np.array(lengths))
    assert got.dtype == np.int64
    assert_array_equal(got, expected)


def test_lengths_flow_through_a_network():
    spec = [
        ("conv1d", {"filters": 2, "kernel_size": 3, "stride": 2, "padding": 1}),
        ("relu", {}),
        ("max_pool1d", {"kernel_size": 2}),
        ("time_pool", {"mode": "last"}),
        ("linear", {"units": 1}),
    ]
    net = network(spec, (9, 2))
    net.forward(np.zeros((4, 9, 2)), lengths=np.array([9, 4, 1, 6]))
    assert_array_equal(net.layers[0].lengths, [9, 4, 1, 6])
    assert_array_equal(net.layers[2].lengths, [5, 2, 1, 3])  # conv1d's out_lengths
    assert_array_equal(net.layers[3].lengths, [2, 1, 1, 1])  # max_pool1d's
    net.forward(np.zeros((4, 9, 2)))
    assert all(layer.lengths is None for layer in net.layers if layer.uses_lengths)


def test_sequences_shorter_than_the_kernel():
    """A sequence shorter than the kernel gets one output step, from its real steps and the padding value."""
    x = np.random.default_rng(10).standard_normal((2, 4, 3))
    lengths = np.array([4, 1])
    for layer, first in [
        (MaxPool1d(kernel_size=2), x[1, 0]),  # max(x0, -inf)
        (AvgPool1d(kernel_size=2), x[1, 0] / 2),  # (x0 + 0) / 2
    ]:
        setup(layer, (4, 3))
        layer.lengths = lengths
        y = layer.forward(x, training=True)
        assert_array_equal(layer.out_lengths(lengths), [2, 1])
        assert_allclose(y[1, 0], first, rtol=1e-15)
    conv = Conv1d(filters=2, kernel_size=3)
    setup(conv, (4, 3))
    conv.params["bias"][...] = [0.5, -1.0]
    conv.lengths = lengths
    y = conv.forward(x, training=True)
    assert_allclose(y[1, 0], conv.params["weight"][:, :, 0] @ x[1, 0] + conv.params["bias"], rtol=1e-12)


# ---------------------------------------------------------------- float32, shapes, errors


def test_float32_in_float32_out():
    spec = [*GRADCHECK_NETWORKS["pool_first"][:-2], ("conv1d", {"filters": 2, "kernel_size": 2}), *GRADCHECK_NETWORKS["conv_relu_mean"][2:]]
    for with_lengths in (False, True):
        net = network(spec, (STEPS, CHANNELS), dtype=np.float32)
        x = np.random.default_rng(0).standard_normal((4, STEPS, CHANNELS)).astype(np.float32)
        lengths = VARIABLE if with_lengths else None
        loss, z, dx = net.loss_and_grad(x, np.zeros((4, 2), np.float32), input_grad=True, lengths=lengths)
        assert np.isfinite(loss) and z.dtype == np.float32 and dx.dtype == np.float32
        for layer in net.layers:
            assert all(v.dtype == np.float32 for v in (*layer.params.values(), *layer.grads.values()))
        y = x
        for layer in net.layers:
            y = layer.forward(y, training=False)
            assert y.dtype == np.float32, layer.name
        assert net.layers[1].cols.dtype == np.float32
    for mode in ("last", "mean", "max"):
        layer = TimePool(mode=mode)
        setup(layer, (STEPS, CHANNELS), np.float32)
        layer.lengths = VARIABLE
        x = np.random.default_rng(0).standard_normal((4, STEPS, CHANNELS)).astype(np.float32)
        assert layer.forward(x, training=True).dtype == np.float32
        assert layer.backward(np.ones((4, CHANNELS), np.float32)).dtype == np.float32


@pytest.mark.parametrize(
    "layer, expected",
    [
        (Conv1d(filters=4, kernel_size=3), (7, 4)),
        (Conv1d(filters=4, kernel_size=3, padding=1), (9, 4)),
        (Conv1d(filters=4, kernel_size=4, padding="same"), (9, 4)),
        (Conv1d(filters=4, kernel_size=2, padding="same", dilation=3), (9, 4)),
        (Conv1d(filters=4, kernel_size=3, padding="valid"), (7, 4)),
        (Conv1d(filters=4, kernel_size=3, stride=2), (4, 4)),
        (Conv1d(filters=4, kernel_size=3, dilation=4), (1, 4)),
        (Conv1d(filters=4, kernel_size=9), (1, 4)),
        (MaxPool1d(kernel_size=2), (4, 3)),
        (MaxPool1d(kernel_size=3, stride=1, padding=1), (9, 3)),
        (AvgPool1d(kernel_size=4, stride=3, padding=2), (4, 3)),
        (AvgPool1d(kernel_size=9), (1, 3)),
        (TimePool(mode="mean"), (3,)),
    ],
)
def test_out_shape(layer, expected):
    assert setup(layer, (9, 3)) == expected


@pytest.mark.parametrize(
    "layer, in_shape, words",
    [
        (Conv1d(filters=2, kernel_size=3), (64,), ["conv1d", "(steps, channels)", "(64,)"]),
        (Conv1d(filters=2, kernel_size=3), (1, 8, 8), ["conv1d", "(steps, channels)", "(1, 8, 8)"]),
        (Conv1d(filters=2, kernel_size=5), (3, 2), ["conv1d", "kernel of 5 steps", "3 steps", "(3, 2)"]),
        (Conv1d(filters=2, kernel_size=3, dilation=3), (5, 2), ["conv1d", "dilation 3", "spans 7", "(5, 2)"]),
        (Conv1d(filters=2, kernel_size=6, padding=1), (2, 2), ["conv1d", "6 steps", "4 with its padding"]),
        (MaxPool1d(kernel_size=4), (3, 2), ["max_pool1d", "kernel of 4 steps", "(3, 2)"]),
        (AvgPool1d(kernel_size=5, padding=1), (2, 2), ["avg_pool1d", "5 steps", "4 with its padding"]),
        (MaxPool1d(kernel_size=2), (10,), ["max_pool1d", "(steps, channels)"]),
        (TimePool(mode="last"), (10,), ["time_pool", "(steps, features)", "(10,)"]),
    ],
)
def test_shape_errors(layer, in_shape, words):
    with pytest.raises(ShapeError) as info:
        setup(layer, in_shape)
    for word in words:
        assert word in str(info.value)


def test_shape_error_names_the_layer_in_a_network():
    with pytest.raises(ShapeError) as info:
        network([("conv1d", {"filters": 2, "kernel_size": 3}), ("max_pool1d", {"kernel_size": 2}), ("conv1d", {"filters": 2, "kernel_size": 3})], (6, 1))
    assert info.value.layer == 2 and "(2, 2)" in str(info.value)


@pytest.mark.parametrize(
    "cls, options, words",
    [
        (Conv1d, {"kernel_size": 3, "padding": "same", "stride": 2}, ["same", "stride 1"]),
        (Conv1d, {"kernel_size": [3]}, ["kernel_size", "integer"]),
        (Conv1d, {"kernel_size": [3, 3]}, ["kernel_size"]),
        (Conv1d, {"kernel_size": 0}, ["kernel_size", "between 1"]),
        (Conv1d, {"kernel_size": 100_001}, ["kernel_size", "100000"]),
        (Conv1d, {"kernel_size": True}, ["kernel_size"]),
        (Conv1d, {"kernel_size": 3.0}, ["kernel_size"]),
        (Conv1d, {"kernel_size": 3, "stride": 0}, ["stride"]),
        (Conv1d, {"kernel_size": 3, "padding": -1}, ["padding", "between 0"]),
        (Conv1d, {"kernel_size": 3, "padding": "full"}, ["padding", "same"]),
        (Conv1d, {"kernel_size": 3, "dilation": 0}, ["dilation"]),
        (MaxPool1d, {"kernel_size": 2, "padding": 2}, ["max_pool1d", "half the kernel"]),
        (AvgPool1d, {"kernel_size": 3, "padding": 2}, ["avg_pool1d", "half the kernel"]),
        (MaxPool1d, {"kernel_size": [2, 2]}, ["kernel_size"]),
        (AvgPool1d, {"kernel_size": 2, "stride": 0}, ["stride"]),
        (TimePool, {"mode": "first"}, ["time_pool", "last", "mean", "max"]),
    ],
)
def test_option_errors(cls, options, words):
    if cls is Conv1d:
        options = {"filters": 2, **options}
    with pytest.raises(ValueError) as info:
        cls(**options)
    for word in [cls.name, *words]:
        assert word in str(info.value)


def test_time_pool_mode_is_required():
    with pytest.raises(TypeError):
        TimePool()
    with pytest.raises(ValueError):
        cfg.LAYER_MODELS["time_pool"].model_validate({"type": "time_pool"})


@pytest.mark.parametrize(
    "name, options",
    [
        ("conv1d", {"filters": 4, "kernel_size": 3}),
        ("conv1d", {"filters": 4, "kernel_size": 3, "stride": 2, "padding": 1, "dilation": 2, "bias": False}),
        ("conv1d", {"filters": 4, "kernel_size": 4, "padding": "same", "init": "xavier", "init_scale": 0.1}),
        ("conv1d", {"filters": 4, "kernel_size": 3, "padding": "valid"}),
        ("max_pool1d", {"kernel_size": 2}),
        ("max_pool1d", {"kernel_size": 3, "stride": 2, "padding": 1}),
        ("avg_pool1d", {"kernel_size": 3, "stride": 1, "padding": 1}),
        ("time_pool", {"mode": "last"}),
        ("time_pool", {"mode": "mean"}),
        ("time_pool", {"mode": "max"}),
    ],
)
def test_config_accepts_options(name, options):
    spec = cfg.LAYER_MODELS[name].model_validate({"type": name, **options})
    LAYERS[name](**cfg.options(spec, "type"))  # what the config hands over builds the layer


@pytest.mark.parametrize(
    "name, options",
    [
        ("conv1d", {"kernel_size": 3}),  # no filters
        ("conv1d", {"filters": 0, "kernel_size": 3}),
        ("conv1d", {"filters": 4, "kernel_size": [3, 3]}),
        ("conv1d", {"filters": 4, "kernel_size": "3"}),
        ("conv1d", {"filters": 4, "kernel_size": 3.0}),
        ("conv1d", {"filters": 4, "kernel_size": 0}),
        ("conv1d", {"filters": 4, "kernel_size": 3, "padding": "full"}),
        ("conv1d", {"filters": 4, "kernel_size": 3, "padding": -1}),
        ("conv1d", {"filters": 4, "kernel_size": 3, "groups": 2}),
        ("max_pool1d", {}),
        ("max_pool1d", {"kernel_size": 2, "stride": 0}),
        ("avg_pool1d", {"kernel_size": 2, "padding": -1}),
        ("avg_pool1d", {"kernel_size": 2, "count_include_pad": False}),
        ("time_pool", {"mode": "first"}),
        ("time_pool", {"mode": "max", "axis": 1}),
    ],
)
def test_config_rejects_options(name, options):
    with pytest.raises(ValueError):
        cfg.LAYER_MODELS[name].model_validate({"type": name, **options})


# ---------------------------------------------------------------- training steps reuse arrays

REUSE_SPEC = [
    ("conv1d", {"filters": 3, "kernel_size": 3, "padding": 1}),
    ("relu", {}),
    ("max_pool1d", {"kernel_size": 2, "stride": 1}),
    ("conv1d", {"filters": 4, "kernel_size": 2, "stride": 2}),
    ("avg_pool1d", {"kernel_size": 3, "stride": 1, "padding": 1}),
    ("time_pool", {"mode": "max"}),
    ("linear", {"units": 3}),
]


@pytest.mark.parametrize("with_lengths", [False, True])
def test_reused_arrays_leave_no_stale_state(with_lengths):
    """Steps on different batches with reuse on give what fresh networks give for each, lengths or not."""
    rng = np.random.default_rng(3)

    def batch(n):
        lengths = rng.integers(1, 9, n) if with_lengths else None
        return rng.standard_normal((n, 8, 2)), rng.integers(0, 3, n), lengths

    batches = [batch(5), batch(5), batch(4), batch(5)]
    reused = network(REUSE_SPEC, (8, 2), loss="cross_entropy", seed=5)
    reused.reuse_arrays(True)
    for x, t, lengths in batches:
        expected = _step(network(REUSE_SPEC, (8, 2), loss="cross_entropy", seed=5), x, t, lengths)
        _assert_same_step(_step(reused, x, t, lengths), expected)


@pytest.mark.parametrize("with_lengths", [False, True])
def test_reused_arrays_may_hold_anything(with_lengths):
    """Whatever the kept arrays hold (NaN everywhere), a step on the same batch gives the same results."""
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((5, 8, 2)), rng.integers(0, 3, 5)
    lengths = np.array([8, 3, 1, 6, 2]) if with_lengths else None
    net = network(REUSE_SPEC, (8, 2), loss="cross_entropy", seed=5)
    expected = _step(net, x, t, lengths)
    net.reuse_arrays(True)
    _step(net, x, t, lengths)
    kept = list(net.arena._arrays.values())
    assert kept
    for array in kept:
        array.fill(np.nan if array.dtype.kind == "f" else 1)
    _assert_same_step(_step(net, x, t, lengths), expected)
    _assert_same_step(_step(net, x, t, lengths), expected)


def test_network_leaves_inputs_alone():
    net = network(REUSE_SPEC, (8, 2), loss="cross_entropy")
    rng = np.random.default_rng(4)
    x, t, lengths = rng.standard_normal((3, 8, 2)), rng.integers(0, 3, 3), np.array([8, 2, 5])
    x[1, 2:] = np.nan  # padding
    before, lengths_before = x.copy(), lengths.copy()
    net.reuse_arrays(True)
    for _ in range(2):
        loss, _, dx = net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
        assert np.isfinite(loss) and np.isfinite(dx).all()
    assert_array_equal(x, before)
    assert_array_equal(lengths, lengths_before)
