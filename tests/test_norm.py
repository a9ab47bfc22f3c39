"""Normalization layers (engine/layers/norm.py): batch_norm and layer_norm.

Forward and backward against torch.nn.BatchNorm1d / LayerNorm (fixtures made by
tests/fixtures/make_torch_norm_fixtures.py; torch is not needed here). Also the tests that mix
them with dropout / gaussian_noise (whose own tests are in test_noise.py): gradchecks with frozen
randomness, buffers in state dicts, weight decay on linear weights only, float32 end to end, and
the layers' config options.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import build, layer, small_config
from numpy.testing import assert_allclose, assert_array_equal

from nntrain import config as cfg
from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.optim import OPTIMIZERS
from nntrain.errors import NntrainError

NOISE_AND_NORM = {"dropout", "gaussian_noise", "batch_norm", "layer_norm"}
FIXTURE = Path(__file__).parent / "fixtures" / "torch_norm.npz"


def test_new_layers_are_registered():
    assert NOISE_AND_NORM <= set(LAYERS)


# ---------------------------------------------------------------- batch / layer norm against torch


def _torch_fixture():
    with np.load(FIXTURE, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


TORCH = _torch_fixture()
CASES = [str(c) for c in TORCH["cases"]]
TIGHT = {"rtol": 1e-10, "atol": 1e-13}


def _norm_layer(case):
    name, options = str(TORCH[f"{case}.layer"]), json.loads(str(TORCH[f"{case}.options"]))
    weight, shape = TORCH[f"{case}.weight"], tuple(TORCH[f"{case}.shape"].tolist())
    norm = LAYERS[name](**options)
    assert norm.setup(shape, np.dtype(np.float64), np.random.default_rng(0), "he", 0.01) == shape
    assert_array_equal(norm.params["weight"], 1)  # torch's initial values
    assert_array_equal(norm.params["bias"], 0)
    norm.params["weight"][...] = weight
    norm.params["bias"][...] = TORCH[f"{case}.bias"]
    return norm


def _compare(norm, ref, prefix, training):
    y = norm.forward(ref[f"{prefix}.x"], training=training)
    dx = norm.backward(ref[f"{prefix}.grad"], need_input_grad=True)
    assert_allclose(y, ref[f"{prefix}.y"], **TIGHT, err_msg=f"{prefix} y")
    assert_allclose(dx, ref[f"{prefix}.dx"], **TIGHT, err_msg=f"{prefix} dx")
    assert_allclose(norm.grads["weight"], ref[f"{prefix}.dweight"], **TIGHT, err_msg=f"{prefix} dweight")
    assert_allclose(norm.grads["bias"], ref[f"{prefix}.dbias"], **TIGHT, err_msg=f"{prefix} dbias")


def test_fixture_covers_both_layers_and_every_option():
    for name in ("batch_norm", "layer_norm"):
        cases = [c for c in CASES if str(TORCH[f"{c}.layer"]) == name]
        used = set().union(*(json.loads(str(TORCH[f"{c}.options"])) for c in cases))
        assert any(json.loads(str(TORCH[f"{c}.options"])) == {} for c in cases), name  # the defaults
        assert used == set(vars(LAYERS[name]())) & {"momentum", "eps"}, name


@pytest.mark.parametrize("case", CASES)
def test_norm_matches_torch_in_training_and_eval(case):
    """Every training step (output, input and parameter gradients, running statistics), then eval."""
    norm = _norm_layer(case)
    batch_norm = str(TORCH[f"{case}.layer"]) == "batch_norm"
    for t in range(int(TORCH[f"{case}.steps"])):
        _compare(norm, TORCH, f"{case}.{t}", training=True)
        if batch_norm:
            assert_allclose(norm.state["running_mean"], TORCH[f"{case}.{t}.running_mean"], **TIGHT)
            assert_allclose(norm.state["running_var"], TORCH[f"{case}.{t}.running_var"], **TIGHT)
    if batch_norm:  # the running statistics really moved away from 0 / 1
        assert np.abs(norm.state["running_mean"]).max() > 0.5
    before = {k: v.copy() for k, v in norm.state.items()}
    _compare(norm, TORCH, f"{case}.eval", training=False)
    for key, value in before.items():  # eval reads the running statistics, never updates them
        assert_array_equal(norm.state[key], value)


def test_batch_norm_eval_uses_running_statistics():
    """At eval a batch_norm output depends only on its own row, not on the rest of the batch."""
    norm = layer("batch_norm", width=3)
    rng = np.random.default_rng(9)
    for _ in range(5):
        norm.forward(rng.standard_normal((8, 3)) * 2 + 1, training=True)
    x = rng.standard_normal((4, 3))
    expected = (x - norm.state["running_mean"]) / np.sqrt(norm.state["running_var"] + 1e-5)
    assert_allclose(norm.forward(x, False), expected, rtol=1e-14)
    assert_allclose(norm.forward(x[:1], False), expected[:1], rtol=1e-14)


def test_norm_outputs_are_normalized():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((64, 5)) * rng.uniform(0.1, 10, 5) + rng.uniform(-10, 10, 5)
    y = layer("batch_norm", width=5, eps=1e-12).forward(x, True)
    assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    assert_allclose(y.std(axis=0), 1, rtol=1e-9)
    y = layer("layer_norm", width=5, eps=1e-12).forward(x, True)
    assert_allclose(y.mean(axis=1), 0, atol=1e-12)
    assert_allclose(y.std(axis=1), 1, rtol=1e-9)


@pytest.mark.parametrize("name", ["batch_norm", "layer_norm"])
@pytest.mark.parametrize("training", [True, False])
def test_norm_backward_without_input_grad(name, training):
    norm = layer(name, width=3)
    rng = np.random.default_rng(11)
    x, g = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    norm.forward(x, training)
    assert norm.backward(g, need_input_grad=True).shape == x.shape
    with_input = {k: v.copy() for k, v in norm.grads.items()}
    assert norm.backward(g, need_input_grad=False) is None
    for key, value in with_input.items():
        assert_array_equal(norm.grads[key], value)


def test_batch_norm_needs_two_samples_to_train():
    norm = layer("batch_norm", width=3)
    with pytest.raises(ValueError, match="at least 2 values per feature"):
        norm.forward(np.ones((1, 3)), training=True)
    # Eval of one sample is fine: (1 - running_mean 0) / sqrt(running_var 1 + eps).
    assert_allclose(norm.forward(np.ones((1, 3)), training=False), 1 / np.sqrt(1 + 1e-5), rtol=1e-15)
    assert_array_equal(norm.state["running_mean"], 0)  # the refused batch changed nothing


# ---------------------------------------------------------------- gradchecks, randomness frozen

GRADCHECK_SPECS = {
    "batch_norm": [("linear", {"units": 6}), ("batch_norm", {}), ("tanh", {}), ("linear", {"units": 2})],
    "layer_norm": [("linear", {"units": 6}), ("layer_norm", {}), ("tanh", {}), ("linear", {"units": 2})],
    "dropout": [("linear", {"units": 8}), ("tanh", {}), ("dropout", {"p": 0.3}), ("linear", {"units": 2})],
    "gaussian_noise": [("gaussian_noise", {"std": 0.5}), ("linear", {"units": 6}), ("tanh", {}), ("linear", {"units": 2})],
    "all": [
        ("linear", {"units": 8}),
        ("batch_norm", {"momentum": 0.5}),
        ("gaussian_noise", {"std": 0.2}),
        ("sigmoid", {}),
        ("dropout", {"p": 0.3}),
        ("linear", {"units": 6}),
        ("layer_norm", {"eps": 1e-3}),
        ("tanh", {}),
        ("linear", {"units": 3}),
    ],
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_SPECS))
def test_gradcheck_in_training_mode(case):
    spec = GRADCHECK_SPECS[case]
    net = build(spec, loss="cross_entropy" if case == "all" else "mse", seed=3)
    rng = np.random.default_rng(12)
    x = rng.standard_normal((7, 4))
    t = rng.integers(0, 3, 7) if case == "all" else rng.standard_normal((7, 2))
    net.rng = np.random.default_rng(13)
    state = net.rng.bit_generator.state
    buffers = {k: v.copy() for k, v in net.layer_state().items()}
    results = check_gradients(net, x, t)
    assert {r.name for r in results} == {p.key for p in net.params} | {"input"}
    for r in results:
        assert r.passed and r.max_rel_error < 1e-6, r
        assert r.checked - r.kinks > 0, r
    # The network is left as it was: same generator state, same running statistics.
    assert net.rng.bit_generator.state == state
    for key, value in net.layer_state().items():
        assert_array_equal(value, buffers[key], err_msg=key)
    for l in net.layers:  # the randomness was real: some units dropped
        if l.name == "dropout":
            assert (l.mask == 0).any()


@pytest.mark.parametrize("batch", [1, 5])
def test_gradcheck_of_shaped_samples(batch):
    """batch_norm per channel of (c, h, w) samples (one image still has h * w values per channel), dropout,
    gaussian noise and the activations on any shape, layer_norm and linear on the last axis, then flatten."""
    spec = [("batch_norm", {}), ("gaussian_noise", {"std": 0.2}), ("tanh", {}), ("dropout", {"p": 0.2}),
            ("linear", {"units": 4}), ("layer_norm", {}), ("sigmoid", {}), ("flatten", {}), ("linear", {"units": 3})]  # fmt: skip
    net = build(spec, loss="cross_entropy", in_features=(2, 3, 5), seed=4)
    assert net.shapes == [(2, 3, 5)] * 4 + [(2, 3, 4)] * 3 + [(24,), (3,)]
    rng = np.random.default_rng(14)
    x = rng.standard_normal((batch, 2, 3, 5)) * 3 + 1
    net.rng = np.random.default_rng(15)
    for r in check_gradients(net, x, rng.integers(0, 3, batch)):
        assert r.passed and r.max_rel_error < 1e-6, r
        assert r.checked - r.kinks > 0, r


# ---------------------------------------------------------------- buffers, state dict, decay

NORM_NET = [("linear", {"units": 5}), ("batch_norm", {}), ("relu", {}), ("linear", {"units": 4}), ("layer_norm", {}), ("linear", {"units": 2})]


def _train_forward(net, steps=4, seed=14):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        net.loss_and_grad(rng.standard_normal((8, 4)) * 3 + 1, rng.standard_normal((8, 2)))


def test_state_dict_has_layer_state_and_params_do_not():
    net = build(NORM_NET)
    state = net.state_dict()
    param_keys = [p.key for p in net.params]
    assert "layers.1.running_mean" in state and "layers.1.running_var" in state
    assert not any("running" in k for k in param_keys)
    assert set(state) == set(param_keys) | {"layers.1.running_mean", "layers.1.running_var"}
    assert "layers.1.weight" in param_keys and "layers.4.bias" in param_keys
    assert set(net.layer_state()) == {"layers.1.running_mean", "layers.1.running_var"}
    assert state["layers.1.running_mean"] is net.layers[1].state["running_mean"]
    assert_array_equal(state["layers.1.running_mean"], 0)
    assert_array_equal(state["layers.1.running_var"], 1)
    _train_forward(net)  # updated in place: the arrays the network handed out move too
    assert np.abs(state["layers.1.running_mean"]).max() > 0


def test_save_load_round_trip_restores_eval_outputs(tmp_path):
    a, b = build(NORM_NET, seed=0), build(NORM_NET, seed=1)
    _train_forward(a)
    x = np.random.default_rng(15).standard_normal((6, 4))
    assert not np.array_equal(a.forward(x), b.forward(x))
    np.savez(tmp_path / "ck.npz", **a.state_dict(), **{"meta.epoch": np.array(3)})
    with np.load(tmp_path / "ck.npz", allow_pickle=False) as data:
        b.load_state_dict({k: data[k] for k in data.files})
    assert_array_equal(b.forward(x), a.forward(x))
    for key, value in a.layer_state().items():
        assert_array_equal(b.layer_state()[key], value)
    assert b.layers[1].state["running_var"] is b.layer_state()["layers.1.running_var"]  # copied in place


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.pop("layers.1.running_var"), "missing"),
        (lambda s: s.__setitem__("layers.1.running_mean", np.zeros(6)), "shape"),
    ],
    ids=["missing-buffer", "buffer-shape"],
)
def test_load_state_dict_checks_buffers_all_or_nothing(change, message):
    net = build(NORM_NET)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    state = {k: v + 1.0 for k, v in before.items()}
    change(state)
    with pytest.raises(ValueError, match=message):
        net.load_state_dict(state)
    for key, value in before.items():
        assert_array_equal(net.state_dict()[key], value, err_msg=key)


def test_weight_decay_only_on_linear_weights():
    net = build(NORM_NET)
    assert {p.key for p in net.params if p.decay} == {"layers.0.weight", "layers.3.weight", "layers.5.weight"}
    for p in net.params:
        p.grad[...] = 0
    before = {p.key: p.value.copy() for p in net.params}
    OPTIMIZERS["sgd"](lr=0.1, weight_decay=0.5).step(net.params)
    for p in net.params:
        if p.decay:
            assert_allclose(p.value, before[p.key] * 0.95, rtol=1e-15)
        else:  # biases and the norms' scales and shifts stay put
            assert_array_equal(p.value, before[p.key], err_msg=p.key)


# ---------------------------------------------------------------- float32


def test_float32_network_keeps_float32_everywhere():
    spec = [
        ("gaussian_noise", {"std": 0.1}),
        ("linear", {"units": 8}),
        ("batch_norm", {}),
        ("relu", {}),
        ("dropout", {"p": 0.3}),
        ("linear", {"units": 6}),
        ("layer_norm", {}),
        ("linear", {"units": 3}),
    ]
    net = build(spec, loss="cross_entropy", dtype=np.float32)
    rng = np.random.default_rng(16)
    x = rng.standard_normal((16, 4)).astype(np.float32)
    t = net.loss.encode(rng.integers(0, 3, 16), 3, np.float32)
    opt = OPTIMIZERS["adam"](lr=1e-2)
    for _ in range(3):
        _, z, dx = net.loss_and_grad(x, t, input_grad=True)
        assert z.dtype == np.float32 and dx.dtype == np.float32
        opt.step(net.params)
    for key, value in net.state_dict().items():
        assert value.dtype == np.float32, key
    for p in net.params:
        assert p.grad.dtype == np.float32, p.key
    for l in (l for l in net.layers if l.name in NOISE_AND_NORM):  # what the new layers kept for backward
        for attr in ("mask", "x_hat", "inv_std"):
            if getattr(l, attr, None) is not None:
                assert getattr(l, attr).dtype == np.float32, (l.name, attr)
    assert net.forward(x, training=False).dtype == np.float32
    assert net.predict(x).dtype == np.float32


@pytest.mark.parametrize("name", sorted(NOISE_AND_NORM))
def test_float32_layer_agrees_with_float64(name):
    """The same layer in float32 and float64 (same generator seed): equal to float32 precision."""
    x = np.random.default_rng(17).standard_normal((6, 4))
    outs = {}
    for dtype in (np.float32, np.float64):
        obj = layer(name, dtype=dtype, seed=5)
        out = obj.forward(x.astype(dtype), training=True)
        dx = obj.backward(np.ones_like(out))
        assert out.dtype == dtype and dx.dtype == dtype
        outs[dtype] = out
    assert_allclose(outs[np.float32], outs[np.float64], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- config options


def test_config_accepts_the_layers_and_their_defaults():
    layers = [{"linear": 16}, {"dropout": 0.2}, "batch_norm", "relu", "gaussian_noise", "layer_norm", {"linear": 3}]
    model = cfg.validate(small_config(model={"layers": layers})).model
    dumped = [spec.model_dump() for spec in model.layers]
    assert dumped[1] == {"type": "dropout", "p": 0.2}
    assert dumped[2] == {"type": "batch_norm", "momentum": 0.1, "eps": 1e-5}
    assert dumped[4] == {"type": "gaussian_noise", "std": 0.1}
    assert dumped[5] == {"type": "layer_norm", "eps": 1e-5}


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"dropout": 1.0}, "p"),
        ({"dropout": -0.1}, "p"),
        ({"gaussian_noise": -1.0}, "std"),
        ({"batch_norm": {"momentum": 1.5}}, "momentum"),
        ({"batch_norm": {"eps": 0.0}}, "eps"),
        ({"layer_norm": {"eps": -1e-5}}, "eps"),
    ],
)
def test_config_rejects_out_of_range_options(bad, key):
    with pytest.raises(NntrainError, match=f"model.layers.1.{key}"):
        cfg.validate(small_config(model={"layers": [{"linear": 16}, bad, {"linear": 3}]}))


def test_batch_norm_on_sequences_normalizes_each_feature_over_the_batch_and_the_steps():
    """(steps, features) samples: features last, as torch's BatchNorm1d(C) on the permuted (N, C, T)."""
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (5, 7, 3)) * np.array([1.0, 10.0, 0.1])
    norm = LAYERS["batch_norm"](momentum=0.5)
    assert norm.setup((7, 3), np.dtype(np.float64), rng, "he", 0.01) == (7, 3)
    assert norm.params["weight"].shape == (3,) and norm.min_batch == 1
    y = norm.forward(x, training=True)
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(norm.state["running_var"], 0.5 + 0.5 * var * 35 / 34, rtol=1e-12)
    from nntrain.engine.losses import LOSSES
    from nntrain.engine.network import Network

    net = Network([LAYERS["gru"](units=4), LAYERS["batch_norm"](), LAYERS["time_pool"](mode="mean"), LAYERS["linear"](units=2)],
                  LOSSES["mse"](), (7, 3), np.float64, np.random.default_rng(1))  # fmt: skip
    checks = check_gradients(net, rng.normal(size=(5, 7, 3)), rng.normal(size=(5, 2)))
    assert all(c.passed for c in checks), [(c.name, c.max_rel_error) for c in checks]
