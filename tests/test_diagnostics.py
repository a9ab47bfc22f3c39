"""Training diagnostics: dead and saturated units, norms, update ratios, the CSV, and the report's warnings."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import small_config

from nntrain import config as cfg
from nntrain.engine.layers import LAYERS
from nntrain.engine.losses import LOSSES
from nntrain.engine.network import Network
from nntrain.engine.optim import OPTIMIZERS
from nntrain.errors import NntrainError
from nntrain.train import diagnostics as dg
from nntrain.train.diagnostics import COLUMNS, Diagnostics, format_table, read_diagnostics, report
from nntrain.train.experiment import prepare


def build(spec, loss="cross_entropy", in_features=5, seed=0, **kw):
    """A Network from a compact spec: ["linear:16", "relu", ...] (float64)."""
    layers = []
    for item in spec:
        name, _, units = item.partition(":")
        layers.append(LAYERS[name](units=int(units)) if units else LAYERS[name]())
    return Network(layers, LOSSES[loss](), in_features, np.float64, np.random.default_rng(seed), **kw)


def blobs(n=240, classes=3, features=5, seed=0, spread=0.6):
    """Gaussian clusters around well separated centres: an easy, healthy classification problem."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features)) * 2
    y = np.arange(n) % classes
    return centres[y] + spread * rng.standard_normal((n, features)), y


def train_epoch(net, opt, diag, X, y, batch=32):
    """One epoch of mini-batch SGD with the diagnostics calls where the trainer makes them."""
    t = net.loss.encode(y, int(y.max()) + 1, net.dtype)
    for s in range(0, len(X), batch):
        net.loss_and_grad(X[s : s + batch], t[s : s + batch])
        diag.after_backward()
        opt.step(net.params)


def by_layer(rows):
    return {r["layer"]: r for r in rows}


# ---------------------------------------------------------------- dead and saturated units


def test_relu_with_very_negative_bias_is_dead_and_warned():
    X, y = blobs(96)
    net = build(["linear:8", "relu", "linear:3"])
    net.layers[0].params["bias"][:] = -1e3
    diag = Diagnostics(net, X)
    train_epoch(net, OPTIMIZERS["sgd"](lr=0.1), diag, X, y)
    rows = by_layer(diag.end_epoch(1))
    assert rows[1]["type"] == "relu" and rows[1]["dead_fraction"] == 1.0
    assert rows[1]["activation_mean"] == 0.0 and rows[1]["activation_std"] == 0.0
    assert rows[0]["dead_fraction"] is None and rows[2]["dead_fraction"] is None
    warnings = report(list(rows.values()))[1]
    dead = [w for w in warnings if "units are dead" in w]
    assert dead == [
        (
            "layer 1 (relu): 100% of units are dead (output 0 for every probe sample) — lower the learning rate,"
            " use leaky_relu, or check input scaling"
        )
    ]
    # Nothing flows through the dead layer: no weight gradient anywhere (only the output bias learns).
    assert rows[0]["grad_norm"] == 0.0 and rows[2]["grad_norm"] == 0.0 and rows[0]["update_ratio"] == 0.0
    assert [w for w in warnings if "no gradient" in w] == [
        (
            f"layer {i} (linear): no gradient reaches the weights (gradient norm 0), so they no longer change — look"
            " for dead or saturated units before this layer (or a loss already at 0)"
        )
        for i in (0, 2)
    ]
    assert len(warnings) == 3


def test_dead_fraction_counts_units_dead_for_every_sample_only():
    X, _ = blobs(128)
    net = build(["linear:8", "leaky_relu", "linear:3"])
    net.layers[0].params["bias"][[1, 4, 6]] = -1e3  # three of eight units never fire
    rows = by_layer(Diagnostics(net, X).end_epoch(1))
    assert rows[1]["dead_fraction"] == 3 / 8
    assert not [w for w in report(list(rows.values()))[1] if "negative side" in w or "dead" in w]  # 37.5% < 50%
    net.layers[0].params["bias"][[0, 2]] = -1e3  # five of eight: warned, with the advice for leaky_relu
    rows = by_layer(Diagnostics(net, X).end_epoch(1))
    assert rows[1]["dead_fraction"] == 5 / 8
    warnings = report(list(rows.values()))[1]
    assert any(w.startswith("layer 1 (leaky_relu): 62% of units are on the negative side") for w in warnings)


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_hidden_sigmoid_or_tanh_fed_huge_inputs_is_saturated_and_warned(activation):
    X, _ = blobs(256)
    net = build(["linear:8", activation, "linear:3"])
    diag = Diagnostics(net, X * 1e4)
    rows = by_layer(diag.end_epoch(1))
    assert rows[1]["saturated_fraction"] == 1.0
    warnings = report(list(rows.values()))[1]
    assert any(
        w.startswith(f"layer 1 ({activation}): 100% of units are saturated") and "scale the inputs" in w
        for w in warnings
    )
    # The same network on standardized inputs with a small init is not saturated.
    net = build(["linear:8", activation, "linear:3"], init="xavier")
    rows = by_layer(Diagnostics(net, (X - X.mean(0)) / X.std(0)).end_epoch(1))
    assert rows[1]["saturated_fraction"] == 0.0
    assert not report(list(rows.values()))[1]


def test_saturation_rule_is_per_unit_over_99_percent_of_samples():
    """Unit 0 saturated on 99/100 samples (counts), unit 1 on 98/100 (does not), unit 2 never."""
    net = build(["linear:3", "sigmoid"], loss="mse", in_features=3)
    net.layers[0].params["weight"][...] = np.eye(3)
    X = np.zeros((100, 3))
    X[:99, 0] = 20.0
    X[:98, 1] = -20.0
    rows = by_layer(Diagnostics(net, X).end_epoch(1))
    assert rows[1]["saturated_fraction"] == pytest.approx(1 / 3)


def test_saturated_output_layer_is_reported_but_not_warned():
    """A confident binary classifier's sigmoid output is near 0/1 on purpose (here fused into the loss)."""
    X, _ = blobs(64)
    net = build(["linear:1", "sigmoid"], loss="binary_cross_entropy")
    assert net.fused  # the chain skips the sigmoid; the diagnostics still run it
    rows = by_layer(Diagnostics(net, X * 1e4).end_epoch(1))
    assert rows[1]["saturated_fraction"] == 1.0
    assert not [w for w in report(list(rows.values()))[1] if "saturated" in w]


# ---------------------------------------------------------------- norms and update ratios


def test_norms_equal_numpy_on_known_arrays():
    rng = np.random.default_rng(1)
    net = build(["linear:4", "relu", "linear:3"])
    W0, W2 = rng.standard_normal((5, 4)), rng.standard_normal((4, 3))
    net.layers[0].params["weight"][...] = W0
    net.layers[2].params["weight"][...] = W2
    diag = Diagnostics(net, rng.standard_normal((10, 5)))
    grads = [(rng.standard_normal((5, 4)) * s, rng.standard_normal((4, 3)) * s) for s in (1.0, 3.0, 0.1)]
    for g0, g2 in grads:  # hand-set gradients, no optimizer step: the weights do not move
        net.layers[0].grads["weight"][...] = g0
        net.layers[2].grads["weight"][...] = g2
        diag.after_backward()
    rows = by_layer(diag.end_epoch(1))
    assert rows[0]["weight_norm"] == pytest.approx(np.linalg.norm(W0), rel=1e-13)
    assert rows[2]["weight_norm"] == pytest.approx(np.linalg.norm(W2), rel=1e-13)
    assert rows[0]["grad_norm"] == pytest.approx(np.mean([np.linalg.norm(g0) for g0, _ in grads]), rel=1e-13)
    assert rows[2]["grad_norm"] == pytest.approx(np.mean([np.linalg.norm(g2) for _, g2 in grads]), rel=1e-13)
    assert rows[0]["update_ratio"] == 0.0 and rows[2]["update_ratio"] == 0.0
    assert rows[1]["weight_norm"] is rows[1]["grad_norm"] is rows[1]["update_ratio"] is None
    assert [r["epoch"] for r in rows.values()] == [1, 1, 1] and [r["type"] for r in rows.values()] == [
        "linear",
        "relu",
        "linear",
    ]


@pytest.mark.parametrize("samples", [None, 1, 2])
def test_update_ratio_matches_hand_computed_sgd_steps(samples):
    """Plain SGD moves W by lr * g, so the step's ratio is lr ||g|| / ||W_before||."""
    X, y = blobs(120)
    net = build(["linear:6", "tanh", "linear:3"])
    t = net.loss.encode(y, 3, net.dtype)
    lr = 0.05
    opt = OPTIMIZERS["sgd"](lr=lr)
    diag = Diagnostics(net, X, update_samples=samples)
    for epoch in (1, 2):  # the second epoch starts its means afresh
        expected = {0: [], 2: []}
        grad_norms = {0: [], 2: []}
        for s in range(0, 120, 40):
            net.loss_and_grad(X[s : s + 40], t[s : s + 40])
            for i, ratios in expected.items():
                g, W = net.layers[i].grads["weight"], net.layers[i].params["weight"]
                ratios.append(lr * np.linalg.norm(g) / np.linalg.norm(W))
                grad_norms[i].append(np.linalg.norm(g))
            diag.after_backward()
            opt.step(net.params)
        rows = by_layer(diag.end_epoch(epoch))
        for i, ratios in expected.items():
            measured = ratios if samples is None else ratios[:samples]
            assert rows[i]["update_ratio"] == pytest.approx(np.mean(measured), rel=1e-10)
            assert rows[i]["grad_norm"] == pytest.approx(np.mean(grad_norms[i]), rel=1e-12)
            assert rows[i]["weight_norm"] == pytest.approx(np.linalg.norm(net.layers[i].params["weight"]), rel=1e-13)
    assert expected[0][0] != pytest.approx(expected[0][1], rel=1e-3)  # the sampled/all cases differ for real


def test_update_ratio_of_an_adam_step_is_the_real_change():
    """Not SGD-specific: the measured ratio is ||W_after - W_before|| / ||W_before|| whatever the optimizer."""
    X, y = blobs(64)
    net = build(["linear:4", "relu", "linear:3"])
    t = net.loss.encode(y, 3, net.dtype)
    opt = OPTIMIZERS["adam"](lr=0.01)
    diag = Diagnostics(net, X)
    net.loss_and_grad(X, t)
    before = net.layers[0].params["weight"].copy()
    diag.after_backward()
    opt.step(net.params)
    after = net.layers[0].params["weight"]
    rows = by_layer(diag.end_epoch(1))
    assert rows[0]["update_ratio"] == pytest.approx(np.linalg.norm(after - before) / np.linalg.norm(before), rel=1e-12)


def test_activation_mean_and_std_match_a_hand_forward_including_a_fused_softmax():
    rng = np.random.default_rng(3)
    net = build(["linear:4", "relu", "linear:2", "softmax"])
    assert net.fused
    X = rng.standard_normal((50, 5))
    rows = Diagnostics(net, X).end_epoch(1)
    W0, b0 = net.layers[0].params["weight"], net.layers[0].params["bias"]
    W2, b2 = net.layers[2].params["weight"], net.layers[2].params["bias"]
    h0 = X @ W0 + b0
    h1 = np.maximum(h0, 0)
    h2 = h1 @ W2 + b2
    e = np.exp(h2 - h2.max(1, keepdims=True))
    h3 = e / e.sum(1, keepdims=True)
    for row, h in zip(rows, (h0, h1, h2, h3)):
        assert row["activation_mean"] == pytest.approx(h.mean(), rel=1e-12, abs=1e-15)
        assert row["activation_std"] == pytest.approx(h.std(), rel=1e-12)
    assert rows[3]["activation_mean"] == pytest.approx(0.5)  # softmax rows sum to 1 over 2 classes


def test_probe_pass_draws_no_random_numbers_and_changes_no_buffers():
    X, y = blobs(64)
    net = build(["linear:8", "batch_norm", "relu", "dropout", "linear:3"])
    diag = Diagnostics(net, X)
    train_epoch(net, OPTIMIZERS["sgd"](lr=0.1), diag, X, y)
    rng_state = net.rng.bit_generator.state
    buffers = {k: v.copy() for k, v in net.layer_state().items()}
    rows = diag.end_epoch(1)
    assert net.rng.bit_generator.state == rng_state
    for k, v in net.layer_state().items():
        np.testing.assert_array_equal(v, buffers[k])
    # Dropout is the identity in eval mode; batch_norm's scale vector counts as its weight.
    assert rows[3]["activation_mean"] == rows[2]["activation_mean"]
    assert rows[1]["weight_norm"] is not None and rows[1]["dead_fraction"] is None


# ---------------------------------------------------------------- the CSV


def assert_rows_close(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert list(ra) == list(rb) == COLUMNS
        for k in COLUMNS:
            if isinstance(ra[k], float):
                assert rb[k] == pytest.approx(ra[k], rel=1e-7), k
            else:
                assert ra[k] == rb[k], k


def test_csv_round_trips_and_resume_keeps_rows_up_to_the_checkpoint(tmp_path):
    X, y = blobs(96)
    net = build(["linear:8", "relu", "linear:3"])
    opt = OPTIMIZERS["sgd"](lr=0.1)
    diag = Diagnostics(net, X, tmp_path)
    written = []
    for epoch in (1, 2, 3):
        train_epoch(net, opt, diag, X, y)
        written += diag.end_epoch(epoch)
        # flushed each epoch: readable while the run goes on
        assert [r["epoch"] for r in read_diagnostics(tmp_path)] == [e for e in range(1, epoch + 1) for _ in range(3)]
    diag.close()
    path = tmp_path / dg.DIAGNOSTICS_FILE
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    assert (
        path.read_text().splitlines()[2]
        == f"1,1,relu,,,,{written[1]['dead_fraction']:.8g},,{written[1]['activation_mean']:.8g},{written[1]['activation_std']:.8g}"
    )
    assert_rows_close(written, read_diagnostics(tmp_path))
    assert_rows_close(written, read_diagnostics(path))  # the file itself works too

    # A crash after epoch 3's rows, resumed from the epoch-2 checkpoint: epoch 3 is dropped, then rewritten.
    resumed = Diagnostics(net, X, tmp_path, keep_until=2)
    assert_rows_close(written[:6], read_diagnostics(tmp_path))
    train_epoch(net, opt, resumed, X, y)
    again = resumed.end_epoch(3)
    resumed.close()
    assert_rows_close(written[:6] + again, read_diagnostics(tmp_path))

    # A torn last line (killed mid-write) is skipped when reading, and dropped on resume even when
    # what is left of it reads as an early epoch ("1" of "12,...").
    with open(path, "a") as f:
        f.write("1")
    assert [r["epoch"] for r in read_diagnostics(tmp_path)][-1] == 3
    Diagnostics(net, X, tmp_path, keep_until=11).close()
    assert path.read_text().splitlines()[-1].startswith("3,2,linear,")
    assert_rows_close(written[:6] + again, read_diagnostics(tmp_path))

    # A fresh start (no keep_until) rewrites the file with the header only.
    Diagnostics(net, X, tmp_path).close()
    assert path.read_bytes() == (",".join(COLUMNS) + "\r\n").encode()
    with pytest.raises(NntrainError, match="no diagnostics rows"):
        read_diagnostics(tmp_path)


def test_read_diagnostics_refuses_missing_and_foreign_files(tmp_path):
    with pytest.raises(NntrainError, match="train.diagnostics: true"):
        read_diagnostics(tmp_path)
    with open(tmp_path / dg.DIAGNOSTICS_FILE, "w", newline="") as f:
        csv.writer(f).writerows([["epoch", "train_loss"], [1, 0.5]])
    with pytest.raises(NntrainError, match="not a diagnostics file"):
        read_diagnostics(tmp_path)


# ---------------------------------------------------------------- report and warnings


def row(epoch, layer, type_, **values):
    return {"epoch": epoch, "layer": layer, "type": type_, **{k: values.get(k) for k in dg.FLOAT_COLUMNS}}


def history(dead_by_epoch):
    """A linear-relu-linear run whose relu dead fraction per epoch is given."""
    rows = []
    for epoch, dead in enumerate(dead_by_epoch, 1):
        rows += [
            row(
                epoch,
                0,
                "linear",
                weight_norm=3.0,
                grad_norm=0.2,
                update_ratio=2e-3,
                activation_mean=0.1,
                activation_std=1.0,
            ),
            row(epoch, 1, "relu", dead_fraction=dead, activation_mean=0.4, activation_std=0.6),
            row(
                epoch,
                2,
                "linear",
                weight_norm=2.0,
                grad_norm=0.5,
                update_ratio=1e-3,
                activation_mean=0.0,
                activation_std=2.0,
            ),
        ]
    return rows


def test_report_for_the_last_or_a_given_epoch():
    rows = history([0.0, 0.71, 0.05])
    rows.reverse()  # order in the input does not matter
    table, warnings = report(rows)
    assert [(r["epoch"], r["layer"]) for r in table] == [(3, 0), (3, 1), (3, 2)]
    assert warnings == []
    table, warnings = report(rows, epoch=2)
    assert [r["epoch"] for r in table] == [2, 2, 2] and table[1]["dead_fraction"] == 0.71
    assert warnings == [
        (
            "layer 1 (relu): 71% of units are dead (output 0 for every probe sample) — lower the learning rate,"
            " use leaky_relu, or check input scaling"
        )
    ]
    with pytest.raises(NntrainError, match=r"epoch 9 is not in the diagnostics \(epochs 1..3\)"):
        report(rows, epoch=9)
    assert report(history([0.5]))[1] == []  # the threshold itself is not a finding


@pytest.mark.parametrize(
    "ratio, expect",
    [
        (0.3, "probably too high"),
        (2e-7, "probably too low or the gradients vanish"),
        (1e-3, None),
        (0.05, None),
        (2e-5, None),
    ],
)
def test_update_ratio_warnings(ratio, expect):
    rows = history([0.0])
    rows[0]["update_ratio"] = ratio
    warnings = report(rows)[1]
    if expect is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith("layer 0 (linear): each step changes the weights by")
        assert expect in warnings[0]


@pytest.mark.parametrize(
    "first, last, expect", [(5e3, 1.0, "exploding"), (1e-4, 1.0, "vanishing"), (50.0, 0.5, None), (0.0, 0.0, None)]
)
def test_gradient_ratio_between_first_and_last_layer(first, last, expect):
    rows = history([0.0])
    rows[0]["grad_norm"], rows[2]["grad_norm"] = first, last
    warnings = report(rows)[1]
    if expect is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and warnings[0].startswith(f"{expect} gradients:")
        assert "layer 0 (linear) and layer 2 (linear)" in warnings[0]


def test_normalization_scales_are_left_out_of_ratio_warnings():
    """batch_norm's weight is a scale vector around 1: its ratios are not judged against a matrix's ranges."""
    rows = history([0.0])
    rows.insert(1, row(1, 1, "batch_norm", weight_norm=4.0, grad_norm=1e6, update_ratio=0.5, activation_std=1.0))
    assert report(rows)[1] == []
    rows[1]["type"] = "linear"  # the same numbers on a weight matrix are findings
    warnings = report(rows)[1]
    assert len(warnings) == 1 and "probably too high" in warnings[0]
    rows[0]["grad_norm"] = 1e6
    assert any(w.startswith("exploding gradients") for w in report(rows)[1])


def test_zero_weights_give_an_infinite_update_ratio_without_a_divergence_warning():
    X, y = blobs(64)
    net = build(["linear:4", "relu", "linear:3"])
    net.layers[2].params["weight"][...] = 0.0
    diag = Diagnostics(net, X, update_samples=1)
    train_epoch(net, OPTIMIZERS["sgd"](lr=0.1), diag, X, y)
    rows = by_layer(diag.end_epoch(1))
    assert rows[2]["update_ratio"] == float("inf") and rows[2]["weight_norm"] > 0
    assert not [w for w in report(list(rows.values()))[1] if "diverged" in w or "layer 2" in w]


def test_non_finite_values_are_reported_as_divergence():
    rows = history([0.0])
    rows[2]["weight_norm"] = float("nan")
    warnings = report(rows)[1]
    assert warnings == [
        (
            "layer 2 (linear): the weight norm is nan — training diverged; lower optimizer.lr, use data.scale:"
            " standardize, or set train.clip_grad_norm"
        )
    ]


def test_healthy_network_trained_a_few_epochs_gives_no_warnings(tmp_path):
    X, y = blobs(480, spread=0.8)
    net = build(["linear:32", "relu", "linear:16", "tanh", "linear:3"], seed=2)
    opt = OPTIMIZERS["sgd"](lr=0.05, momentum=0.9)
    diag = Diagnostics(net, X[:256], tmp_path)
    for epoch in (1, 2, 3):
        train_epoch(net, opt, diag, X, y)
        diag.end_epoch(epoch)
    diag.close()
    table, warnings = report(read_diagnostics(tmp_path))
    assert warnings == []
    rows = by_layer(table)
    assert rows[1]["dead_fraction"] < 0.2 and rows[3]["saturated_fraction"] < 0.1
    for i in (0, 2, 4):
        assert 1e-4 < rows[i]["update_ratio"] < 1e-1
    # And it did learn: the training accuracy is high.
    assert np.mean(net.predict(X).argmax(1) == y) > 0.9
    lines = format_table(table)
    assert lines[0].split() == [
        "layer",
        "type",
        "weight_norm",
        "grad_norm",
        "update_ratio",
        "dead",
        "saturated",
        "act_mean",
        "act_std",
    ]
    assert lines[2].split()[:3] == ["1", "relu", "-"] and lines[2].split()[5].endswith("%")
    assert len({len(line) for line in lines}) == 1 and len(lines) == 6  # aligned columns


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_huge_learning_rate_kills_relus_and_is_flagged_where_a_normal_one_is_quiet(seed):
    """What `nntrain inspect` must catch: big steps push the second relu layer's units off for good."""
    X, y = blobs(256)
    findings = {}
    for lr in (5.0, 0.05):
        net = build(["linear:32", "relu", "linear:32", "relu", "linear:3"], seed=seed)
        opt = OPTIMIZERS["sgd"](lr=lr)
        diag = Diagnostics(net, X)
        with np.errstate(over="ignore", invalid="ignore"):
            for epoch in (1, 2, 3):
                train_epoch(net, opt, diag, X, y)
                rows = diag.end_epoch(epoch)
        findings[lr] = (by_layer(rows)[3]["dead_fraction"], report(rows)[1])
    dead, warnings = findings[5.0]
    assert dead > 0.9
    assert any(w.startswith(f"layer 3 (relu): {dead:.0%} of units are dead") for w in warnings)
    dead, warnings = findings[0.05]
    assert dead < 0.2 and warnings == []


def test_inspect_returns_json_ready_output(tmp_path):
    X, _ = blobs(64)
    net = build(["linear:4", "relu", "linear:3"])
    net.layers[0].params["bias"][:] = -1e3
    diag = Diagnostics(net, X, tmp_path)
    for epoch in (1, 2):
        diag.end_epoch(epoch)
    diag.close()
    result = dg.inspect(tmp_path, epoch=1)
    assert result["epoch"] == 1 and result["epochs"] == [1, 2] and len(result["layers"]) == 3
    assert result["layers"][0]["grad_norm"] is None  # no steps were taken
    assert any("100% of units are dead" in w for w in result["warnings"])
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    with pytest.raises(NntrainError, match="epoch 5"):
        dg.inspect(tmp_path, epoch=5)


# ---------------------------------------------------------------- the probe batch of an experiment


def test_probe_batch_takes_spread_rows_of_the_val_split_or_train_without_one():
    exp = prepare(cfg.load_config(None, [], raw=small_config()))
    n_val = len(exp.splits["val"])
    state = exp.rngs["train"].bit_generator.state
    probe = dg.probe_batch(exp)
    assert exp.rngs["train"].bit_generator.state == state
    assert probe.shape == (n_val, 2) and probe.dtype == exp.dtype
    np.testing.assert_array_equal(probe, exp.arrays("val")[0])  # fewer than PROBE_ROWS: all of them
    small = dg.probe_batch(exp, rows=10)
    positions = np.linspace(0, n_val - 1, 10).round().astype(int)
    np.testing.assert_array_equal(small, exp.arrays("val")[0][positions])
    assert positions[-1] == n_val - 1
    exp = prepare(cfg.load_config(None, ["data.split.val=0"], raw=small_config()))
    probe = dg.probe_batch(exp)
    n_train = len(exp.splits["train"])
    assert probe.shape == (min(n_train, dg.PROBE_ROWS), 2)
    np.testing.assert_array_equal(probe[0], exp.arrays("train")[0][0])
    np.testing.assert_array_equal(probe[-1], exp.arrays("train")[0][-1])


# ---------------------------------------------------------------- the gradient reaching each step of a sequence


def sequence_config(cell: str, **train) -> dict:
    return small_config(
        data={"dataset": "adding", "options": {"samples": 300, "length": 30}, "scale": "none"},
        model={"layers": [{cell: {"units": 8, "output": "last"}}, {"linear": 1}]},
        loss="mse",
        optimizer={"lr": 0.05},
        train={"epochs": 2, "batch_size": 32, "diagnostics": True, **train},
    )


def test_steps_file_holds_the_input_gradient_of_every_step_as_computed_by_hand(tmp_path):
    from nntrain.api import fit

    from nntrain.api import load_run

    fit(cfg.load_config(None, [], raw=sequence_config("rnn")), runs_root=tmp_path)
    run = next(tmp_path.iterdir())
    steps = dg.read_steps(run)
    assert [(r["epoch"], r["step"]) for r in steps] == [(e, t) for e in (1, 2) for t in range(30)]
    # By hand, from the final weights (the last checkpoint is epoch 2's): the same probe rows and targets.
    exp = load_run(run, "last")
    X, t, _ = dg.probe_rows(exp)
    net = exp.network
    net.loss.forward(net.forward(net.as_samples(X)), t)
    dx = net.backward(net.loss.backward(), input_grad=True)
    expected = np.sqrt((dx.astype(np.float64) ** 2).sum(axis=2).mean(axis=0))
    got = np.array([r["input_grad_norm"] for r in steps if r["epoch"] == 2])
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_a_vanishing_gradient_over_time_is_shown_and_warned(tmp_path):
    diag_rows = [{"epoch": 1, "step": t, "input_grad_norm": 10.0 ** (t - 9)} for t in range(10)]
    warnings = dg._step_warnings([r["input_grad_norm"] for r in diag_rows])
    assert len(warnings) == 1 and "vanishes over the 10 steps" in warnings[0] and "1e+09x smaller" in warnings[0]
    assert dg._step_warnings([1.0, 0.5, 2.0]) == [] and dg._step_warnings([]) == []
    lines = dg.format_steps([r["input_grad_norm"] for r in diag_rows], shown=3)
    assert lines[1].split(", ") == ["  step 0: 1e-09", "step 4: 1e-05", "step 9: 1"]


def test_diagnostics_over_steps_change_nothing_in_training(tmp_path):
    from nntrain.api import fit

    with_steps = fit(cfg.load_config(None, [], raw=sequence_config("lstm")), runs_root=tmp_path / "a")
    without = fit(cfg.load_config(None, [], raw=sequence_config("lstm", diagnostics=False)), runs_root=tmp_path / "b")
    assert with_steps["final"] == without["final"]
    assert not list((tmp_path / "b").glob("*/diagnostics_steps.csv"))
    assert len(list((tmp_path / "a").glob("*/diagnostics_steps.csv"))) == 1


def test_flat_inputs_have_no_steps_file(tmp_path):
    from nntrain.api import fit

    fit(cfg.load_config(None, [], raw=small_config(train={"epochs": 1, "batch_size": 32, "diagnostics": True})), runs_root=tmp_path)
    run = next(tmp_path.iterdir())
    assert (run / "diagnostics.csv").exists() and not (run / "diagnostics_steps.csv").exists()
    assert dg.inspect(run)["steps"] == []


def test_the_gradient_per_step_counts_only_the_probe_rows_that_are_that_long(tmp_path):
    """With lengths, step t's norm is over the rows that have a step t; a step no row reaches has none ('-')."""
    rng = np.random.default_rng(0)
    lengths = np.array([2, 4, 4, 6] * 10)  # no sequence uses the last two of its 8 steps
    X = rng.normal(size=(40, 8, 1))
    np.savez(tmp_path / "seq.npz", X=X, y=X[:, :2, 0].sum(axis=1), lengths=lengths)
    from nntrain.api import fit, load_run

    raw = small_config(data={"dataset": str(tmp_path / "seq.npz"), "options": {}, "split": {"val": 0.25, "test": 0.0}},
                       model={"layers": [{"rnn": {"units": 4, "output": "last"}}, {"linear": 1}]}, loss="mse",
                       train={"epochs": 1, "batch_size": 8, "diagnostics": True})  # fmt: skip
    fit(cfg.load_config(None, [], raw=raw), run_dir=tmp_path / "run")
    steps = [r["input_grad_norm"] for r in dg.read_steps(tmp_path / "run")]
    assert len(steps) == 8 and all(np.isfinite(steps[:6])) and all(np.isnan(steps[6:]))
    exp = load_run(tmp_path / "run", "last")
    X, t, probe_lengths = dg.probe_rows(exp)
    net = exp.network
    net.loss.forward(net.forward(net.as_samples(X), lengths=probe_lengths), t)
    dx = net.backward(net.loss.backward(), input_grad=True)
    longest = probe_lengths > 4  # step 5: only the rows of length 6
    np.testing.assert_allclose(steps[5], np.sqrt((dx[longest, 5] ** 2).sum(axis=1).mean()), rtol=1e-6)
    inspected = dg.inspect(tmp_path / "run")
    assert inspected["steps"][6:] == [None, None]
    assert dg.format_steps(inspected["steps"], shown=8)[1].endswith("step 6: -, step 7: -")
