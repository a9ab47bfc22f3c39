"""`export`: ONNX models that predict what `nntrain predict` prints, and safetensors in torch.nn's layout.

Every example config trains for an epoch or two on a small version of its data (the model's
quality does not matter here, only that two implementations agree), then its ONNX model runs
under onnxruntime on held-back rows (the test split, else the validation split) and must give
`predict_run`'s numbers within 1e-5. The mnist configs train on a stand-in of the same shape
(the bundled digits drawn as 28x28 images, as tests/test_configs.py does).
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import onnxruntime

from nntrain.api import fit, load_run, predict_run
from nntrain.data.table import MISSING
from nntrain.errors import NntrainError
from nntrain.report.export import export_run

from conftest import install_mnist_stand_ins

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
TOLERANCE = 1e-5

# config -> overrides that make it train in a second or two: an epoch or two, fewer samples, narrower layers.
FAST = {
    "adding_lstm": ["train.epochs=1", "data.options.samples=300", "data.options.length=12"],
    "adding_rnn": ["train.epochs=1", "data.options.samples=300", "data.options.length=12"],
    "breast_cancer": ["train.epochs=2"],
    "char_lm": ["train.epochs=1", "data.text.length=12", "model.layers.1.units=16"],
    "cnn_fashion": ["train.epochs=1", "model.layers.0.filters=4", "model.layers.2.filters=4",
                    "model.layers.7.units=16"],
    "diabetes": ["train.epochs=2"],
    "digits": ["train.epochs=2"],
    "fullbatch": ["train.epochs=3"],
    "image_folder": ["train.epochs=2"],
    "iris": ["train.epochs=3"],
    "lenet_digits": ["train.epochs=1"],
    "lenet_mnist": ["train.epochs=1"],
    "quickstart": ["train.epochs=2"],
    "relu_adam": ["train.epochs=2", "data.options.samples=300"],
    "sigmoid_mse": ["train.epochs=2", "data.options.samples=300"],
    "sine_forecast": ["train.epochs=1", "data.options.samples=300"],
    "sine_regression": ["train.epochs=2", "data.options.samples=300"],
    "spirals": ["train.epochs=2", "data.options.samples=600"],
    "svm_hinge": ["train.epochs=2"],
    "text_reviews": ["train.epochs=2"],
    "wine": ["train.epochs=3"],
    "tables/customers_raw": ["train.epochs=3"],
    "tables/customers": ["train.epochs=3"],
}  # fmt: skip


def test_every_example_config_is_exported():
    """A new config in configs/ (or configs/tables/) joins FAST, so its export is checked too."""
    found = {str(p.relative_to(CONFIGS).with_suffix("")) for p in [*CONFIGS.glob("*.yaml"), *CONFIGS.glob("tables/*.yaml")]}
    assert found == set(FAST)


@pytest.fixture
def stand_ins(tmp_path, monkeypatch):
    """mnist and fashion_mnist in a cache of their own: 300 bundled digits as (28, 28) uint8 images (each pixel
    3x3, a 2-pixel border, a little noise), 240 for training and 60 for testing."""
    install_mnist_stand_ins(tmp_path, monkeypatch, rows=300, train=240, shuffle=False)


def train(config, tmp_path, overrides=()) -> Path:
    summary = fit(config, overrides=list(overrides), runs_root=tmp_path / "runs")
    assert summary["status"] == "completed"
    return next((tmp_path / "runs").iterdir())


def held_back(exp) -> np.ndarray:
    rows = exp.splits["test"]
    return rows if len(rows) else exp.splits["val"]


def session(path):
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def predicted(run, path) -> np.ndarray:
    """predict_run's numbers (its JSON Lines, which keep every digit) per row; NaN for a row it refused."""
    exp = load_run(run, with_data=False)
    text, _ = predict_run(run, path, as_json=True)
    records = [json.loads(line) for line in text.splitlines()]
    skip = {"line", "row", "index", "path", "class"}  # where the row is, its id and class: not numbers
    if exp.config.data.columns is not None and exp.config.data.columns.id is not None:
        skip.add(exp.config.data.columns.id)
    width = len(next(r for r in records if "error" not in r).keys() - skip)
    return np.array([[np.nan] * width if "error" in r else [v for k, v in r.items() if k not in skip] for r in records])


def raw_rows(exp, rows) -> np.ndarray:
    """The raw (unscaled) features of dataset rows, float64: the values a user would hand to predict."""
    return exp.scaler.inverse(np.asarray(exp.dataset.X[rows], dtype=np.float64))


def assert_close(onnx_out: np.ndarray, expected: np.ndarray):
    """Equal NaN rows, and |difference| <= 1e-5, relative for values beyond 1 (float32 holds ~7 digits: 150 to 1.5e-5).

    Returns the largest absolute difference."""
    assert onnx_out.shape == expected.shape, (onnx_out.shape, expected.shape)
    assert (np.isnan(onnx_out) == np.isnan(expected)).all()
    if not np.isfinite(expected).any():
        return 0.0
    difference = np.abs(onnx_out - expected)
    assert np.nanmax(difference / np.maximum(1, np.abs(expected))) <= TOLERANCE, np.nanmax(difference)
    return float(np.nanmax(difference))


def table_case(run, tmp_path):
    """Held-back rows as a CSV of the raw feature columns: predict on it, and the ONNX model on the same values."""
    exp = load_run(run, with_data=True)
    X = raw_rows(exp, held_back(exp))
    columns = exp.dataset.encoder.columns
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([[repr(float(v)) for v in row] for row in X])
    feeds = {c: X[:, [j]] for j, c in enumerate(columns)}
    return exp, path, feeds


def array_case(run, tmp_path):
    """Held-back samples as an .npz (X, and lengths when they vary) and as the ONNX model's "x" / "lengths"."""
    exp = load_run(run, with_data=True)
    rows = held_back(exp)
    shape = exp.network.in_shape if len(exp.network.in_shape) > 1 else exp.dataset.sample_shape
    X = raw_rows(exp, rows).astype(np.float32)  # float32 values: the same numbers for both
    path = tmp_path / "rows.npz"
    np.savez(path, X=X.reshape(len(X), *shape))
    feeds = {"x": X.reshape(len(X), *shape)}
    if any(layer.uses_lengths for layer in exp.network.chain):
        feeds["lengths"] = np.full(len(X), shape[0], dtype=np.int64)
    return exp, path, feeds


def image_case(run, tmp_path):
    """The image folder itself: predict reads it, and the ONNX model the pixels nntrain reads from it."""
    from nntrain.data.inputs import read_inputs

    exp = load_run(run, with_data=False)
    folder = ROOT / "datasets" / "images" / "shapes"
    inputs = read_inputs(folder, exp.dataset.sample_shape, exp.config.data.image, with_target=False)
    return exp, folder, {"x": inputs.X.reshape(len(inputs.X), *exp.dataset.sample_shape).astype(np.float32)}


def text_case(run, tmp_path):
    """Held-back reviews as a CSV of the text column; the ONNX model gets their token ids and lengths."""
    exp = load_run(run, with_data=False)
    source = list(csv.DictReader(open(ROOT / "datasets" / "text" / "reviews.csv")))
    texts = [r["review"] for r in source[-60:]]  # the file's last rows (the split is random: most are held back)
    path = tmp_path / "rows.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["review"])
        writer.writerows([[t] for t in texts])
    ids, lengths = exp.dataset.vocabulary.encode_texts(texts)
    return exp, path, {"tokens": ids, "lengths": lengths}


KIND = {
    "adding_lstm": array_case, "adding_rnn": array_case, "sine_forecast": array_case, "lenet_digits": array_case,
    "lenet_mnist": array_case, "cnn_fashion": array_case, "digits": array_case, "image_folder": image_case, "text_reviews": text_case,
}  # fmt: skip
AGREEMENT = {}  # config -> max |ONNX - predict|, printed at the end (pytest -s) for the record


@pytest.mark.parametrize("name", sorted(set(FAST) - {"char_lm", "tables/customers_raw", "tables/customers"}))
def test_onnx_predicts_what_predict_prints(name, tmp_path, request):
    if name in ("lenet_mnist", "cnn_fashion"):
        request.getfixturevalue("stand_ins")
    run = train(CONFIGS / f"{name}.yaml", tmp_path, FAST[name])
    exp, path, feeds = KIND.get(name, table_case)(run, tmp_path)
    assert predict_run(run, path)[1] == []  # no row refused
    result = export_run(run, "onnx", out=tmp_path / "model.onnx")
    assert sorted(result["inputs"]) == sorted(feeds)
    (out,) = session(result["path"]).run(None, feeds)
    AGREEMENT[name] = assert_close(np.asarray(out, dtype=np.float64).reshape(len(out), -1), predicted(run, path))


def test_onnx_table_of_raw_categories(tmp_path):
    """customers: string categories one-hot encoded inside the model, from the file's last rows as they are."""
    run = train(CONFIGS / "tables" / "customers.yaml", tmp_path, FAST["tables/customers"])
    exp = load_run(run, with_data=False)
    with gzip.open(ROOT / "datasets" / "tables" / "customers.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    rows = [r for r in csv.reader(lines[-60:]) if "?" not in r]  # the run drops rows with an unknown region
    header = next(csv.reader([lines[0]]))
    path = tmp_path / "rows.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    assert predict_run(run, path)[1] == []
    feeds = {}
    for column in exp.dataset.encoder.columns:
        cells = [r[header.index(column)] for r in rows]
        categorical = column in exp.dataset.encoder.categories
        feeds[column] = np.array(cells, dtype=object if categorical else np.float64).reshape(-1, 1)
    result = export_run(run, "onnx", out=tmp_path / "model.onnx")
    (out,) = session(result["path"]).run(None, feeds)
    AGREEMENT["tables/customers"] = assert_close(out.astype(np.float64), predicted(run, path))


def test_onnx_table_with_categories_gaps_and_unknowns(tmp_path):
    """customers_raw: a category column given as strings, number gaps as NaN, markers such as NA or ' ' as missing
    categories, indicators and median imputation folded in; an unknown category (refused) gives NaN."""
    run = train(CONFIGS / "tables" / "customers_raw.yaml", tmp_path, FAST["tables/customers_raw"])
    exp = load_run(run, with_data=False)
    lines = (ROOT / "datasets" / "tables" / "customers_raw.csv").read_text().splitlines()
    rows = list(csv.reader(lines[-80:]))
    header = next(csv.reader([lines[0]]))
    region, spend, tenure = header.index("region"), header.index("monthly_spend"), header.index("tenure_months")
    rows[0][region], rows[1][region], rows[2][region] = "", "NA", "nUlL"  # missing categories
    rows[3][spend], rows[4][tenure] = "", "?"  # missing numbers
    rows[5][region] = "09"  # a region never seen in training: predict refuses the row
    path = tmp_path / "rows.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    problems = predict_run(run, path)[1]
    assert len(problems) == 1 and "09" in problems[0]
    expected = predicted(run, path)
    feeds = {}
    for column in exp.dataset.encoder.columns:
        cells = [r[header.index(column)] for r in rows]
        if column in exp.dataset.encoder.categories:
            feeds[column] = np.array(cells, dtype=object).reshape(-1, 1)
        else:
            feeds[column] = np.array([np.nan if c.strip().lower() in MISSING else float(c) for c in cells]).reshape(-1, 1)
    result = export_run(run, "onnx", out=tmp_path / "model.onnx")
    assert result["inputs"] == exp.dataset.encoder.columns
    (out,) = session(result["path"]).run(None, feeds)
    assert np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, axis=0)).all()
    AGREEMENT["tables/customers_raw"] = assert_close(out.astype(np.float64), expected)
    sidecar = json.loads(Path(result["sidecar"]).read_text())
    assert sidecar["classes"] == exp.dataset.classes and sidecar["nntrain_version"]
    assert [c["name"] for c in sidecar["preprocessing"]["columns"]] == exp.dataset.encoder.columns
    assert {i["name"]: i["dtype"] for i in sidecar["inputs"]}["region"] == "string"


def test_onnx_language_model_gives_each_steps_probabilities(tmp_path):
    """char_lm (predict refuses language models): the ONNX model against the network's own predict."""
    run = train(CONFIGS / "char_lm.yaml", tmp_path, FAST["char_lm"])
    exp = load_run(run, with_data=True)
    rows = exp.splits["val"][:40]
    ids = np.asarray(exp.dataset.X[rows]).astype(np.int64)
    expected = exp.network.predict(ids.astype(np.float32))
    result = export_run(run, "onnx", out=tmp_path / "lm.onnx")
    feeds = {"tokens": ids, "lengths": np.full(len(ids), ids.shape[1], dtype=np.int64)}
    (out,) = session(result["path"]).run(None, feeds)
    AGREEMENT["char_lm"] = assert_close(out.astype(np.float64), expected.astype(np.float64))
    sidecar = json.loads(Path(result["sidecar"]).read_text())
    assert sidecar["preprocessing"]["vocabulary"] == exp.dataset.vocabulary.tokens


# --- variable lengths and the layers no example config uses --------------------------------------


def sequences(tmp_path, n=160, steps=9, features=3):
    """An .npz of sequences of lengths 1..steps (zeros after them) and a class each; and X with NaN padding,
    for the ONNX model, which must never read it either."""
    rng = np.random.default_rng(5)
    lengths = rng.integers(1, steps + 1, n)
    X = rng.normal(size=(n, steps, features)).astype(np.float32)
    y = (X[:, 0, 0] > 0).astype(np.int64)
    padding = np.arange(steps)[None, :] >= lengths[:, None]
    X[padding] = 0
    path = tmp_path / "seq.npz"
    np.savez(path, X=X, y=y, lengths=lengths)
    X = X.copy()
    X[padding] = np.nan
    return path, X, lengths


LAYER_STACKS = {
    "bidirectional_lstm_sequence": ["lstm: {units: 5, bidirectional: true}", "layer_norm", "time_pool: {mode: mean}"],
    "bidirectional_gru_last": ["batch_norm", "gru: {units: 4, bidirectional: true, output: last}", "dropout"],
    "relu_rnn_time_pool_last": ["rnn: {units: 4, activation: relu}", "time_pool: {mode: last}"],
    "conv1d_pools": ["conv1d: {filters: 4, kernel_size: 3, padding: same}", "leaky_relu", "batch_norm",
                     "max_pool1d: {kernel_size: 2, stride: 1}", "conv1d: {filters: 3, kernel_size: 2, stride: 2}",
                     "avg_pool1d: 2", "gaussian_noise", "time_pool: {mode: max}"],
}  # fmt: skip


@pytest.mark.parametrize("stack", sorted(LAYER_STACKS))
def test_onnx_variable_length_sequences(stack, tmp_path):
    """Recurrent and time layers with sequences of lengths 1..T: `output: last` is each one's last real step."""
    path, X, lengths = sequences(tmp_path)
    layers = "\n".join(f"    - {spec}" for spec in LAYER_STACKS[stack])
    config = tmp_path / "seq.yaml"
    config.write_text(
        f"name: seq\ndata:\n  dataset: {path}\n  split: {{val: 0.2, test: 0.2}}\n  scale: standardize\n"
        f"model:\n  layers:\n{layers}\n    - linear: 2\n    - softmax\nloss: cross_entropy\n"
        "optimizer: {name: adam, lr: 0.01}\ntrain: {epochs: 2, batch_size: 16}\n"
    )
    run = train(config, tmp_path)
    assert predict_run(run, path)[1] == []
    result = export_run(run, "onnx", out=tmp_path / "seq.onnx")
    (out,) = session(result["path"]).run(None, {"x": X, "lengths": lengths.astype(np.int64)})
    AGREEMENT[stack] = assert_close(out.astype(np.float64), predicted(run, path))


def test_onnx_regression_in_target_units(tmp_path):
    """data.scale_target: the model returns float64 values in the target's units, as predict prints them."""
    run = train(CONFIGS / "diabetes.yaml", tmp_path, ["train.epochs=2", "data.scale_target=true"])
    exp, path, feeds = table_case(run, tmp_path)
    assert exp.target_scaler.offset is not None
    result = export_run(run, "onnx", out=tmp_path / "diabetes.onnx")
    assert result["outputs"] == ["values"]
    (out,) = session(result["path"]).run(None, feeds)
    assert out.dtype == np.float64
    expected = predicted(run, path)
    assert np.abs(expected).max() > 50  # target units (the disease progression score), not standardized
    AGREEMENT["diabetes, scale_target"] = assert_close(out, expected)


def test_onnx_missing_number_without_imputation_gives_nan(tmp_path):
    """A run that does not impute: predict refuses a row with a gap, and the model gives NaN for it."""
    run = train(CONFIGS / "iris.yaml", tmp_path, FAST["iris"])
    exp, path, feeds = table_case(run, tmp_path)
    column = exp.dataset.encoder.columns[1]
    feeds[column][2, 0] = np.nan
    out = session(export_run(run, "onnx", out=tmp_path / "iris.onnx")["path"]).run(None, feeds)[0]
    assert np.isnan(out[2]).all() and np.isfinite(np.delete(out, 2, axis=0)).all()


# --- every layer, straight from the engine ---------------------------------------------------------


def engine_case(specs, in_shape, loss="cross_entropy", lengths=None, ids=None, seed=3):
    """A Network of `specs` (layer name, options) with random parameters and running statistics, its ONNX graph
    (inputs x and, with lengths, lengths), and the max difference of onnxruntime's outputs from network.predict."""
    from nntrain.engine.graph import Graph, network_to_graph
    from nntrain.engine.layers import LAYERS
    from nntrain.engine.losses import LOSSES
    from nntrain.engine.network import Network
    from nntrain.report.onnx_model import to_model

    rng = np.random.default_rng(seed)
    layers = [LAYERS[name](**options) for name, options in specs]
    network = Network(layers, LOSSES[loss](), in_shape, np.float32, rng, init="xavier", init_scale=1.0)
    for layer in layers:  # trained-looking statistics and scales, not the initial 0 / 1
        for key, value in {**layer.state, **{k: v for k, v in layer.params.items() if k in layer.scales}}.items():
            value[...] = rng.uniform(0.5, 1.5, value.shape) if key != "running_mean" else rng.normal(size=value.shape)
    n = 7
    x = rng.integers(0, ids, (n, *in_shape)) if ids else rng.normal(size=(n, *in_shape)).astype(np.float32)
    graph = Graph(np.float32)
    name = graph.input("x", np.int64 if ids else np.float32, (None, *in_shape))
    feeds = {"x": x.astype(np.int64) if ids else x}
    lengths_name = None
    if lengths is not None:
        lengths_name = graph.input("lengths", np.int64, (None,))
        feeds["lengths"] = np.asarray(lengths, dtype=np.int64)
    graph.output("y", network_to_graph(network, graph, name, lengths_name), np.float32, (None, *network.out_shape))
    model = to_model(graph, "engine")
    out = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    expected = network.predict(x.astype(np.float32), lengths=None if lengths is None else np.asarray(lengths))
    assert out.shape == expected.shape
    return float(np.abs(out - expected).max())


ENGINE_CASES = {
    "flat batch_norm, leaky_relu, sigmoid before binary_cross_entropy": (
        [("linear", {"units": 6}), ("batch_norm", {}), ("leaky_relu", {"slope": 0.2}), ("gaussian_noise", {}),
         ("identity", {}), ("linear", {"units": 1}), ("sigmoid", {})], (5,), "binary_cross_entropy"),
    "conv2d strided, dilated, even 'same'; pools with padding": (
        [("conv2d", {"filters": 3, "kernel_size": [2, 4], "padding": "same"}), ("tanh", {}),
         ("max_pool2d", {"kernel_size": 3, "stride": 2, "padding": 1}),
         ("conv2d", {"filters": 4, "kernel_size": 3, "stride": 2, "dilation": 1, "padding": 1, "bias": False}),
         ("avg_pool2d", {"kernel_size": 2, "stride": 1, "padding": 1}), ("batch_norm", {}),
         ("conv2d", {"filters": 2, "kernel_size": 2, "dilation": 2}), ("global_avg_pool", {}), ("linear", {"units": 3}),
         ("softmax", {})], (2, 13, 11), "mse"),
    "embedding with padding_index, bidirectional rnn sequence, layer_norm, time_pool last": (
        [("embedding", {"vocabulary": 11, "dim": 4, "padding_index": 0}), ("rnn", {"units": 3, "bidirectional": True}),
         ("layer_norm", {}), ("time_pool", {"mode": "last"}), ("linear", {"units": 2})], (6,), "cross_entropy",
        None, 11),
    "gru sequence with lengths, conv1d dilated, avg_pool1d padded, max_pool1d": (
        [("gru", {"units": 4}), ("conv1d", {"filters": 3, "kernel_size": 2, "dilation": 2, "padding": 1}),
         ("avg_pool1d", {"kernel_size": 2, "padding": 1}), ("max_pool1d", {"kernel_size": 2}), ("flatten", {}),
         ("linear", {"units": 2})], (8, 3), "mse", [8, 1, 5, 3, 8, 2, 7]),
    "bidirectional lstm last with lengths, dropout": (
        [("lstm", {"units": 5, "bidirectional": True, "output": "last"}), ("dropout", {"p": 0.3}),
         ("linear", {"units": 3})], (6, 2), "cross_entropy", [6, 1, 2, 3, 4, 5, 6]),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ENGINE_CASES))
def test_engine_graph_matches_network_predict(case):
    difference = engine_case(*ENGINE_CASES[case])
    AGREEMENT[f"engine: {case[:28]}"] = difference
    assert difference <= TOLERANCE


def test_every_layer_declares_its_export():
    """Each registered layer says how to compute it as a graph and which torch module it is."""
    from nntrain.engine.layers import LAYERS, Layer

    lacking = [name for name, cls in LAYERS.items() if cls.to_graph is Layer.to_graph or cls.torch_module is Layer.torch_module]
    assert lacking == []


# --- safetensors ---------------------------------------------------------------------------------


def test_safetensors_keys_and_layouts_as_torch_nn(tmp_path):
    """Keys i.weight / i.bias of the Sequential; Linear's weight (out, in): y = x W^T + b gives nntrain's logits."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    run = train(CONFIGS / "quickstart.yaml", tmp_path, FAST["quickstart"])
    result = export_run(run, "safetensors", out=tmp_path / "q.safetensors")
    tensors = load_file(result["path"])
    assert sorted(tensors) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert tensors["0.weight"].shape == (64, 2) and tensors["2.weight"].shape == (3, 64)
    exp = load_run(run, with_data=False)
    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    h = np.maximum(x @ tensors["0.weight"].T + tensors["0.bias"], 0)  # nn.Linear, nn.ReLU, nn.Linear
    logits = h @ tensors["2.weight"].T + tensors["2.bias"]
    np.testing.assert_allclose(logits, exp.network.forward(x), rtol=1e-5, atol=1e-6)
    with safe_open(result["path"], "np") as f:
        metadata = f.metadata()
    assert "nn.Linear(2, 64),  # 0" in metadata["torch_module"] and "nn.Softmax(dim=-1)(model(x))" in metadata["torch_module"]
    assert metadata["nntrain_version"] and json.loads(metadata["classes"]) == exp.dataset.classes


def test_safetensors_recurrent_conv_and_batch_norm_keys(tmp_path):
    """torch's names for an LSTM (weight_ih_l0, ..._reverse), Conv1d's (filters, C, k), BatchNorm1d's running stats;
    parameter-free layers keep their index."""
    from safetensors.numpy import load_file

    path, _, _ = sequences(tmp_path)
    config = tmp_path / "seq.yaml"
    config.write_text(
        f"name: seq\ndata: {{dataset: {path}, split: {{val: 0.2, test: 0.2}}}}\n"
        "model:\n  layers: [{conv1d: {filters: 4, kernel_size: 3}}, relu, batch_norm,"
        " {lstm: {units: 5, bidirectional: true, output: last}}, {linear: 2}]\n"
        "loss: cross_entropy\noptimizer: {name: adam}\ntrain: {epochs: 1}\n"
    )
    run = train(config, tmp_path)
    exp = load_run(run, with_data=False)
    tensors = load_file(export_run(run, "safetensors", out=tmp_path / "s.safetensors")["path"])
    lstm = exp.network.layers[3]
    assert tensors["0.weight"].shape == (4, 3, 3)
    assert {k for k in tensors if k.startswith("2.")} == {"2.weight", "2.bias", "2.running_mean", "2.running_var",
                                                         "2.num_batches_tracked"}
    np.testing.assert_array_equal(tensors["2.running_var"], exp.network.layers[2].state["running_var"])
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        for suffix in ("", "_reverse"):
            np.testing.assert_array_equal(tensors[f"3.{name}_l0{suffix}"], lstm.params[name + suffix])
    assert tensors["3.weight_ih_l0"].shape == (20, 4) and tensors["4.weight"].shape == (2, 10)


# --- errors --------------------------------------------------------------------------------------


@pytest.fixture
def quick_run(tmp_path):
    return train(CONFIGS / "quickstart.yaml", tmp_path, ["train.epochs=1", "data.options.samples=150"])


def test_export_errors(quick_run, tmp_path, monkeypatch):
    with pytest.raises(NntrainError, match="unknown export format 'tflite'; allowed: onnx, safetensors"):
        export_run(quick_run, "tflite")
    with pytest.raises(NntrainError, match="unknown checkpoint 'first'; allowed: best, last"):
        export_run(quick_run, "onnx", "first")
    with pytest.raises(NntrainError, match="not-a-run"):
        export_run(tmp_path / "not-a-run", "onnx")
    with pytest.raises(NntrainError, match="is a folder"):
        export_run(quick_run, "onnx", out=tmp_path)
    with pytest.raises(NntrainError, match="inside the run directory"):
        export_run(quick_run, "onnx", out=quick_run / "model.onnx")
    with pytest.raises(NntrainError, match="cannot write"):
        export_run(quick_run, "onnx", out=tmp_path / "no" / "such" / "folder" / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    with pytest.raises(NntrainError, match=r"pip install 'nntrain\[export\]'"):
        export_run(quick_run, "onnx")


def test_export_names_a_layer_it_cannot_export(quick_run, tmp_path, monkeypatch):
    from nntrain.engine.layers import Layer, ReLU

    monkeypatch.setattr(ReLU, "to_graph", Layer.to_graph)
    with pytest.raises(NntrainError, match=r"layer 1 \(relu\).*cannot be exported"):
        export_run(quick_run, "onnx", out=tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_default_out_is_the_run_name_in_the_current_directory(quick_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = export_run(quick_run, "safetensors", "last")
    assert result["path"] == f"{quick_run.name}.safetensors" and result["sidecar"] == f"{quick_run.name}.safetensors.json"
    assert result["checkpoint"] == "last" and (tmp_path / result["path"]).exists()
    sidecar = json.loads((tmp_path / result["sidecar"]).read_text())
    assert sidecar["epoch"] == 1 and "model = nn.Sequential(" in sidecar["torch_module"]
    assert not any(p.suffix in (".onnx", ".safetensors") or p.name.endswith("safetensors.json") for p in quick_run.rglob("*"))


def test_zz_agreement_report():
    """The measured agreement of the tests above (shown with pytest -s)."""
    for name, difference in sorted(AGREEMENT.items()):
        print(f"{name:36s} max |onnx - predict| = {difference:.2e}")
