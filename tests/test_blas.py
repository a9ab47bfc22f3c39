"""engine.blas: fused y <- a x + b y, through numpy's BLAS or numpy calls, and the SGD updates built on it."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain.engine import blas
from nntrain.engine.blas import axpby
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import SGD


@pytest.fixture(params=["blas", "numpy"])
def path(request, monkeypatch):
    """Each test runs with numpy's BLAS kernel, and again with the numpy fallback forced."""
    if request.param == "numpy":
        monkeypatch.setattr(blas, "kernel", lambda dtype: None)
    return request.param


def test_numpy_ships_the_kernel_when_it_ships_openblas():
    name = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    if name == "scipy-openblas":  # numpy's own wheels: the library is inside the installation
        assert blas.kernel(np.float32) is not None and blas.kernel(np.float64) is not None
    assert blas.kernel(np.int64) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("a, b", [(1.0, 0.9), (-0.05, 1.0), (2.5, -0.5), (0.0, 0.0)])
def test_axpby_is_the_formula(path, dtype, a, b):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1001).astype(dtype)
    y = rng.standard_normal(1001).astype(dtype)
    expected = a * x.astype(np.float64) + b * y.astype(np.float64)
    x_before = x.copy()
    axpby(a, x, b, y)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    assert_allclose(y, expected, rtol=tol, atol=tol)
    assert_array_equal(x, x_before)  # x is only read


def test_axpby_writes_each_array_it_is_given_with_more_arrays_than_addresses_kept(path):
    """Addresses are looked up once per array; new arrays (temporaries, freed and reallocated) still get theirs."""
    rng = np.random.default_rng(2)
    for _ in range(3):
        ys = [rng.standard_normal(50).astype(np.float32) for _ in range(blas.ADDRESSES_KEPT + 5)]
        expected = [2 * y + 1 for y in ys]
        for y in ys:
            axpby(1.0, np.ones(50, np.float32), 2.0, y)  # a new x every call
        for y, e in zip(ys, expected):
            assert_allclose(y, e, rtol=1e-6)


def test_axpby_writes_through_to_the_views_of_y(path):
    """Bound to 2-D arrays, it updates them in place (the parameters' views stay the live arrays)."""
    x = np.ones((3, 4), np.float32)
    y = np.zeros((3, 4), np.float32)
    view = y[1]
    axpby(2.0, x, 1.0, y)
    assert_array_equal(view, 2.0)


def test_axpby_refuses_mismatched_arrays():
    with pytest.raises(ValueError):
        axpby(1.0, np.zeros(3, np.float32), 1.0, np.zeros(4, np.float32))
    with pytest.raises(ValueError):
        axpby(1.0, np.zeros(3, np.float32), 1.0, np.zeros(3, np.float64))
    with pytest.raises(ValueError):
        axpby(1.0, np.zeros(6, np.float32)[::2], 1.0, np.zeros(3, np.float32))


def network(seed: int) -> Network:
    layers = [LAYERS["linear"](units=16), LAYERS["relu"](), LAYERS["linear"](units=3)]
    return Network(layers, LOSSES["cross_entropy"](), 5, "float32", np.random.default_rng(seed))


@pytest.mark.parametrize("options", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True}])
def test_packed_sgd_matches_the_per_parameter_update(path, options):
    """The fused update over the packed arrays is torch's formula, as plain numpy computes it per parameter."""
    packed, plain = network(3), network(3)
    fast, reference = SGD(lr=0.05, **options), SGD(lr=0.05, **options)
    rng = np.random.default_rng(4)
    for _ in range(5):
        x = rng.standard_normal((8, 5)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        for net in (packed, plain):
            net.loss_and_grad(x, y)
        fast.step(packed.params)
        reference_step(reference, plain.params)
        for p, q in zip(packed.params, plain.params):
            assert p.value.dtype == np.float32
            assert_allclose(p.value, q.value, rtol=1e-6, atol=1e-7, err_msg=p.key)
    assert fast._flat_state is not None  # the packed route was the one taken
    for key, value in reference.state_dict().items():
        assert_allclose(fast.state_dict()[key], value, rtol=1e-6, atol=1e-7, err_msg=key)


def reference_step(optimizer: SGD, params) -> None:
    """torch.optim.SGD's formulas in plain numpy, one parameter at a time (state kept as SGD keeps it)."""
    optimizer.steps += 1
    lr, momentum = optimizer.lr, optimizer.momentum
    for p in params:
        d = p.grad
        if momentum:
            v = optimizer.state.setdefault(f"{p.key}.momentum_buffer", np.zeros_like(p.value))
            v *= momentum
            v += p.grad
            d = p.grad + momentum * v if optimizer.nesterov else v
        p.value -= lr * d
