"""conv2d against torch.nn.Conv2d, and small CNNs (conv, relu, max_pool, linear) trained against torch.

Fixtures made by tests/fixtures/make_torch_conv_fixtures.py (torch is not needed here): every
case's forward and backward must equal torch's within 1e-12 in float64, computed both ways the
layer can lay out its im2col matrix (per sample, or for the whole batch with the wide grid of
stride 1); five full-batch epochs of SGD with momentum and of Adam must give torch's parameters
within 1e-10 relative. Then gradient checks, float32 end to end, shapes and their errors, the
option types as the config sees them, reused arrays within a training step, inputs left alone.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain import config as cfg
from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS, Conv2d, ShapeError
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import OPTIMIZERS

FIXTURE = Path(__file__).parent / "fixtures" / "torch_conv.npz"
DATA = np.load(FIXTURE, allow_pickle=False)
CONV_CASES = [c for c in DATA["cases"] if str(DATA[f"{c}.layer"]) == "conv2d"]
TRAININGS = list(DATA["trainings"])
PLANS = {"per_sample": True, "batch": False}


def conv_layer(case: str, per_sample: bool | None = None) -> Conv2d:
    """The case's conv2d, set up for its input, with torch's weights; `per_sample` forces a layout."""
    layer = LAYERS["conv2d"](**json.loads(str(DATA[f"{case}.options"])))
    x = DATA[f"{case}.x"]
    layer.setup(x.shape[1:], np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
    if per_sample is not None:
        layer.plan(per_sample)
    layer.params["weight"][...] = DATA[f"{case}.weight"]
    if layer.bias:
        layer.params["bias"][...] = DATA[f"{case}.bias"]
    return layer


def network(spec, in_shape, loss="mse", dtype=np.float64, seed=0, init="he") -> Network:
    """A Network from [("conv2d", {"filters": 2, "kernel_size": 3}), ("flatten", {}), ...]."""
    layers = [LAYERS[name](**options) for name, options in spec]
    return Network(layers, LOSSES[loss](), in_shape, dtype, np.random.default_rng(seed), init=init)


def test_registered_with_declarations():
    assert LAYERS["conv2d"] is Conv2d
    assert Conv2d.decayed == ("weight",) and Conv2d.width_option == "filters"
    layer = Conv2d(filters=3, kernel_size=[3, 2])
    assert layer.setup((2, 6, 5), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01) == (3, 4, 4)
    assert layer.params["weight"].shape == (3, 2, 3, 2) and layer.params["bias"].shape == (3,)
    assert_array_equal(layer.params["bias"], 0)
    no_bias = Conv2d(filters=3, kernel_size=2, bias=False)
    no_bias.setup((2, 6, 5), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
    assert set(no_bias.params) == set(no_bias.grads) == {"weight"}


def test_fixture_covers_both_layouts():
    """The cases exercise the per-sample layout, the wide batch grid and the strided batch grid by default."""
    chosen = set()
    for case in CONV_CASES:
        layer = conv_layer(case)
        chosen.add("per_sample" if layer.per_sample else "wide" if layer.wide else "strided")
    assert chosen == {"per_sample", "wide", "strided"}


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_matches_torch(case, plan):
    layer = conv_layer(case, PLANS[plan])
    x, grad = DATA[f"{case}.x"], DATA[f"{case}.grad"]
    x_before, grad_before = x.copy(), grad.copy()
    y = layer.forward(x, training=True)
    assert y.shape == DATA[f"{case}.y"].shape and y.dtype == np.float64
    assert_allclose(y, DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    dx = layer.backward(grad)
    assert_allclose(dx, DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)
    assert_allclose(layer.grads["weight"], DATA[f"{case}.dweight"], rtol=1e-12, atol=1e-12)
    if layer.bias:
        assert_allclose(layer.grads["bias"], DATA[f"{case}.dbias"], rtol=1e-12, atol=1e-12)
    else:
        assert f"{case}.dbias" not in DATA
    assert_array_equal(x, x_before)  # a layer never writes into its arguments
    assert_array_equal(grad, grad_before)


def test_conv_output_shape_is_setups():
    for case in CONV_CASES:
        layer = LAYERS["conv2d"](**json.loads(str(DATA[f"{case}.options"])))
        out = layer.setup(DATA[f"{case}.x"].shape[1:], np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
        assert (len(DATA[f"{case}.x"]), *out) == DATA[f"{case}.y"].shape, case


@pytest.mark.parametrize("plan", list(PLANS))
def test_conv_without_input_gradient(plan):
    """need_input_grad=False: the same parameter gradients, and None for the input."""
    case = "conv_stride_padding"
    layer = conv_layer(case, PLANS[plan])
    layer.forward(DATA[f"{case}.x"], training=True)
    assert layer.backward(DATA[f"{case}.grad"], need_input_grad=False) is None
    assert_allclose(layer.grads["weight"], DATA[f"{case}.dweight"], rtol=1e-12, atol=1e-12)
    assert_allclose(layer.grads["bias"], DATA[f"{case}.dbias"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("plan", list(PLANS))
def test_conv_non_contiguous_input(plan):
    """A strided view as input (every other sample of a batch) gives the same as its copy."""
    case = "conv_defaults"
    x = np.repeat(DATA[f"{case}.x"], 2, axis=0)[::2]
    assert not x.flags.c_contiguous
    layer = conv_layer(case, PLANS[plan])
    assert_allclose(layer.forward(x, training=True), DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    assert_allclose(layer.backward(DATA[f"{case}.grad"]), DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)


def test_conv_init_uses_torch_fans():
    """he: std sqrt(2 / (in kh kw)); the layer's own init / init_scale override the model's."""
    layer = Conv2d(filters=64, kernel_size=[5, 3])
    layer.setup((8, 9, 9), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
    assert np.std(layer.params["weight"]) == pytest.approx(np.sqrt(2 / (8 * 5 * 3)), rel=0.05)
    own = Conv2d(filters=4, kernel_size=3, init="uniform", init_scale=0.5)
    own.setup((2, 5, 5), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
    assert 0.3 < np.abs(own.params["weight"]).max() <= 0.5


# ---------------------------------------------------------------- training against torch


def fixture_network(name: str) -> Network:
    spec = [(layer, options) for layer, options in json.loads(str(DATA[f"{name}.model"]))]
    net = network(spec, DATA[f"{name}.x"].shape[1:], loss="cross_entropy")
    net.load_state_dict({k[len(f"{name}.init.") :]: DATA[k] for k in DATA.files if k.startswith(f"{name}.init.")})
    return net


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("name", TRAININGS)
def test_cnn_training_matches_torch(name, reuse):
    net = fixture_network(name)
    net.reuse_arrays(reuse)
    options = json.loads(str(DATA[f"{name}.optimizer"]))
    optimizer = OPTIMIZERS[options.pop("name")](**options)
    x, targets = DATA[f"{name}.x"], DATA[f"{name}.targets"]
    for epoch in range(int(DATA[f"{name}.epochs"])):
        loss, _, _ = net.loss_and_grad(x, targets)
        assert loss == pytest.approx(float(DATA[f"{name}.{epoch}.loss"]), rel=1e-12)
        optimizer.step(net.params)
        for p in net.params:
            assert_allclose(
                p.value, DATA[f"{name}.{epoch}.{p.key}"], rtol=1e-10, atol=1e-13, err_msg=f"{p.key} epoch {epoch}"
            )


# ---------------------------------------------------------------- gradient checks


GRADCHECK_CONVS = {
    "defaults": {"filters": 2, "kernel_size": 3},
    "same_even": {"filters": 2, "kernel_size": [2, 3], "padding": "same"},
    "same_dilated": {"filters": 2, "kernel_size": 3, "padding": "same", "dilation": 2},
    "strided_padded_no_bias": {"filters": 3, "kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 2], "bias": False},
}


@pytest.mark.parametrize("plan", list(PLANS))
@pytest.mark.parametrize("options", list(GRADCHECK_CONVS))
def test_conv_gradcheck(options, plan):
    net = network([("conv2d", GRADCHECK_CONVS[options]), ("flatten", {}), ("linear", {"units": 2})], (2, 6, 5))
    net.layers[0].plan(PLANS[plan])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 6, 5))
    results = check_gradients(net, x, rng.standard_normal((3, 2)))
    names = {r.name for r in results}
    assert {"layers.0.weight", "input"} <= names
    for r in results:
        assert r.passed and r.kinks == 0 and r.checked > 0 and r.max_rel_error <= 1e-6, r


def test_gradcheck_catches_a_wrong_gradient():
    """The check is not vacuous: a conv whose weight gradient is off by 1% fails it."""
    net = network([("conv2d", {"filters": 2, "kernel_size": 3}), ("flatten", {}), ("linear", {"units": 2})], (1, 5, 5))
    conv = net.layers[0]
    backward = conv.backward

    def wrong(grad, need_input_grad=True):
        dx = backward(grad, need_input_grad)
        conv.grads["weight"] *= 1.01
        return dx

    conv.backward = wrong
    rng = np.random.default_rng(2)
    results = {r.name: r for r in check_gradients(net, rng.standard_normal((2, 1, 5, 5)), rng.standard_normal((2, 2)))}
    assert not results["layers.0.weight"].passed
    assert results["input"].passed


# ---------------------------------------------------------------- float32, shapes, errors


@pytest.mark.parametrize("plan", list(PLANS))
def test_float32_in_float32_out(plan):
    net = network(
        [
            ("conv2d", {"filters": 3, "kernel_size": 3, "padding": 1}),
            ("relu", {}),
            ("conv2d", {"filters": 2, "kernel_size": 2}),
            ("flatten", {}),
            ("linear", {"units": 2}),
        ],
        (2, 6, 6),
        dtype=np.float32,
    )
    for layer in net.layers[::2][:2]:
        layer.plan(PLANS[plan])
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    loss, z, dx = net.loss_and_grad(x, np.zeros((4, 2), np.float32), input_grad=True)
    assert np.isfinite(loss) and z.dtype == np.float32 and dx.dtype == np.float32
    for layer in net.layers:
        assert all(v.dtype == np.float32 for v in (*layer.params.values(), *layer.grads.values()))
    conv = net.layers[0]
    assert conv.forward(x, training=False).dtype == np.float32
    assert conv.cols.dtype == np.float32


def test_lenet_shapes():
    spec = [
        ("conv2d", {"filters": 6, "kernel_size": 5}),
        ("relu", {}),
        ("max_pool2d", {"kernel_size": 2}),
        ("conv2d", {"filters": 16, "kernel_size": 5}),
        ("relu", {}),
        ("max_pool2d", {"kernel_size": 2}),
        ("flatten", {}),
        ("linear", {"units": 120}),
        ("relu", {}),
        ("linear", {"units": 84}),
        ("relu", {}),
        ("linear", {"units": 10}),
    ]
    net = network(spec, (1, 28, 28), loss="cross_entropy", dtype=np.float32)
    assert net.shapes[:7] == [(6, 24, 24), (6, 24, 24), (6, 12, 12), (16, 8, 8), (16, 8, 8), (16, 4, 4), (256,)]
    assert net.out_shape == (10,)
    # The first convolution has 576 positions per sample for 25 taps, the second 64 for 150.
    assert net.layers[0].per_sample and not net.layers[3].per_sample and net.layers[3].wide
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    assert net.forward(x).shape == (3, 10)
    assert net.forward(x.reshape(3, -1)).shape == (3, 10)  # rows of 784 are viewed as images


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"kernel_size": 3}, (4, 5, 7)),
        ({"kernel_size": 3, "padding": 1}, (4, 7, 9)),
        ({"kernel_size": 3, "padding": "same"}, (4, 7, 9)),
        ({"kernel_size": [4, 2], "padding": "same", "dilation": 3}, (4, 7, 9)),
        ({"kernel_size": 3, "padding": "valid"}, (4, 5, 7)),
        ({"kernel_size": 3, "stride": 2}, (4, 3, 4)),
        ({"kernel_size": [3, 1], "stride": [1, 4], "padding": [0, 1]}, (4, 5, 3)),
        ({"kernel_size": 3, "dilation": [2, 1]}, (4, 3, 7)),
        ({"kernel_size": [7, 9]}, (4, 1, 1)),
    ],
)
def test_conv_out_shape(options, expected):
    layer = Conv2d(filters=4, **options)
    assert layer.setup((3, 7, 9), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01) == expected


@pytest.mark.parametrize(
    "in_shape, options, words",
    [
        ((64,), {"kernel_size": 3}, ["conv2d", "(channels, height, width)", "(64,)"]),
        ((8, 8), {"kernel_size": 3}, ["conv2d", "(channels, height, width)", "(8, 8)"]),
        ((1, 3, 3), {"kernel_size": 5}, ["conv2d", "5x5", "(1, 3, 3)"]),
        ((1, 8, 4), {"kernel_size": [3, 5]}, ["conv2d", "3x5", "8x4"]),
        ((1, 5, 5), {"kernel_size": 3, "dilation": 3}, ["conv2d", "dilation 3x3", "7x7", "(1, 5, 5)"]),
        ((1, 2, 2), {"kernel_size": 5, "padding": 1}, ["conv2d", "5x5", "4x4 with its padding"]),
    ],
)
def test_conv_shape_errors(in_shape, options, words):
    with pytest.raises(ShapeError) as info:
        Conv2d(filters=2, **options).setup(in_shape, np.dtype(np.float64), np.random.default_rng(0), "he", 0.01)
    for word in words:
        assert word in str(info.value)


def test_shape_error_names_the_layer_in_a_network():
    with pytest.raises(ShapeError) as info:
        network(
            [
                ("conv2d", {"filters": 2, "kernel_size": 3}),
                ("max_pool2d", {"kernel_size": 2}),
                ("conv2d", {"filters": 2, "kernel_size": 3}),
            ],
            (1, 6, 6),
        )
    assert info.value.layer == 2 and "(2, 2, 2)" in str(info.value)


def test_padding_makes_a_kernel_fit():
    layer = Conv2d(filters=2, kernel_size=5, padding=1)
    assert layer.setup((1, 3, 3), np.dtype(np.float64), np.random.default_rng(0), "he", 0.01) == (2, 1, 1)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"kernel_size": 3, "padding": "same", "stride": 2}, ["same", "stride 1"]),
        ({"kernel_size": [3]}, ["kernel_size", "pair"]),
        ({"kernel_size": [3, 3, 3]}, ["kernel_size"]),
        ({"kernel_size": 0}, ["kernel_size", "between 1"]),
        ({"kernel_size": [0, 3]}, ["kernel_size", "between 1"]),
        ({"kernel_size": True}, ["kernel_size"]),
        ({"kernel_size": 3.0}, ["kernel_size"]),
        ({"kernel_size": 3, "stride": 0}, ["stride"]),
        ({"kernel_size": 3, "padding": -1}, ["padding", "between 0"]),
        ({"kernel_size": 3, "padding": "full"}, ["padding"]),
        ({"kernel_size": 3, "dilation": [1, 0]}, ["dilation"]),
    ],
)
def test_conv_option_errors(options, words):
    with pytest.raises(ValueError) as info:
        Conv2d(filters=2, **options)
    for word in ["conv2d", *words]:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"filters": 4, "kernel_size": 3},
        {"filters": 4, "kernel_size": [3, 5], "stride": [1, 2], "padding": [0, 2], "dilation": [2, 1], "bias": False},
        {"filters": 4, "kernel_size": 3, "padding": "same", "init": "xavier", "init_scale": 0.1},
        {"filters": 4, "kernel_size": 3, "padding": "valid"},
    ],
)
def test_config_accepts_options(options):
    spec = cfg.LAYER_MODELS["conv2d"].model_validate({"type": "conv2d", **options})
    Conv2d(**cfg.options(spec, "type"))  # what the config hands over builds the layer


@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 3},  # no filters
        {"filters": 0, "kernel_size": 3},
        {"filters": 4, "kernel_size": "3"},
        {"filters": 4, "kernel_size": 3.0},
        {"filters": 4, "kernel_size": True},
        {"filters": 4, "kernel_size": 0},
        {"filters": 4, "kernel_size": 3, "padding": "full"},
        {"filters": 4, "kernel_size": 3, "padding": -1},
        {"filters": 4, "kernel_size": 3, "stride": [1, "2"]},
        {"filters": 4, "kernel_size": 3, "bias": "yes"},
        {"filters": 4, "kernel_size": 3, "groups": 2},
    ],
)
def test_config_rejects_options(options):
    with pytest.raises(ValueError):
        cfg.LAYER_MODELS["conv2d"].model_validate({"type": "conv2d", **options})


# ---------------------------------------------------------------- training steps reuse arrays


CNN = [
    ("conv2d", {"filters": 3, "kernel_size": 3, "padding": 1}),
    ("relu", {}),
    ("max_pool2d", {"kernel_size": 2}),
    ("conv2d", {"filters": 4, "kernel_size": 2}),
    ("relu", {}),
    ("avg_pool2d", {"kernel_size": 2, "stride": 1}),
    ("conv2d", {"filters": 2, "kernel_size": 3, "stride": 2, "padding": 1}),
    ("global_avg_pool", {}),
    ("linear", {"units": 3}),
]


def _step(net, x, t):
    loss, z, dx = net.loss_and_grad(x, t, input_grad=True)
    return loss, z.copy(), dx.copy(), [p.grad.copy() for p in net.params]


@pytest.mark.parametrize("plan", list(PLANS))
def test_reused_arrays_leave_no_stale_state(plan):
    """Two steps on different batches with reuse on give what fresh networks give for each."""
    rng = np.random.default_rng(3)
    batches = [(rng.standard_normal((5, 2, 8, 8)), rng.integers(0, 3, 5)) for _ in range(3)]
    batches.insert(2, (rng.standard_normal((4, 2, 8, 8)), rng.integers(0, 3, 4)))  # another batch size between

    def build():
        net = network(CNN, (2, 8, 8), loss="cross_entropy", seed=5)
        for i in (0, 3, 6):
            net.layers[i].plan(PLANS[plan])
        return net

    reused = build()
    reused.reuse_arrays(True)
    for x, t in batches:
        expected = _step(build(), x, t)
        got = _step(reused, x, t)
        assert got[0] == expected[0]
        for a, b in zip([got[1], got[2], *got[3]], [expected[1], expected[2], *expected[3]]):
            assert_array_equal(a, b)


def test_network_leaves_inputs_alone():
    net = network(CNN, (2, 8, 8), loss="cross_entropy")
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((3, 2, 8, 8)), rng.integers(0, 3, 3)
    before = x.copy()
    net.reuse_arrays(True)
    net.loss_and_grad(x, t, input_grad=True)
    net.loss_and_grad(x, t, input_grad=True)
    assert_array_equal(x, before)


@pytest.mark.parametrize("plan", list(PLANS))
def test_reused_arrays_may_hold_anything(plan):
    """Whatever the arrays kept from the last step hold (here NaN everywhere), the next step's results are the same.

    Catches a layer that counts on an array it wrote before (a zeroed border, junk columns,
    the zeros after a buffer's end) without writing it again.
    """
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((5, 2, 8, 8)), rng.integers(0, 3, 5)
    net = network(CNN, (2, 8, 8), loss="cross_entropy", seed=5)
    for i in (0, 3, 6):
        net.layers[i].plan(PLANS[plan])
    expected = _step(net, x, t)
    net.reuse_arrays(True)
    _step(net, x, t)
    kept = list(net.arena._arrays.values())
    assert kept  # the step did keep arrays
    for array in kept:
        array.fill(np.nan if array.dtype.kind == "f" else 1)
    got = _step(net, x, t)
    assert got[0] == expected[0]
    for a, b in zip([got[1], got[2], *got[3]], [expected[1], expected[2], *expected[3]]):
        assert_array_equal(a, b)


@pytest.mark.parametrize("options, where", [({"kernel_size": [0, 3]}, "kernel_size.0"),
                                            ({"kernel_size": 3, "padding": [1, -1]}, "padding.1"),
                                            ({"kernel_size": [3, 100_001]}, "kernel_size.1")])  # fmt: skip
def test_config_checks_each_entry_of_a_pair(options, where):
    """The schema checks the range of each entry of [height, width], not only of a single number."""
    from nntrain.errors import NntrainError

    config = {"data": {"dataset": "digits"}, "model": {"layers": [{"conv2d": {"filters": 2, **options}}, "flatten", {"linear": 10}]}}
    with pytest.raises(NntrainError, match=re.escape(f"model.layers.0.{where}")):
        cfg.validate(config)
