"""rnn, lstm and gru against torch.nn.RNN / LSTM / GRU, and small LSTM classifiers trained against torch.

Fixtures made by tests/fixtures/make_torch_recurrent_fixtures.py (torch is not needed here):
every case (each cell, uni- and bidirectional, output sequence and last, whole and variable
lengths, two stacked layers) must give torch's outputs, h_n, input gradient and every
parameter gradient within 1e-12 in float64; five full-batch epochs of SGD with momentum and
of Adam must give torch's parameters within 1e-10 relative. Then gradient checks, the rules
for padded steps, float32 end to end, shapes, initialization, the options as the config sees
them, reused arrays within a training step, inputs left alone.
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
from nntrain.engine.layers import LAYERS, ShapeError
from nntrain.engine.layers.recurrent import GRU, LSTM, RNN
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import OPTIMIZERS

FIXTURE = Path(__file__).parent / "fixtures" / "torch_recurrent.npz"
DATA = np.load(FIXTURE, allow_pickle=False)
CASES = list(DATA["cases"])
TRAININGS = list(DATA["trainings"])
CELLS = {"rnn_tanh": ("rnn", {}), "rnn_relu": ("rnn", {"activation": "relu"}), "lstm": ("lstm", {}), "gru": ("gru", {})}
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
F64 = np.dtype(np.float64)


def network(spec, in_shape, loss="mse", dtype=np.float64, seed=0, init="he") -> Network:
    """A Network from [("lstm", {"units": 3}), ("linear", {"units": 2}), ...]."""
    layers = [LAYERS[name](**options) for name, options in spec]
    return Network(layers, LOSSES[loss](), in_shape, dtype, np.random.default_rng(seed), init=init)


def lengths_of(case: str) -> np.ndarray | None:
    key = f"{case}.lengths"
    return DATA[key] if key in DATA.files else None


def fixture_network(case: str, output: str | None = None) -> Network:
    """The case's model with torch's parameters; `output` replaces the last layer's output option."""
    spec = json.loads(str(DATA[f"{case}.model"]))
    if output is not None:
        spec[-1][1]["output"] = output
    net = network(spec, DATA[f"{case}.x"].shape[1:])
    prefix = f"{case}.param."
    net.load_state_dict({k[len(prefix) :]: DATA[k] for k in DATA.files if k.startswith(prefix)})
    return net


def last_of(h_n: np.ndarray, dirs: int) -> np.ndarray:
    """torch's h_n (layers dirs, N, H) as the last layer's output "last": (N, dirs H), [forward, reverse]."""
    return h_n[-dirs:].transpose(1, 0, 2).reshape(h_n.shape[1], -1)


def setup(layer, in_shape=(5, 3), dtype=F64, init="he", init_scale=0.01, seed=0):
    return layer.setup(in_shape, dtype, np.random.default_rng(seed), init, init_scale)


# ---------------------------------------------------------------- declarations, shapes


def test_registered_with_declarations():
    assert (LAYERS["rnn"], LAYERS["lstm"], LAYERS["gru"]) == (RNN, LSTM, GRU)
    for name in ("rnn", "lstm", "gru"):
        uni, bi = LAYERS[name](units=4), LAYERS[name](units=4, bidirectional=True)
        assert uni.uses_lengths and uni.sample_ndim == 2 and uni.width_option == "units"
        assert uni.decayed == ("weight_ih", "weight_hh")
        assert bi.decayed == ("weight_ih", "weight_hh", "weight_ih_reverse", "weight_hh_reverse")
        assert setup(bi) == (5, 8)
        g = GATES[name] * 4
        shapes = {"weight_ih": (g, 3), "weight_hh": (g, 4), "bias_ih": (g,), "bias_hh": (g,)}
        expected = {**shapes, **{f"{k}_reverse": v for k, v in shapes.items()}}
        assert {k: v.shape for k, v in bi.params.items()} == expected
        assert {k: v.shape for k, v in bi.grads.items()} == expected
        assert list(bi.params) == list(expected)  # torch's order


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "options, expected",
    [({}, (7, 4)), ({"bidirectional": True}, (7, 8)), ({"output": "last"}, (4,)), ({"output": "last", "bidirectional": True}, (8,))],
)
def test_out_shape_and_lengths(name, options, expected):
    layer = LAYERS[name](units=4, **options)
    assert setup(layer, (7, 2)) == expected
    lengths = np.array([7, 3])
    if len(expected) == 2:
        assert layer.out_lengths(lengths) is lengths
    else:
        assert layer.out_lengths(lengths) is None
    x = np.random.default_rng(0).standard_normal((2, 7, 2))
    assert layer.forward(x, training=False).shape == (2, *expected)


def test_network_shapes_and_lengths_through_a_stack():
    spec = [("gru", {"units": 4, "bidirectional": True}), ("lstm", {"units": 3, "output": "last"}), ("linear", {"units": 2})]
    net = network(spec, (6, 5), loss="cross_entropy")
    assert net.shapes == [(6, 8), (3,), (2,)]
    z = net.forward(np.zeros((3, 6, 5)), lengths=np.array([6, 1, 3]))
    assert z.shape == (3, 2)
    keys = [p.key for p in net.params if p.decay]
    assert keys == ["layers.0.weight_ih", "layers.0.weight_hh", "layers.0.weight_ih_reverse", "layers.0.weight_hh_reverse",
                    "layers.1.weight_ih", "layers.1.weight_hh", "layers.2.weight"]  # fmt: skip


@pytest.mark.parametrize("in_shape", [(8,), (1, 4, 4)])
def test_shape_errors(in_shape):
    with pytest.raises(ShapeError, match=re.escape("lstm takes samples of shape (steps, features)")):
        setup(LSTM(units=3), in_shape)


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case):
    net = fixture_network(case)
    x, grad, lengths = DATA[f"{case}.x"], DATA[f"{case}.grad"], lengths_of(case)
    x_before, grad_before = x.copy(), grad.copy()
    y = net.forward(x, training=True, lengths=lengths)
    assert y.shape == DATA[f"{case}.y"].shape and y.dtype == np.float64
    assert_allclose(y, DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    dx = net.backward(grad, input_grad=True)
    assert_allclose(dx, DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)
    assert len(net.params) == len([k for k in DATA.files if k.startswith(f"{case}.dparam.")])
    for p in net.params:
        assert_allclose(p.grad, DATA[f"{case}.dparam.{p.key}"], rtol=1e-12, atol=1e-12, err_msg=p.key)
    assert_array_equal(x, x_before)
    assert_array_equal(grad, grad_before)
    # Without the input gradient (nobody needs it), the parameters' gradients are the same.
    for p in net.params:
        p.grad[...] = np.nan
    net.forward(x, training=True, lengths=lengths)
    assert net.backward(grad, input_grad=False) is None
    for p in net.params:
        assert_allclose(p.grad, DATA[f"{case}.dparam.{p.key}"], rtol=1e-12, atol=1e-12, err_msg=p.key)


@pytest.mark.parametrize("case", CASES)
def test_last_is_torch_h_n(case):
    """Output last gives the last layer's h_n of torch, whatever the case's own output; lstm's c as torch's c_n."""
    net = fixture_network(case, output="last")
    top = net.layers[-1]
    y = net.forward(DATA[f"{case}.x"], lengths=lengths_of(case))
    h_n = DATA[f"{case}.h_n"]
    assert_allclose(y, last_of(h_n, top.directions), rtol=1e-12, atol=1e-12)
    if f"{case}.c_n" in DATA.files:
        steps = DATA[f"{case}.x"].shape[1]
        c_n = DATA[f"{case}.c_n"][-top.directions :]
        for d, saved in enumerate(top.saved):
            assert_allclose(saved["cs"][0 if d else steps].T, c_n[d], rtol=1e-12, atol=1e-12)  # states are (H, N)


def test_fixture_covers_the_cases():
    """Every cell, both directions, both outputs, with and without lengths, and stacks."""
    covered = set()
    for case in CASES:
        spec = json.loads(str(DATA[f"{case}.model"]))
        name, options = spec[-1]
        activation = options.get("activation", "tanh")
        cell = f"rnn_{activation}" if name == "rnn" else name
        covered.add((cell, options["bidirectional"], options["output"], lengths_of(case) is not None, len(spec)))
    for cell in CELLS:
        for bi in (False, True):
            for output in ("sequence", "last"):
                for variable in (False, True):
                    assert (cell, bi, output, variable, 1) in covered
        assert (cell, True, "sequence", True, 2) in covered or (cell, True, "last", True, 2) in covered
    lengths = [lengths_of(c) for c in CASES if lengths_of(c) is not None]
    assert min(map(min, lengths)) == 1 and all(max(v) == 5 for v in lengths)


# ---------------------------------------------------------------- training against torch


def training_network(name: str) -> Network:
    spec = [(layer, options) for layer, options in json.loads(str(DATA[f"{name}.model"]))]
    net = network(spec, DATA[f"{name}.x"].shape[1:], loss="cross_entropy")
    net.load_state_dict({k[len(f"{name}.init.") :]: DATA[k] for k in DATA.files if k.startswith(f"{name}.init.")})
    return net


@pytest.mark.parametrize("reuse", [False, True])
@pytest.mark.parametrize("name", TRAININGS)
def test_lstm_training_matches_torch(name, reuse):
    net = training_network(name)
    net.reuse_arrays(reuse)
    options = json.loads(str(DATA[f"{name}.optimizer"]))
    optimizer = OPTIMIZERS[options.pop("name")](**options)
    x, targets, lengths = DATA[f"{name}.x"], DATA[f"{name}.targets"], lengths_of(name)
    for epoch in range(int(DATA[f"{name}.epochs"])):
        loss, _, _ = net.loss_and_grad(x, targets, lengths=lengths)
        assert loss == pytest.approx(float(DATA[f"{name}.{epoch}.loss"]), rel=1e-12)
        optimizer.step(net.params)
        for p in net.params:
            assert_allclose(
                p.value, DATA[f"{name}.{epoch}.{p.key}"], rtol=1e-10, atol=1e-13, err_msg=f"{p.key} epoch {epoch}"
            )


def test_trainings_differ_from_their_start():
    """The trainings move the weights (so the comparison is not of barely changed numbers)."""
    for name in TRAININGS:
        start, end = DATA[f"{name}.init.layers.0.weight_hh"], DATA[f"{name}.4.layers.0.weight_hh"]
        assert np.abs(end - start).max() > 1e-2


# ---------------------------------------------------------------- gradient checks

GRAD_LENGTHS = np.array([4, 1, 3])


def gradcheck_net(cell: str, bidirectional: bool, output: str, stacked: bool = False) -> tuple[Network, np.ndarray, np.ndarray]:
    name, extra = CELLS[cell]
    options = {"units": 3, "bidirectional": bidirectional, **extra}
    spec = [(name, {**options, "output": "sequence"})] if stacked else []
    spec += [(name, {**options, "output": output}), ("linear", {"units": 2})]
    rng = np.random.default_rng(1)
    net = network(spec, (4, 3), loss="mse" if output == "sequence" else "cross_entropy")
    for p in net.params:  # weights large enough that the gates are far from linear
        p.value[...] = rng.standard_normal(p.value.shape) * 0.7
    x = rng.standard_normal((3, 4, 3))
    t = rng.standard_normal((3, 4, 2)) if output == "sequence" else rng.integers(0, 2, 3)
    return net, x, t


@pytest.mark.parametrize("variable", [False, True], ids=["whole", "lengths"])
@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradcheck(cell, bidirectional, output, variable):
    net, x, t = gradcheck_net(cell, bidirectional, output)
    results = check_gradients(net, x, t, lengths=GRAD_LENGTHS if variable else None)
    names = {r.name for r in results}
    assert {"layers.0.weight_ih", "layers.0.weight_hh", "layers.0.bias_ih", "layers.0.bias_hh", "input"} <= names
    if bidirectional:
        assert "layers.0.weight_hh_reverse" in names
    for r in results:
        assert r.passed and r.checked > r.kinks and r.max_rel_error <= 1e-6, r
        if cell != "rnn_relu":
            assert r.kinks == 0, r


@pytest.mark.parametrize("variable", [False, True], ids=["whole", "lengths"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_gradcheck_stacked(cell, variable):
    net, x, t = gradcheck_net(cell, True, "last", stacked=True)
    results = check_gradients(net, x, t, lengths=GRAD_LENGTHS if variable else None)
    assert "layers.1.weight_ih_reverse" in {r.name for r in results}
    for r in results:
        assert r.passed and r.kinks == 0 and r.checked > 0 and r.max_rel_error <= 1e-6, r


def test_gradcheck_catches_a_wrong_gradient():
    """The check is not vacuous: an lstm whose recurrent weight gradient is off by 1% fails it."""
    net, x, t = gradcheck_net("lstm", False, "last")
    lstm = net.layers[0]
    backward = lstm.backward

    def wrong(grad, need_input_grad=True):
        dx = backward(grad, need_input_grad)
        lstm.grads["weight_hh"] *= 1.01
        return dx

    lstm.backward = wrong
    results = {r.name: r for r in check_gradients(net, x, t)}
    assert not results["layers.0.weight_hh"].passed
    assert results["layers.0.weight_ih"].passed and results["input"].passed


def test_relu_kinks():
    """The relu rnn says which side of 0 each pre-activation was on (False at padded steps); the others have none."""
    layer = RNN(units=3, activation="relu", bidirectional=True)
    setup(layer, (4, 2))
    layer.lengths = np.array([4, 2])
    x = np.random.default_rng(0).standard_normal((2, 4, 2))
    layer.forward(x, training=True)
    kinks = layer.kinks()
    assert kinks.dtype == np.bool_ and kinks.shape == (2, 4, 3, 2)  # (directions, steps, units, samples)
    assert not kinks[:, 2:, :, 1].any() and kinks.any()
    for other in (RNN(units=3), LSTM(units=3), GRU(units=3)):
        setup(other, (4, 2))
        other.forward(x, training=True)
        assert other.kinks() is None


# ---------------------------------------------------------------- padded steps


def padded_batch(rng, n=4, steps=6, features=3):
    lengths = np.array([steps, 2, 1, 4][:n])
    x = rng.standard_normal((n, steps, features))
    return x, lengths


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_padded_steps_are_zero_and_get_no_gradient(cell, bidirectional):
    name, extra = CELLS[cell]
    layer = LAYERS[name](units=3, bidirectional=bidirectional, **extra)
    setup(layer, (6, 3))
    rng = np.random.default_rng(5)
    x, lengths = padded_batch(rng)
    layer.lengths = lengths
    y = layer.forward(x, training=True)
    dx = layer.backward(rng.standard_normal(y.shape))
    for n, length in enumerate(lengths):
        assert_array_equal(y[n, length:], 0)
        assert_array_equal(dx[n, length:], 0)
        if cell != "rnn_relu":  # (a relu unit may be 0 at a real step, and pass no gradient there)
            assert (y[n, :length] != 0).all() and (dx[n, :length] != 0).all()


@pytest.mark.parametrize("output", ["sequence", "last"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_padded_values_change_nothing(cell, output):
    """Whatever the padded steps hold (other numbers, huge ones, NaN), outputs and every gradient are the same."""
    name, extra = CELLS[cell]
    spec = [(name, {"units": 3, "bidirectional": True, "output": output, **extra}), ("linear", {"units": 2})]
    rng = np.random.default_rng(6)
    x, lengths = padded_batch(rng)
    t = rng.standard_normal((4, 6, 2)) if output == "sequence" else rng.standard_normal((4, 2))
    padding = np.arange(6)[None, :] >= lengths[:, None]
    results = []
    for fill in (None, "random", 1e300, np.nan, -np.inf):
        other = x.copy()
        if fill == "random":
            other[padding] = rng.standard_normal((padding.sum(), 3)) * 100
        elif fill is not None:
            other[padding] = fill
        net = network(spec, (6, 3), seed=3)
        with np.errstate(all="raise"):  # the padded numbers are not even computed with
            loss, z, dx = net.loss_and_grad(other, t, input_grad=True, lengths=lengths)
        results.append((loss, z.copy(), dx.copy(), [p.grad.copy() for p in net.params]))
    first = results[0]
    for got in results[1:]:
        assert got[0] == first[0]
        for a, b in zip([got[1], got[2], *got[3]], [first[1], first[2], *first[3]]):
            assert_array_equal(a, b)


def test_lengths_equal_to_truncated_sequences():
    """A sample of length L gives what its first L steps alone give (the reverse direction starts at L - 1)."""
    rng = np.random.default_rng(7)
    x, lengths = padded_batch(rng)
    for name in ("rnn", "lstm", "gru"):
        layer = LAYERS[name](units=3, bidirectional=True)
        setup(layer, (6, 3), seed=2)
        layer.lengths = lengths
        y = layer.forward(x, training=False).copy()
        last = LAYERS[name](units=3, bidirectional=True, output="last")
        setup(last, (6, 3), seed=2)
        last.lengths = lengths
        h_n = last.forward(x, training=False).copy()
        for n, length in enumerate(lengths):
            alone = LAYERS[name](units=3, bidirectional=True)
            setup(alone, (length, 3), seed=2)
            ya = alone.forward(x[n : n + 1, :length], training=False)
            assert_allclose(y[n, :length], ya[0], rtol=1e-14, atol=1e-15)
            assert_allclose(h_n[n], np.concatenate([ya[0, -1, :3], ya[0, 0, 3:]]), rtol=1e-14, atol=1e-15)


def test_standalone_lengths_of_the_wrong_shape():
    layer = GRU(units=2)
    setup(layer, (4, 3))
    layer.lengths = np.array([4, 2, 1])
    with pytest.raises(ValueError, match=re.escape("gru: lengths must be (2,)")):
        layer.forward(np.zeros((2, 4, 3)), training=False)


# ---------------------------------------------------------------- float32, initialization


@pytest.mark.parametrize("cell", list(CELLS))
def test_float32_in_float32_out(cell):
    name, extra = CELLS[cell]
    spec = [(name, {"units": 4, "bidirectional": True, **extra}), (name, {"units": 3, "output": "last", **extra}),
            ("linear", {"units": 2})]  # fmt: skip
    rng = np.random.default_rng(8)
    x, lengths = padded_batch(rng)
    t = rng.integers(0, 2, 4)
    results = {}
    for dtype in (np.float32, np.float64):
        net = network(spec, (6, 3), loss="cross_entropy", dtype=dtype, seed=4)
        loss, z, dx = net.loss_and_grad(x.astype(dtype), t, input_grad=True, lengths=lengths)
        assert np.isfinite(loss) and z.dtype == dtype and dx.dtype == dtype
        for layer in net.layers:
            assert all(v.dtype == dtype for v in (*layer.params.values(), *layer.grads.values()))
        for layer in net.layers[:2]:
            assert layer.xt.dtype == dtype
            assert all(a.dtype == dtype for saved in layer.saved for a in saved.values())
        results[dtype] = (z.copy(), dx.copy(), [p.grad.copy() for p in net.params])
    z32, dx32, g32 = results[np.float32]
    z64, dx64, g64 = results[np.float64]
    assert_allclose(z32, z64, rtol=1e-4, atol=1e-5)
    assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-5)
    for a, b in zip(g32, g64):
        assert_allclose(a, b, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_default_init_is_torch_uniform(name):
    """Without its own init, every weight and bias is U(-1/sqrt(H), 1/sqrt(H)), whatever the model-wide init."""
    units = 16
    bound = 1 / np.sqrt(units)
    for init, scale in (("he", 0.01), ("normal", 100.0)):
        layer = LAYERS[name](units=units, bidirectional=True)
        setup(layer, (5, 7), init=init, init_scale=scale)
        for key, value in layer.params.items():
            assert np.abs(value).max() <= bound, key
        every = np.concatenate([v.ravel() for v in layer.params.values()])
        assert np.abs(every).max() > 0.99 * bound
        assert np.std(every) == pytest.approx(bound / np.sqrt(3), rel=0.05)  # a uniform's std
        assert abs(every.mean()) < 0.05 * bound


def test_own_init_for_weights_zero_biases():
    layer = LSTM(units=8, init="orthogonal")
    setup(layer, (5, 6))
    w_hh = layer.params["weight_hh"]  # (4 H, H): orthonormal columns, as torch's orthogonal_
    assert_allclose(w_hh.T @ w_hh, np.eye(8), atol=1e-12)
    assert_array_equal(layer.params["bias_ih"], 0)
    assert_array_equal(layer.params["bias_hh"], 0)
    uniform = GRU(units=4, init="uniform", init_scale=0.3, bidirectional=True)
    setup(uniform, (5, 6), init="he", init_scale=0.01)
    for key in uniform.decayed:
        assert 0.2 < np.abs(uniform.params[key]).max() <= 0.3
    scaled = RNN(units=4, init="normal")  # the layer's init with the model's init_scale
    setup(scaled, (5, 300), init="he", init_scale=0.01)
    assert np.std(scaled.params["weight_ih"]) == pytest.approx(0.01, rel=0.1)
    he = RNN(units=64, init="he")  # fan_in = D for weight_ih, H for weight_hh
    setup(he, (5, 32))
    assert np.std(he.params["weight_ih"]) == pytest.approx(np.sqrt(2 / 32), rel=0.05)
    assert np.std(he.params["weight_hh"]) == pytest.approx(np.sqrt(2 / 64), rel=0.05)


def test_seeded_init_is_reproducible():
    a, b = LSTM(units=3, bidirectional=True), LSTM(units=3, bidirectional=True)
    setup(a, seed=11)
    setup(b, seed=11)
    for key in a.params:
        assert_array_equal(a.params[key], b.params[key])


# ---------------------------------------------------------------- options as the config sees them


@pytest.mark.parametrize(
    "name, options",
    [
        ("rnn", {"units": 4}),
        ("rnn", {"units": 4, "activation": "relu", "bidirectional": True, "output": "last"}),
        ("lstm", {"units": 4, "output": "sequence", "init": "orthogonal", "init_scale": 0.5}),
        ("gru", {"units": 1_000_000, "bidirectional": False}),
    ],
)
def test_config_accepts_options(name, options):
    spec = cfg.LAYER_MODELS[name].model_validate({"type": name, **options})
    layer = LAYERS[name](**cfg.options(spec, "type"))  # what the config hands over builds the layer
    assert layer.units == options["units"]


@pytest.mark.parametrize(
    "name, options",
    [
        ("lstm", {}),  # no units
        ("lstm", {"units": 0}),
        ("gru", {"units": -3}),
        ("rnn", {"units": 1_000_001}),
        ("rnn", {"units": 2.5}),
        ("rnn", {"units": "4"}),
        ("lstm", {"units": 4, "output": "first"}),
        ("gru", {"units": 4, "output": "all"}),
        ("rnn", {"units": 4, "activation": "sigmoid"}),
        ("lstm", {"units": 4, "activation": "tanh"}),  # only rnn has an activation
        ("gru", {"units": 4, "bidirectional": "yes"}),
        ("lstm", {"units": 4, "init": "zeros"}),
        ("lstm", {"units": 4, "init_scale": 0}),
        ("lstm", {"units": 4, "num_layers": 2}),
    ],
)
def test_config_rejects_options(name, options):
    with pytest.raises(ValueError):
        cfg.LAYER_MODELS[name].model_validate({"type": name, **options})


def test_config_errors_name_the_key():
    from nntrain.errors import NntrainError

    for layer, where in (({"lstm": {"units": 0}}, "model.layers.0.units"), ({"gru": {"units": 3, "output": "first"}}, "model.layers.0.output")):
        config = {"data": {"dataset": "digits"}, "model": {"layers": [layer, {"linear": 10}]}}
        with pytest.raises(NntrainError, match=re.escape(where)):
            cfg.validate(config)
    config = {"data": {"dataset": "digits"}, "model": {"layers": [{"lstm": 8}, {"linear": 10}]}}
    assert cfg.validate(config).model.layers[0].units == 8  # the shorthand sets units


@pytest.mark.parametrize(
    "cls, options, words",
    [
        (LSTM, {"units": 0}, ["lstm", "units"]),
        (GRU, {"units": True}, ["gru", "units"]),
        (LSTM, {"units": 3, "output": "first"}, ["lstm", "output", "sequence, last"]),
        (RNN, {"units": 3, "activation": "sigmoid"}, ["rnn", "activation"]),
    ],
)
def test_constructor_errors(cls, options, words):
    with pytest.raises(ValueError) as info:
        cls(**options)
    for word in words:
        assert word in str(info.value)


# ---------------------------------------------------------------- training steps reuse arrays


STACK = [
    ("gru", {"units": 4, "bidirectional": True}),
    ("rnn", {"units": 3, "activation": "relu"}),
    ("lstm", {"units": 3, "output": "last", "bidirectional": True}),
    ("linear", {"units": 3}),
]


def _step(net, x, t, lengths):
    loss, z, dx = net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
    return loss, z.copy(), dx.copy(), [p.grad.copy() for p in net.params]


def test_reused_arrays_leave_no_stale_state():
    """Steps on different batches (sizes, lengths) with reuse on give what fresh networks give for each."""
    rng = np.random.default_rng(3)
    batches = [(rng.standard_normal((5, 6, 2)), rng.integers(0, 3, 5), rng.integers(1, 7, 5)) for _ in range(3)]
    batches.insert(1, (batches[0][0], batches[0][1], None))  # the same batch, whole
    batches.insert(3, (rng.standard_normal((4, 6, 2)), rng.integers(0, 3, 4), None))  # another batch size between
    reused = network(STACK, (6, 2), loss="cross_entropy", seed=5)
    reused.reuse_arrays(True)
    for x, t, lengths in batches:
        expected = _step(network(STACK, (6, 2), loss="cross_entropy", seed=5), x, t, lengths)
        got = _step(reused, x, t, lengths)
        assert got[0] == expected[0]
        for a, b in zip([got[1], got[2], *got[3]], [expected[1], expected[2], *expected[3]]):
            assert_array_equal(a, b)


@pytest.mark.parametrize("variable", [False, True], ids=["whole", "lengths"])
def test_reused_arrays_may_hold_anything(variable):
    """Whatever the arrays kept from the last step hold (NaN everywhere), the next step's results are the same.

    Catches a layer that counts on an array it wrote before (the zero initial state, a zeroed
    carry) without writing it again.
    """
    rng = np.random.default_rng(9)
    x, t = rng.standard_normal((5, 6, 2)), rng.integers(0, 3, 5)
    lengths = np.array([6, 3, 1, 6, 2]) if variable else None
    net = network(STACK, (6, 2), loss="cross_entropy", seed=5)
    expected = _step(net, x, t, lengths)
    net.reuse_arrays(True)
    first = _step(net, x, t, lengths)
    kept = net.arena.kept
    assert kept  # the step did keep arrays
    for array in kept:
        array.fill(np.nan if array.dtype.kind == "f" else 1)
    got = _step(net, x, t, lengths)
    for result in (first, got):
        assert result[0] == expected[0]
        for a, b in zip([result[1], result[2], *result[3]], [expected[1], expected[2], *expected[3]]):
            assert_array_equal(a, b)


def test_training_step_allocates_its_arrays_once():
    """With reuse on, a second step of the same shapes hands out the same arrays as the first."""
    rng = np.random.default_rng(10)
    x, t = rng.standard_normal((5, 6, 2)), rng.integers(0, 3, 5)
    net = network(STACK, (6, 2), loss="cross_entropy")
    net.reuse_arrays(True)
    lengths = np.array([6, 3, 1, 6, 2])
    net.loss_and_grad(x, t, lengths=lengths)
    before = {id(a) for a in net.arena.kept}
    net.loss_and_grad(x, t, lengths=lengths)
    assert {id(a) for a in net.arena.kept} == before


def test_network_leaves_inputs_alone():
    net = network(STACK, (6, 2), loss="cross_entropy")
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((3, 6, 2)), rng.integers(0, 3, 3)
    lengths = np.array([6, 2, 4])
    before, lengths_before = x.copy(), lengths.copy()
    net.reuse_arrays(True)
    net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
    net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
    assert_array_equal(x, before)
    assert_array_equal(lengths, lengths_before)


def test_non_contiguous_input():
    """A strided view as input (every other sample of a batch) gives the same as its copy."""
    case = "lstm_bi_sequence_lengths"
    x = np.repeat(DATA[f"{case}.x"], 2, axis=0)[::2]
    assert not x.flags.c_contiguous
    net = fixture_network(case)
    assert_allclose(net.forward(x, training=True, lengths=lengths_of(case)), DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    grad = np.repeat(DATA[f"{case}.grad"], 2, axis=0)[::2]
    assert_allclose(net.backward(grad, input_grad=True), DATA[f"{case}.dx"], rtol=1e-12, atol=1e-12)
