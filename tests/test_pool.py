"""max_pool2d, avg_pool2d and global_avg_pool against torch.nn.MaxPool2d / AvgPool2d / AdaptiveAvgPool2d.

Fixtures made by tests/fixtures/make_torch_conv_fixtures.py (torch is not needed here): every
case's forward and backward must equal torch's within 1e-12 in float64, ties in max-pool
windows included (torch sends the gradient to the first maximum in row-major order). Then
gradient checks (ties are kinks the check must see and skip), float32 end to end, the paths
(side by side windows, gaps between windows, overlapping, padded) against a plain loop,
shapes and their errors, evaluation-mode forwards, the option types as the config sees them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain import config as cfg
from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS, AvgPool2d, GlobalAvgPool, MaxPool2d, ShapeError
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network

FIXTURE = Path(__file__).parent / "fixtures" / "torch_conv.npz"
DATA = np.load(FIXTURE, allow_pickle=False)
POOL_CASES = [c for c in DATA["cases"] if str(DATA[f"{c}.layer"]) != "conv2d"]


def pool_layer(name: str, in_shape, dtype=np.float64, **options):
    layer = LAYERS[name](**options)
    layer.setup(tuple(in_shape), np.dtype(dtype), np.random.default_rng(0), "he", 0.01)
    return layer


def network(spec, in_shape, loss="mse", dtype=np.float64, seed=0) -> Network:
    layers = [LAYERS[name](**options) for name, options in spec]
    return Network(layers, LOSSES[loss](), in_shape, dtype, np.random.default_rng(seed), init="xavier")


def reference_pool(x: np.ndarray, kind: str, kernel, stride, padding):
    """A plain loop over windows: outputs and, for max, each window's first argmax (flat index into x)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    padded = np.full((n, c, h + 2 * ph, w + 2 * pw), -np.inf if kind == "max" else 0.0)
    padded[:, :, ph : ph + h, pw : pw + w] = x
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    dx_of = np.zeros((n, c, oh, ow, h, w))  # d y[..., p, q] / d x
    for p in range(oh):
        for q in range(ow):
            window = padded[:, :, p * sh : p * sh + kh, q * sw : q * sw + kw].reshape(n, c, -1)
            if kind == "max":
                first = window.argmax(axis=2)
                y[:, :, p, q] = window.max(axis=2)
                for a in range(n):
                    for b in range(c):
                        i, j = divmod(first[a, b], kw)
                        dx_of[a, b, p, q, p * sh + i - ph, q * sw + j - pw] = 1
            else:
                y[:, :, p, q] = window.sum(axis=2) / (kh * kw)
                for i in range(kh):
                    for j in range(kw):
                        r, s = p * sh + i - ph, q * sw + j - pw
                        if 0 <= r < h and 0 <= s < w:
                            dx_of[:, :, p, q, r, s] += 1 / (kh * kw)
    return y, dx_of


def test_registered():
    assert LAYERS["max_pool2d"] is MaxPool2d and LAYERS["avg_pool2d"] is AvgPool2d
    assert LAYERS["global_avg_pool"] is GlobalAvgPool
    for cls in (MaxPool2d, AvgPool2d, GlobalAvgPool):
        assert cls.decayed == () and cls.width_option is None


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("case", POOL_CASES)
def test_pool_matches_torch(case):
    x, grad = DATA[f"{case}.x"], DATA[f"{case}.grad"]
    layer = pool_layer(str(DATA[f"{case}.layer"]), x.shape[1:], **json.loads(str(DATA[f"{case}.options"])))
    x_before, grad_before = x.copy(), grad.copy()
    y = layer.forward(x, training=True)
    assert y.shape == DATA[f"{case}.y"].shape and y.dtype == np.float64
    assert_allclose(y, DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    assert_allclose(layer.backward(grad), DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)
    assert layer.params == {} and layer.grads == {}
    assert_array_equal(x, x_before)
    assert_array_equal(grad, grad_before)


def test_tie_cases_have_ties():
    """The ties fixtures hold windows with equal maxima, and torch's gradient goes to just one of them."""
    case = "max_2_ties"
    x = DATA[f"{case}.x"]
    blocks = x.reshape(*x.shape[:2], 4, 2, 4, 2).transpose(0, 1, 2, 4, 3, 5).reshape(*x.shape[:2], 4, 4, 4)
    assert ((blocks == blocks.max(axis=-1, keepdims=True)).sum(axis=-1) > 1).any()
    dx = DATA[f"{case}.dx"].reshape(blocks.shape[:2] + (4, 2, 4, 2)).transpose(0, 1, 2, 4, 3, 5).reshape(blocks.shape)
    assert ((dx != 0).sum(axis=-1) == 1).all()


def test_max_pool_eval_forward_then_backward():
    """An evaluation-mode forward gives the same output, and backward after it still routes to the argmax."""
    case = "max_overlap_ties"
    x, grad = DATA[f"{case}.x"], DATA[f"{case}.grad"]
    layer = pool_layer("max_pool2d", x.shape[1:], **json.loads(str(DATA[f"{case}.options"])))
    assert_allclose(layer.forward(x, training=False), DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    assert_allclose(layer.backward(grad), DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
@pytest.mark.parametrize(
    "options",
    [
        {"kernel_size": 2},  # side by side, covering the image
        {"kernel_size": [3, 2]},  # side by side, leftover rows and columns
        {"kernel_size": 2, "stride": [3, 2]},  # gaps between windows
        {"kernel_size": 3, "stride": 1},  # overlapping
        {"kernel_size": [2, 3], "stride": [2, 1], "padding": [1, 1]},  # padded
        {"kernel_size": 1},
    ],
)
def test_paths_against_a_plain_loop(name, options):
    rng = np.random.default_rng(5)
    x = rng.integers(-3, 4, (2, 3, 8, 7)).astype(np.float64)  # many ties
    layer = pool_layer(name, x.shape[1:], **options)
    kernel = layer.kernel
    y_ref, dx_of = reference_pool(x, name[:3], kernel, layer.stride, layer.pads[::2])
    y = layer.forward(x, training=True)
    assert_array_equal(y, y_ref)
    grad = rng.standard_normal(y.shape)
    assert_allclose(layer.backward(grad), np.einsum("ncpq,ncpqhw->nchw", grad, dx_of), rtol=1e-14, atol=1e-14)


def test_max_pool_nan_propagates():
    x = np.arange(2 * 1 * 4 * 4, dtype=np.float64).reshape(2, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    y = pool_layer("max_pool2d", (1, 4, 4), kernel_size=2).forward(x, training=True)
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(np.delete(y.ravel(), 0)).all()


def test_max_pool_padding_is_never_the_max():
    x = -np.ones((1, 1, 3, 3)) * 1e300
    y = pool_layer("max_pool2d", (1, 3, 3), kernel_size=2, padding=1).forward(x, training=True)
    assert_array_equal(y, -1e300)


def test_avg_pool_counts_padding():
    y = pool_layer("avg_pool2d", (1, 2, 2), kernel_size=2, padding=1).forward(np.ones((1, 1, 2, 2)), training=True)
    assert_array_equal(y, 0.25)


# ---------------------------------------------------------------- gradient checks


@pytest.mark.parametrize(
    "name, options",
    [
        ("max_pool2d", {"kernel_size": 2}),
        ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
        ("avg_pool2d", {"kernel_size": 2}),
        ("avg_pool2d", {"kernel_size": [3, 2], "stride": 1, "padding": 1}),
        ("global_avg_pool", {}),
    ],
)
def test_pool_gradcheck(name, options):
    spec = [
        ("conv2d", {"filters": 2, "kernel_size": 3, "padding": "same"}),
        (name, options),
        ("flatten", {}),
        ("linear", {"units": 2}),
    ]
    net = network(spec, (1, 6, 6))
    rng = np.random.default_rng(6)
    results = check_gradients(net, rng.standard_normal((3, 1, 6, 6)), rng.standard_normal((3, 2)))
    for r in results:
        assert r.passed and r.checked > 0 and r.max_rel_error <= 1e-6, r


@pytest.mark.parametrize("options", [{"kernel_size": 2}, {"kernel_size": 3, "stride": 1, "padding": 1}])
def test_max_pool_gradcheck_with_ties(options):
    """Inputs with repeated values: entries tied for a window's max are kinks (skipped), the rest must pass."""
    net = network([("max_pool2d", options), ("flatten", {}), ("linear", {"units": 2})], (2, 6, 6))
    rng = np.random.default_rng(7)
    x = rng.integers(-2, 3, (3, 2, 6, 6)).astype(np.float64)
    results = {r.name: r for r in check_gradients(net, x, rng.standard_normal((3, 2)), max_entries=300)}
    tied = results["input"]
    assert tied.kinks > 0 and tied.kinks < tied.checked  # ties seen, and other entries compared
    for r in results.values():
        assert r.passed and r.max_rel_error <= 1e-6, r


def test_max_pool_kinks_follow_the_argmax():
    layer = pool_layer("max_pool2d", (1, 2, 2), kernel_size=2)
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    layer.forward(x, training=True)
    assert_array_equal(layer.kinks(), [[[[1]]]])  # the first of the tied 3s
    layer.forward(x + np.array([[[[0, 0], [1e-9, 0]]]]), training=True)
    assert_array_equal(layer.kinks(), [[[[2]]]])


# ---------------------------------------------------------------- float32, shapes, errors


@pytest.mark.parametrize(
    "name, options",
    [
        ("max_pool2d", {"kernel_size": 2}),
        ("max_pool2d", {"kernel_size": 3, "stride": 1, "padding": 1}),
        ("avg_pool2d", {"kernel_size": 2}),
        ("avg_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
        ("global_avg_pool", {}),
    ],
)
def test_float32_in_float32_out(name, options):
    layer = pool_layer(name, (3, 6, 6), dtype=np.float32, **options)
    x = np.random.default_rng(0).standard_normal((4, 3, 6, 6)).astype(np.float32)
    y = layer.forward(x, training=True)
    assert y.dtype == np.float32
    dx = layer.backward(np.ones_like(y))
    assert dx.dtype == np.float32 and dx.shape == x.shape


@pytest.mark.parametrize(
    "name, options, expected",
    [
        ("max_pool2d", {"kernel_size": 2}, (3, 12, 12)),
        ("max_pool2d", {"kernel_size": 3}, (3, 8, 8)),
        ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}, (3, 12, 12)),
        ("max_pool2d", {"kernel_size": [2, 4], "stride": [2, 1], "padding": [1, 2]}, (3, 13, 25)),
        ("avg_pool2d", {"kernel_size": 5, "stride": 1}, (3, 20, 20)),
        ("avg_pool2d", {"kernel_size": 24}, (3, 1, 1)),
        ("global_avg_pool", {}, (3,)),
    ],
)
def test_out_shape(name, options, expected):
    assert pool_layer(name, (3, 24, 24), **options).setup((3, 24, 24), np.float64, None, "he", 0.01) == expected


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d", "global_avg_pool"])
@pytest.mark.parametrize("in_shape", [(64,), (8, 8), (1, 2, 8, 8)])
def test_needs_images(name, in_shape):
    options = {} if name == "global_avg_pool" else {"kernel_size": 2}
    with pytest.raises(ShapeError) as info:
        pool_layer(name, in_shape, **options)
    assert (
        name in str(info.value) and "(channels, height, width)" in str(info.value) and str(in_shape) in str(info.value)
    )


def test_window_larger_than_the_image():
    with pytest.raises(ShapeError) as info:
        pool_layer("max_pool2d", (2, 3, 5), kernel_size=4)
    assert "max_pool2d" in str(info.value) and "4x4" in str(info.value) and "(2, 3, 5)" in str(info.value)
    assert pool_layer("max_pool2d", (2, 3, 5), kernel_size=4, padding=2).out_hw == (1, 2)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"kernel_size": 2, "padding": 2}, ["padding", "half"]),
        ({"kernel_size": [4, 2], "padding": [1, 2]}, ["padding", "half"]),
        ({"kernel_size": 0}, ["kernel_size"]),
        ({"kernel_size": [2, 2, 2]}, ["kernel_size"]),
        ({"kernel_size": 2, "stride": 0}, ["stride"]),
        ({"kernel_size": 2, "padding": -1}, ["padding"]),
    ],
)
@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_option_errors(name, options, words):
    with pytest.raises(ValueError) as info:
        LAYERS[name](**options)
    for word in [name, *words]:
        assert word in str(info.value)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_config_option_types(name):
    models = cfg.LAYER_MODELS[name]
    for good in [
        {"kernel_size": 2},
        {"kernel_size": [2, 3], "stride": [1, 2], "padding": [1, 1]},
        {"kernel_size": 3, "stride": None},
    ]:
        spec = models.model_validate({"type": name, **good})
        LAYERS[name](**cfg.options(spec, "type"))
    for bad in [
        {},
        {"kernel_size": "2"},
        {"kernel_size": 2.0},
        {"kernel_size": 0},
        {"kernel_size": 2, "padding": -1},
        {"kernel_size": 2, "ceil_mode": True},
    ]:
        with pytest.raises(ValueError):
            models.model_validate({"type": name, **bad})
    assert cfg.LAYER_MODELS["global_avg_pool"].model_validate({"type": "global_avg_pool"})


def test_global_avg_pool_in_a_network():
    net = network(
        [("conv2d", {"filters": 4, "kernel_size": 3}), ("global_avg_pool", {}), ("linear", {"units": 2})], (2, 7, 6)
    )
    assert net.shapes == [(4, 5, 4), (4,), (2,)]
    x = np.random.default_rng(8).standard_normal((3, 2, 7, 6))
    assert_allclose(
        net.layers[1].forward(net.layers[0].forward(x, False), False),
        net.layers[0].forward(x, False).mean(axis=(2, 3)),
        rtol=1e-14,
    )
