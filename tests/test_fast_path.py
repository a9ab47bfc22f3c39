"""The training fast path: float32 end to end, reused arrays that give the straightforward results.

- During and after a short float32 fit no parameter, gradient, activation, loss array or
  optimizer state is anything but float32 (float64 literals and numpy defaults are the usual leaks).
- The trainer's path (arrays reused from step to step by the network's arena, batches gathered
  into reused arrays, parameters packed into flat arrays) matches a reference written here in
  plain numpy expressions, batch by batch, including a last batch of a different size.
- Reusing arrays gives what fresh arrays give, never overwrites the caller's arrays, the output
  of a layer that needs it again, or an array that is still to be used; gradcheck passes with it on.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from nntrain import config as cfg
from nntrain.api import fit
from nntrain.engine.gradcheck import check_gradients
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import OPTIMIZERS
from nntrain.train.trainer import BatchGather, Hooks

ROWS, FEATURES, CLASSES = 70, 12, 4  # batches of 32: 32, 32 and a last one of 6


def write_data(tmp_path, rows=ROWS, seed=0, shape=(FEATURES,)):
    """An .npz of `rows` samples of `shape` (FEATURES numbers: (12,) rows, or e.g. (1, 3, 4) images)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, FEATURES)).astype(np.float32)
    y = (X[:, :CLASSES] + 0.3 * rng.standard_normal((rows, CLASSES))).argmax(axis=1).astype(np.int64)
    path = tmp_path / "data.npz"
    np.savez(path, X=X.reshape(rows, *shape), y=y)
    return path, X, y


def config(data_file, layers=None, optimizer=None, epochs=2, batch=32, dtype="float32", **train):
    return cfg.validate(
        {
            "name": "fast",
            "seed": 3,
            "dtype": dtype,
            "data": {"dataset": str(data_file), "split": {"val": 0, "test": 0}, "scale": "none"},
            "model": {"layers": layers or [{"linear": 16}, "relu", {"linear": 8}, "relu", {"linear": CLASSES}]},
            "loss": "cross_entropy",
            "optimizer": optimizer or {"name": "sgd", "lr": 0.05, "momentum": 0.9},
            "train": {"epochs": epochs, "batch_size": batch, **train},
        }
    )


def float_arrays(obj):
    """(name, array) of an object's float ndarray attributes, and of the arrays in its dicts (params, workspace)."""
    found = []
    for name, value in vars(obj).items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
            found.append((name, value))
        elif isinstance(value, dict):
            found += [
                (f"{name}[{k}]", v) for k, v in value.items() if isinstance(v, np.ndarray) and v.dtype.kind in "fc"
            ]
    return found


# ---------------------------------------------------------------- float32 end to end

DTYPE_CASES = {
    "sgd momentum, relu": ([{"linear": 16}, "relu", {"linear": 8}, "relu", {"linear": CLASSES}], {"name": "sgd", "lr": 0.05, "momentum": 0.9}),
    "sgd nesterov + weight decay, every activation": (
        [{"linear": 16}, "sigmoid", {"linear": 16}, "tanh", {"linear": 16}, {"leaky_relu": {"slope": 0.1}},
         {"linear": 8}, "identity", {"linear": CLASSES}],
        {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
    ),
    "adam, normalization and noise": (
        [{"linear": 16}, "batch_norm", "relu", {"dropout": {"p": 0.2}}, {"linear": 8}, "layer_norm",
         {"gaussian_noise": {"std": 0.1}}, "relu", {"linear": CLASSES}],
        {"name": "adam", "lr": 0.01},
    ),
    "adamw": ([{"linear": 16}, "relu", {"linear": CLASSES}], {"name": "adamw", "lr": 0.01}),
    "rmsprop centered momentum": (
        [{"linear": 16}, "relu", {"linear": CLASSES}],
        {"name": "rmsprop", "lr": 0.01, "momentum": 0.5, "centered": True},
    ),
    "adagrad": ([{"linear": 16}, "relu", {"linear": CLASSES}], {"name": "adagrad", "lr": 0.05}),
    "cnn, sgd momentum": (
        [{"conv2d": {"filters": 4, "kernel_size": 2, "padding": "same"}}, "batch_norm", "relu",
         {"max_pool2d": {"kernel_size": 2, "stride": 1}}, {"conv2d": {"filters": 3, "kernel_size": [1, 2], "stride": [1, 2]}},
         "tanh", {"avg_pool2d": {"kernel_size": 2, "padding": 1}}, {"dropout": 0.2}, "flatten", {"linear": CLASSES}],
        {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3},
    ),
    "cnn, adam, global pooling": (
        [{"conv2d": {"filters": 5, "kernel_size": 3, "padding": 1, "dilation": 1}}, "leaky_relu",
         {"conv2d": {"filters": 6, "kernel_size": 2, "dilation": [1, 2]}}, "relu", "global_avg_pool", {"linear": CLASSES}],
        {"name": "adam", "lr": 0.01},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DTYPE_CASES))
def test_nothing_leaves_float32_during_a_fit(tmp_path, case):
    layers, optimizer = DTYPE_CASES[case]
    data_file, _, _ = write_data(tmp_path, shape=(1, 3, 4) if case.startswith("cnn") else (FEATURES,))
    seen = {"batches": 0}
    bad = []

    def on_start(run, exp, done):
        seen["exp"] = exp

    def on_batch(done, total, loss):  # mid-epoch: the arena holds this batch's arrays
        exp = seen["exp"]
        seen["batches"] += 1
        assert isinstance(loss, float)
        for i, layer in enumerate(exp.network.layers):
            bad.extend(
                f"layer {i} ({layer.name}).{n}: {a.dtype}" for n, a in float_arrays(layer) if a.dtype != np.float32
            )
        bad.extend(f"arena array {a.shape}: {a.dtype}" for a in exp.network.arena.kept if a.dtype.kind in "fc" and a.dtype != np.float32)
        loss_fn = exp.network.loss
        bad.extend(
            f"loss.{n}: {a.dtype}" for n, a in float_arrays(loss_fn) if a.dtype != np.float32 and n != "_weights"
        )
        for p in exp.network.params:
            if p.value.dtype != np.float32 or p.grad.dtype != np.float32:
                bad.append(f"{p.key}: value {p.value.dtype}, grad {p.grad.dtype}")
        bad.extend(
            f"optimizer state {k}: {v.dtype}"
            for k, v in exp.optimizer.state.items()
            if v.dtype.kind == "f" and v.dtype != np.float32
        )

    summary = fit(
        config(data_file, layers, optimizer),
        runs_root=tmp_path / "runs",
        hooks=Hooks(on_start=on_start, on_batch=on_batch),
    )
    assert summary["status"] == "completed" and seen["batches"] == 2 * 3
    assert not bad, sorted(set(bad))
    exp = seen["exp"]
    # After training: the same, and a fresh training pass gives float32 outputs and loss gradients.
    for p in exp.network.params:
        assert p.value.dtype == np.float32 and p.grad.dtype == np.float32, p.key
    assert all(v.dtype == np.float32 for k, v in exp.optimizer.state.items() if k != "steps" and v.dtype.kind == "f")
    X, _, t = exp.arrays("train")
    assert X.dtype == np.float32
    net = exp.network
    for reuse in (False, True):
        net.reuse_arrays(reuse)
        z = net.forward(X[:7], training=True)
        net.loss.forward(z, t[:7])
        grad = net.loss.backward()
        assert z.dtype == np.float32 and grad.dtype == np.float32
        _, z, dx = net.loss_and_grad(X[:7], t[:7], input_grad=True)
        assert z.dtype == np.float32 and dx.dtype == np.float32
        assert all(p.grad.dtype == np.float32 for p in net.params)
    net.reuse_arrays(False)
    assert net.forward(X[:5]).dtype == np.float32 and net.predict(X[:5]).dtype == np.float32


def test_float64_runs_stay_float64(tmp_path):
    data_file, _, _ = write_data(tmp_path)
    seen = {}
    hooks = Hooks(on_start=lambda run, exp, done: seen.setdefault("exp", exp))
    fit(config(data_file, dtype="float64"), runs_root=tmp_path / "runs", hooks=hooks)
    exp = seen["exp"]
    assert all(p.value.dtype == np.float64 and p.grad.dtype == np.float64 for p in exp.network.params)
    assert all(v.dtype == np.float64 for k, v in exp.optimizer.state.items() if k != "steps")


# ---------------------------------------------------------------- the buffered path against a reference


def reference_training(X, y, weights, biases, orders, batch, lr, momentum, nesterov=False):
    """A straightforward float32 MLP (linear-relu-...-linear, softmax cross-entropy, SGD) in plain numpy.

    Returns the final weights and biases and, per epoch, (mean loss, accuracy) as the trainer reports them.
    """
    W = [w.copy() for w in weights]
    b = [c.copy() for c in biases]
    vW = [np.zeros_like(w) for w in W]
    vb = [np.zeros_like(c) for c in b]
    epochs = []
    for order in orders:
        loss_sum, correct = 0.0, 0
        for start in range(0, len(order), batch):
            rows = order[start : start + batch]
            xb, yb = X[rows], y[rows]
            m = len(rows)
            hs = [xb]  # inputs of each linear layer
            for i in range(len(W)):
                out = hs[-1] @ W[i] + b[i]
                hs.append(np.maximum(out, 0) if i < len(W) - 1 else out)
            z = hs[-1]
            shifted = z - z.max(axis=1, keepdims=True)
            probs = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(m), yb]))
            loss_sum += loss * m
            correct += int((z.argmax(axis=1) == yb).sum())
            onehot = np.zeros_like(probs)
            onehot[np.arange(m), yb] = 1
            g = (probs - onehot) / np.float32(m)
            grads = [None] * len(W)
            for i in range(len(W) - 1, -1, -1):
                grads[i] = (hs[i].T @ g, g.sum(axis=0))
                if i > 0:
                    g = (g @ W[i].T) * (hs[i] > 0)
            for i, (gW, gb) in enumerate(grads):
                for p, v, gr in ((W[i], vW[i], gW), (b[i], vb[i], gb)):
                    v *= np.float32(momentum)
                    v += gr
                    step = gr + np.float32(momentum) * v if nesterov else v
                    p -= np.float32(lr) * step
        epochs.append((loss_sum / len(X), correct / len(X)))
    return W, b, epochs


@pytest.mark.parametrize("batch", [32, 7, ROWS])
@pytest.mark.parametrize("nesterov", [False, True])
def test_trainer_matches_a_plain_numpy_reference(tmp_path, batch, nesterov):
    """Three epochs through api.fit (shuffled, gathered batches, the last one smaller) against the reference."""
    data_file, X, y = write_data(tmp_path)
    start = {}

    def on_start(run, exp, done):
        linears = [layer for layer in exp.network.layers if layer.name == "linear"]
        start["W"] = [layer.params["weight"].copy() for layer in linears]
        start["b"] = [layer.params["bias"].copy() for layer in linears]
        start["rng"] = copy.deepcopy(exp.rngs["train"])
        start["exp"] = exp

    optimizer = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": nesterov}
    rows = []
    hooks = Hooks(on_start=on_start, on_epoch=rows.append)
    summary = fit(
        config(data_file, optimizer=optimizer, epochs=3, batch=batch), runs_root=tmp_path / "runs", hooks=hooks
    )
    assert summary["status"] == "completed"
    orders = [start["rng"].permutation(ROWS) for _ in range(3)]
    W, b, epochs = reference_training(X, y, start["W"], start["b"], orders, batch, 0.05, 0.9, nesterov)
    linears = [layer for layer in start["exp"].network.layers if layer.name == "linear"]
    for i, layer in enumerate(linears):
        assert_allclose(layer.params["weight"], W[i], rtol=1e-4, atol=1e-6)
        assert_allclose(layer.params["bias"], b[i], rtol=1e-4, atol=1e-6)
    assert len(rows) == 3
    for row, (loss, accuracy) in zip(rows, epochs):
        assert row["train_loss"] == pytest.approx(loss, rel=1e-5)
        assert row["train_accuracy"] == pytest.approx(accuracy, abs=1e-12)


def small_network(layers, seed=0, dtype=np.float32, loss="cross_entropy", features=FEATURES):
    return Network(layers, LOSSES[loss](), features, dtype, np.random.default_rng(seed))


def mlp():
    return [
        LAYERS["linear"](units=16),
        LAYERS["relu"](),
        LAYERS["linear"](units=8),
        LAYERS["relu"](),
        LAYERS["linear"](units=CLASSES),
    ]


def test_buffered_steps_match_the_allocating_engine_batch_by_batch():
    """Arrays reused on one network, fresh on an identical one: the same losses, outputs and parameters
    after every step of 32, 32 and a last batch of 6 rows, then again (arrays of both sizes reused)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((ROWS, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, ROWS)
    fast, plain = small_network(mlp()), small_network(mlp())
    fast.reuse_arrays(True)
    opt_fast, opt_plain = OPTIMIZERS["sgd"](lr=0.05, momentum=0.9), OPTIMIZERS["sgd"](lr=0.05, momentum=0.9)
    outputs = {}
    for epoch in range(2):
        for start in range(0, ROWS, 32):
            xb, yb = X[start : start + 32], y[start : start + 32]
            loss_f, z_f, _ = fast.loss_and_grad(xb, yb)
            loss_p, z_p, _ = plain.loss_and_grad(xb, yb)
            assert loss_f == pytest.approx(loss_p, rel=1e-6)
            assert_allclose(z_f, z_p, rtol=1e-6, atol=1e-7)
            for pf, pp in zip(fast.params, plain.params):
                assert_allclose(pf.grad, pp.grad, rtol=1e-5, atol=1e-7)
            opt_fast.step(fast.params)
            opt_plain.step(plain.params)
            for pf, pp in zip(fast.params, plain.params):
                assert_allclose(pf.value, pp.value, rtol=1e-5, atol=1e-7)
            outputs.setdefault((epoch, len(xb)), []).append(z_f)
    # Batches of one size share one output array; the two sizes have their own (the full one is not reallocated).
    assert outputs[(0, 32)][0] is outputs[(0, 32)][1] is outputs[(1, 32)][0]
    assert outputs[(0, 6)][0] is outputs[(1, 6)][0] and outputs[(0, 6)][0] is not outputs[(0, 32)][0]
    assert isinstance(opt_fast._flat_state, type(opt_fast._flat_state)) and opt_fast._flat_state is not None


def test_only_training_steps_reuse_arrays():
    net = small_network(mlp())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, FEATURES)).astype(np.float32)
    t = rng.integers(0, CLASSES, 5)
    a, b = net.loss_and_grad(x, t)[1], net.loss_and_grad(x, t)[1]
    assert a is not b and not np.shares_memory(a, b)
    net.reuse_arrays(True)
    c, d = net.loss_and_grad(x, t)[1], net.loss_and_grad(x, t)[1]
    assert c is d  # the documented contract: valid until the next training step of this size
    for training in (True, False):  # a forward outside a step (evaluation, diagnostics) never reuses
        e, f = net.forward(x, training=training), net.forward(x, training=training)
        assert e is not f and not np.shares_memory(e, c)
    net.reuse_arrays(False)
    assert net.loss_and_grad(x, t)[1] is not c and not net.arena.kept


STACKS = {
    "relu first (the input is the caller's)": lambda: [LAYERS["relu"](), LAYERS["linear"](units=6), LAYERS["relu"](), LAYERS["linear"](units=CLASSES)],
    "tanh then relu (tanh needs its output)": lambda: [LAYERS["linear"](units=6), LAYERS["tanh"](), LAYERS["relu"](), LAYERS["linear"](units=CLASSES)],
    "identity passes ownership": lambda: [LAYERS["linear"](units=6), LAYERS["identity"](), LAYERS["relu"](), LAYERS["relu"](), LAYERS["linear"](units=CLASSES)],
    "dropout and batch_norm before relu": lambda: [LAYERS["linear"](units=6), LAYERS["batch_norm"](), LAYERS["relu"](), LAYERS["dropout"](p=0.3), LAYERS["relu"](), LAYERS["linear"](units=CLASSES)],
    "relu last, mse": lambda: [LAYERS["linear"](units=6), LAYERS["tanh"](), LAYERS["linear"](units=CLASSES), LAYERS["relu"]()],
}  # fmt: skip


@pytest.mark.parametrize("stack", sorted(STACKS))
def test_reused_arrays_change_no_result_and_no_caller_array(stack):
    loss = "mse" if "mse" in stack else "cross_entropy"
    fast, plain = small_network(STACKS[stack](), loss=loss), small_network(STACKS[stack](), loss=loss)
    fast.reuse_arrays(True)
    rng = np.random.default_rng(2)
    for batch in (9, 9, 4):
        x = rng.standard_normal((batch, FEATURES)).astype(np.float32)
        labels = rng.integers(0, CLASSES, batch)
        t = fast.loss.encode(labels, CLASSES, np.float32)
        kept = x.copy(), t.copy()
        fast.rng, plain.rng = np.random.default_rng(5), np.random.default_rng(5)  # the same dropout masks
        loss_f, z_f, dx_f = fast.loss_and_grad(x, t, input_grad=True)
        loss_p, z_p, dx_p = plain.loss_and_grad(x, t, input_grad=True)
        assert_array_equal(x, kept[0])
        assert_array_equal(t, kept[1])
        assert loss_f == pytest.approx(loss_p, rel=1e-6)
        assert_allclose(z_f, z_p, rtol=1e-6, atol=1e-7)
        assert_allclose(dx_f, dx_p, rtol=1e-5, atol=1e-7)
        for pf, pp in zip(fast.params, plain.params):
            assert_allclose(pf.grad, pp.grad, rtol=1e-5, atol=1e-6)


def test_backward_leaves_the_callers_gradient_alone():
    """A ReLU at the top multiplies the incoming gradient into an array of its own."""
    net = small_network(
        [LAYERS["linear"](units=6), LAYERS["relu"](), LAYERS["linear"](units=CLASSES), LAYERS["relu"]()], loss="mse"
    )
    net.reuse_arrays(True)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, FEATURES)).astype(np.float32)
    net.forward(x, training=True)
    grad = rng.standard_normal((5, CLASSES)).astype(np.float32)
    kept = grad.copy()
    dx = net.backward(grad, input_grad=True)
    assert_array_equal(grad, kept)
    plain = small_network(
        [LAYERS["linear"](units=6), LAYERS["relu"](), LAYERS["linear"](units=CLASSES), LAYERS["relu"]()], loss="mse"
    )
    plain.forward(x, training=True)
    assert_allclose(dx, plain.backward(kept, input_grad=True), rtol=1e-5, atol=1e-7)


def test_gradcheck_passes_with_reuse_on():
    """gradcheck runs forward after forward; with reuse on its gradients must still be right."""
    layers = [LAYERS["linear"](units=6), LAYERS["relu"](), LAYERS["linear"](units=5), LAYERS["tanh"](),
              LAYERS["relu"](), LAYERS["linear"](units=3), LAYERS["softmax"]()]  # fmt: skip
    net = Network(layers, LOSSES["cross_entropy"](), 4, np.float64, np.random.default_rng(0), init="xavier")
    net.reuse_arrays(True)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 4))
    t = net.loss.encode(rng.integers(0, 3, 8), 3, np.float64)
    for result in check_gradients(net, x, t):
        assert result.passed and result.max_rel_error < 1e-6, result


def test_parameters_are_packed_and_stay_packed_through_a_checkpoint_round_trip():
    net = small_network(mlp())
    flat = net.params[0].value.base
    assert flat is not None and all(p.value.base is flat for p in net.params)
    assert sum(p.value.size for p in net.params) == flat.size
    opt = OPTIMIZERS["sgd"](lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)
    for p in net.params:
        p.grad[...] = rng.standard_normal(p.grad.shape)
    opt.step(net.params)
    state = {k: np.array(v) for k, v in opt.state_dict().items()}
    before = [p.value.copy() for p in net.params]
    # Load the state into a fresh optimizer (a resume): the next steps must match an optimizer that never stopped.
    resumed = OPTIMIZERS["sgd"](lr=0.1, momentum=0.9)
    resumed.load_state_dict(state)
    twin = small_network(mlp())
    twin.load_state_dict(net.state_dict())
    for p, q in zip(net.params, twin.params):
        q.grad[...] = p.grad
    opt.step(net.params)
    resumed.step(twin.params)
    for p, q in zip(net.params, twin.params):
        assert_array_equal(p.value, q.value)
    assert any(not np.array_equal(p.value, b) for p, b in zip(net.params, before))
    for key, value in resumed.state_dict().items():
        assert_array_equal(value, opt.state_dict()[key])


def test_batch_gather_reuses_its_buffers_and_gathers_an_aliased_array_once():
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    y = np.arange(10)
    gather = BatchGather((X, y, y), 4)
    rows = np.array([3, 1, 7, 0])
    bx, by, bt = gather(rows)
    assert_array_equal(bx, X[rows])
    assert_array_equal(by, y[rows]) and bt is by
    again = gather(np.array([9, 2]))
    assert np.shares_memory(again[0], bx) and len(again[0]) == 2
    assert_array_equal(again[0], X[[9, 2]])


def test_training_metrics_come_from_the_batch_outputs(tmp_path):
    """Training accuracy is counted from each batch's logits before the step, not by a second pass."""
    data_file, _, _ = write_data(tmp_path)
    calls = {"forward": 0}
    seen = {}

    def on_start(run, exp, done):
        seen["exp"] = exp
        original = exp.network.forward

        def counting(x, training=False, lengths=None):
            calls["forward"] += 1
            return original(x, training, lengths)

        exp.network.forward = counting

    fit(config(data_file, epochs=1), runs_root=tmp_path / "runs", hooks=Hooks(on_start=on_start))
    # 3 training batches, then the summary's evaluation of the train split (one 4096-row batch).
    assert calls["forward"] == 3 + 1
    assert math.isfinite(seen["exp"].evaluate_split("train")["loss"])
