"""embedding against torch.nn.Embedding, token id checks, the padding row, gradient checks through sequence networks.

Fixtures made by tests/fixtures/make_torch_sequence_fixtures.py (torch is not needed here):
forward and the table's gradient must equal torch's within 1e-12 in float64, with and
without padding_idx. Then: ids that are not whole numbers in the vocabulary are refused with
a message that names them; repeated ids add up; the padding row stays zero through training;
gradient checks of embedding -> conv1d -> time_pool -> linear with and without lengths;
float32; the options as the constructor and the config see them; reused arrays; inputs.
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
from nntrain.engine.layers.embedding import Embedding
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import OPTIMIZERS

FIXTURE = Path(__file__).parent / "fixtures" / "torch_sequence.npz"
DATA = np.load(FIXTURE, allow_pickle=False)
CASES = [c for c in DATA["cases"] if str(DATA[f"{c}.layer"]) == "embedding"]
F64 = np.dtype(np.float64)


def setup(layer, in_shape=(6,), dtype=F64, seed=0, init_scale=0.01):
    return layer.setup(tuple(in_shape), np.dtype(dtype), np.random.default_rng(seed), "he", init_scale)


def network(spec, in_shape, loss="cross_entropy", dtype=np.float64, seed=0) -> Network:
    layers = [LAYERS[name](**options) for name, options in spec]
    return Network(layers, LOSSES[loss](), in_shape, dtype, np.random.default_rng(seed), init="xavier")


def test_registered_with_declarations():
    assert LAYERS["embedding"] is Embedding
    assert Embedding.integer_input and Embedding.sample_ndim == 1 and Embedding.width_option == "dim"
    assert Embedding.decayed == () and not Embedding.uses_lengths
    layer = Embedding(vocabulary=11, dim=4)
    assert setup(layer, (6,)) == (6, 4)
    assert set(layer.params) == set(layer.grads) == {"weight"} and layer.params["weight"].shape == (11, 4)


# ---------------------------------------------------------------- against torch


@pytest.mark.parametrize("case", CASES)
def test_matches_torch(case):
    options = json.loads(str(DATA[f"{case}.options"]))
    layer = Embedding(**options)
    x, grad = DATA[f"{case}.x"], DATA[f"{case}.grad"]
    assert setup(layer, x.shape[1:]) == DATA[f"{case}.y"].shape[1:]
    layer.params["weight"][...] = DATA[f"{case}.weight"]
    before = x.copy(), grad.copy()
    y = layer.forward(x, training=True)
    assert y.dtype == np.float64
    assert_allclose(y, DATA[f"{case}.y"], rtol=1e-12, atol=1e-12)
    assert layer.backward(grad) is None  # token ids have no gradient
    assert_allclose(layer.grads["weight"], DATA[f"{case}.dweight"], rtol=1e-12, atol=1e-12)
    assert_array_equal(x, before[0])
    assert_array_equal(grad, before[1])
    if options.get("padding_index") is not None:
        assert (x == options["padding_index"]).any()
        assert_array_equal(layer.grads["weight"][options["padding_index"]], 0)


def test_fixture_ids_repeat():
    for case in CASES:
        ids = DATA[f"{case}.x"]
        assert len(np.unique(ids)) < ids.size


def test_repeated_ids_accumulate():
    """dW[v] is the sum of the upstream gradient over every position holding v (a plain loop here)."""
    rng = np.random.default_rng(0)
    layer = Embedding(vocabulary=5, dim=3)
    setup(layer, (8,))
    x = rng.integers(0, 3, (4, 8)).astype(np.float64)  # ids 3 and 4 never appear
    layer.forward(x, training=True)
    grad = rng.standard_normal((4, 8, 3))
    layer.backward(grad)
    expected = np.zeros((5, 3))
    for n in range(4):
        for t in range(8):
            expected[int(x[n, t])] += grad[n, t]
    assert_allclose(layer.grads["weight"], expected, rtol=1e-13, atol=1e-14)
    assert_array_equal(layer.grads["weight"][3:], 0)
    same = np.zeros((1, 8))  # one id everywhere: its row gets the whole sum
    layer.forward(same, training=True)
    layer.backward(grad[:1])
    assert_allclose(layer.grads["weight"][0], grad[0].sum(axis=0), rtol=1e-13)
    assert_array_equal(layer.grads["weight"][1:], 0)  # assigned, not accumulated over calls


def test_init_is_torchs_normal():
    """N(0, 1) as torch.nn.Embedding, whatever the model-wide init_scale; the layer's own init_scale multiplies it."""
    layer = Embedding(vocabulary=2000, dim=50)
    setup(layer, (4,), init_scale=0.01)
    weight = layer.params["weight"]
    assert abs(weight.mean()) < 0.01 and weight.std() == pytest.approx(1.0, rel=0.02)
    scaled = Embedding(vocabulary=2000, dim=50, init_scale=0.1)
    setup(scaled, (4,), init_scale=0.01)
    assert_allclose(scaled.params["weight"], 0.1 * weight, rtol=1e-15)  # the same draw, scaled
    padded = Embedding(vocabulary=2000, dim=50, padding_index=7)
    setup(padded, (4,))
    assert_array_equal(padded.params["weight"][7], 0)
    assert_array_equal(np.delete(padded.params["weight"], 7, axis=0), np.delete(weight, 7, axis=0))


# ---------------------------------------------------------------- token ids


@pytest.mark.parametrize(
    "bad, words",
    [
        (-1.0, ["-1.0", "0..9", "out of range"]),
        (10.0, ["10.0", "0..9", "vocabulary 10"]),
        (1e30, ["1e+30", "out of range"]),
        (2.5, ["2.5", "not a whole number"]),
        (np.nan, ["nan"]),
        (np.inf, ["inf"]),
    ],
)
def test_bad_ids_are_refused(bad, words):
    layer = Embedding(vocabulary=10, dim=2)
    setup(layer, (4,))
    x = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, bad, 0.0]])
    with pytest.raises(ValueError) as info:
        layer.forward(x, training=True)
    for word in ["embedding", "whole numbers", "[1, 2]", *words]:
        assert word in str(info.value)


def test_integer_ids_and_float32_ids():
    layer = Embedding(vocabulary=10, dim=3)
    setup(layer, (4,))
    ids = np.array([[0, 9, 3, 3], [1, 2, 2, 8]])
    expected = layer.params["weight"][ids]
    assert_array_equal(layer.forward(ids, training=True), expected)
    assert_array_equal(layer.forward(ids.astype(np.float32), training=True), expected)
    with pytest.raises(ValueError, match="0..9"):
        layer.forward(np.array([[0, 10, 1, 1]]), training=True)
    with pytest.raises(ValueError, match="-3"):
        layer.forward(np.array([[0, -3, 1, 1]]), training=True)


@pytest.mark.parametrize(
    "options, words",
    [
        ({"vocabulary": 5, "dim": 2, "padding_index": 5}, ["padding_index", "0..4", "5"]),
        ({"vocabulary": 5, "dim": 2, "padding_index": -1}, ["padding_index", "0..4", "-1"]),
        ({"vocabulary": 5, "dim": 2, "padding_index": 1.0}, ["padding_index"]),
        ({"vocabulary": 5, "dim": 2, "padding_index": True}, ["padding_index"]),
        ({"vocabulary": 0, "dim": 2}, ["vocabulary", "between 1"]),
        ({"vocabulary": 100_000_001, "dim": 2}, ["vocabulary", "100000000"]),
        ({"vocabulary": 5, "dim": 0}, ["dim"]),
        ({"vocabulary": 5.0, "dim": 2}, ["vocabulary"]),
    ],
)
def test_option_errors(options, words):
    with pytest.raises(ValueError) as info:
        Embedding(**options)
    for word in ["embedding", *words]:
        assert word in str(info.value)


@pytest.mark.parametrize(
    "options",
    [{"vocabulary": 100, "dim": 8}, {"vocabulary": 100, "dim": 8, "padding_index": 0, "init_scale": 0.5}],
)
def test_config_accepts_options(options):
    spec = cfg.LAYER_MODELS["embedding"].model_validate({"type": "embedding", **options})
    Embedding(**cfg.options(spec, "type"))


@pytest.mark.parametrize(
    "options",
    [
        {"vocabulary": 100},  # dim is required (vocabulary may come from the data)
        {"vocabulary": 0, "dim": 8},
        {"vocabulary": 100_000_001, "dim": 8},
        {"vocabulary": 100, "dim": 0},
        {"vocabulary": 100, "dim": 8, "padding_index": "none"},
        {"vocabulary": 100, "dim": 8, "init_scale": 0},
        {"vocabulary": 100, "dim": 8, "init": "he"},
    ],
)
def test_config_rejects_options(options):
    with pytest.raises(ValueError):
        cfg.LAYER_MODELS["embedding"].model_validate({"type": "embedding", **options})


def test_a_vocabulary_left_out_must_be_filled_in_before_setup():
    layer = Embedding(dim=2, padding_index=7)  # checked against the vocabulary once it is known
    with pytest.raises(ShapeError, match="needs its vocabulary size"):
        setup(layer, (4,))
    layer.vocabulary = 5
    with pytest.raises(ValueError, match="padding_index must be a token id in 0..4"):
        setup(layer, (4,))
    assert Embedding.vocabulary_option == "vocabulary"


def test_shapes():
    with pytest.raises(ShapeError, match=r"embedding.*\(steps,\).*\(4, 3\)"):
        setup(Embedding(vocabulary=5, dim=2), (4, 3))
    layer = Embedding(vocabulary=5, dim=2)
    setup(layer, (4,))
    with pytest.raises(ValueError, match=r"\(N, T\)"):
        layer.forward(np.zeros((2, 4, 1)), training=True)


def test_must_be_the_first_layer():
    with pytest.raises(ShapeError, match="first layer") as info:
        network([("linear", {"units": 4}), ("embedding", {"vocabulary": 5, "dim": 2})], (4,))
    assert info.value.layer == 1


# ---------------------------------------------------------------- through networks

SPEC = [
    ("embedding", {"vocabulary": 6, "dim": 3, "padding_index": 0}),
    ("conv1d", {"filters": 3, "kernel_size": 3, "padding": 1}),
    ("tanh", {}),
    ("time_pool", {"mode": "mean"}),
    ("linear", {"units": 3}),
]
STEPS = 7
LENGTHS = np.array([7, 3, 1, 5])


def token_batch(seed=0, lengths=LENGTHS):
    """Ids in 1..5, padded with the padding id 0 after each sequence's length (and a 0 inside one)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 6, (len(lengths), STEPS)).astype(np.float64)
    x[np.arange(STEPS) >= lengths[:, None]] = 0
    x[0, 2] = 0
    return x, rng.integers(0, 3, len(lengths))


@pytest.mark.parametrize("padding_index", [None, 0])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_gradcheck(with_lengths, padding_index):
    spec = [("embedding", {**SPEC[0][1], "padding_index": padding_index}), *SPEC[1:]]
    net = network(spec, (STEPS,))
    x, t = token_batch()
    results = check_gradients(net, x, t, lengths=LENGTHS if with_lengths else None, max_entries=200)
    names = {r.name for r in results}
    assert "input" not in names and "layers.0.weight" in names  # ids have no gradient to check
    for r in results:
        assert r.passed and r.kinks == 0 and r.checked > 0 and r.max_rel_error <= 1e-6, r


def test_gradcheck_mse_with_max_time_pool():
    spec = [("embedding", {"vocabulary": 4, "dim": 2}), ("time_pool", {"mode": "max"}), ("linear", {"units": 2})]
    net = network(spec, (5,), loss="mse")
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, (3, 5)).astype(np.float64)
    results = check_gradients(net, x, rng.standard_normal((3, 2)), lengths=np.array([5, 2, 4]))
    for r in results:
        assert r.passed and r.checked > r.kinks, r


@pytest.mark.parametrize("optimizer", [{"name": "sgd", "lr": 0.5, "momentum": 0.9}, {"name": "adam", "lr": 0.1}])
def test_padding_row_stays_zero_through_training(optimizer):
    net = network(SPEC, (STEPS,))
    options = dict(optimizer)
    opt = OPTIMIZERS[options.pop("name")](**options)
    weight = net.layers[0].params["weight"]
    start = weight.copy()
    for step in range(5):
        x, t = token_batch(seed=step)
        net.loss_and_grad(x, t, lengths=LENGTHS)
        opt.step(net.params)
    assert_array_equal(weight[0], 0)
    assert not np.allclose(weight[1:], start[1:])  # the other rows did train


def test_padding_row_reads_as_zero():
    """Whatever the padding row holds (a checkpoint, a perturbation), its id looks up zeros."""
    layer = Embedding(vocabulary=4, dim=2, padding_index=3)
    setup(layer, (3,))
    layer.params["weight"][3] = [5.0, -5.0]
    y = layer.forward(np.array([[3.0, 1.0, 3.0]]), training=True)
    assert_array_equal(y[0, [0, 2]], 0)
    assert_array_equal(y[0, 1], layer.params["weight"][1])


def test_float32_in_float32_out():
    net = network(SPEC, (STEPS,), dtype=np.float32)
    x, t = token_batch()
    loss, z, dx = net.loss_and_grad(x.astype(np.float32), t, input_grad=True, lengths=LENGTHS)
    assert np.isfinite(loss) and z.dtype == np.float32 and dx is None
    layer = net.layers[0]
    assert layer.params["weight"].dtype == layer.grads["weight"].dtype == np.float32
    assert layer.forward(x.astype(np.float32), training=False).dtype == np.float32


def _step(net, x, t, lengths=None):
    loss, z, dx = net.loss_and_grad(x, t, input_grad=True, lengths=lengths)
    assert dx is None
    return loss, z.copy(), [p.grad.copy() for p in net.params]


def _assert_same(got, expected):
    assert got[0] == expected[0]
    for a, b in zip([got[1], *got[2]], [expected[1], *expected[2]]):
        assert_array_equal(a, b)


def test_reused_arrays_give_identical_results():
    """With reuse on: each batch (twice over) gives what a fresh network gives, also after the kept arrays are NaN."""
    other = np.array([7, 2, 6])
    batches = [(*token_batch(0), LENGTHS), (*token_batch(1), LENGTHS), (*token_batch(9, other), other), (*token_batch(2), LENGTHS)]
    reused = network(SPEC, (STEPS,), seed=5)
    reused.reuse_arrays(True)
    for x, t, lengths in batches:
        expected = _step(network(SPEC, (STEPS,), seed=5), x, t, lengths)
        for _ in range(2):  # twice on one batch
            _assert_same(_step(reused, x, t, lengths), expected)
    kept = list(reused.arena._arrays.values())
    assert kept
    for array in kept:
        array.fill(np.nan if array.dtype.kind == "f" else 1)
    x, t, lengths = batches[-1]
    _assert_same(_step(reused, x, t, lengths), _step(network(SPEC, (STEPS,), seed=5), x, t, lengths))


def test_network_leaves_inputs_alone():
    net = network(SPEC, (STEPS,))
    x, t = token_batch()
    before = x.copy()
    net.reuse_arrays(True)
    net.loss_and_grad(x, t, lengths=LENGTHS)
    net.loss_and_grad(x, t, lengths=LENGTHS)
    assert_array_equal(x, before)
