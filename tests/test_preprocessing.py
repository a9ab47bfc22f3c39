"""User CSV preprocessing carried through fit, eval and predict: text columns, missing values, scaling."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import yaml

from nntrain import config as cfg
from nntrain.data.dataset import Scaler
from nntrain.data.files import FeatureEncoder, read_table
from nntrain.errors import NntrainError
from nntrain.train.experiment import prepare


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def pets(path, n=200, seed=0, missing_every=0):
    """Two numeric features, a text feature 'colour' that decides the label with x, a string label."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        colour = ["red", "green", "blue"][i % 3]
        x = rng.normal()
        label = "cat" if (x > 0) == (colour == "red") else "dog"
        weight = "" if missing_every and i % missing_every == 0 else f"{rng.normal():.3f}"
        rows.append([f"{x:.4f}", colour, weight, label])
    return write_csv(path, ["x", "colour", "weight", "kind"], rows)


def test_text_columns_become_one_hot(tmp_path):
    table = read_table(pets(tmp_path / "p.csv"), "kind")
    assert table.encoder.columns == ["x", "colour", "weight"]
    assert table.encoder.categories == {"colour": ["blue", "green", "red"]}
    assert table.encoder.names == ["x", "colour=blue", "colour=green", "colour=red", "weight"]
    assert table.X.shape == (200, 5)
    np.testing.assert_array_equal(table.X[:3, 1:4], [[0, 0, 1], [0, 1, 0], [1, 0, 0]])  # red, green, blue
    assert set(table.y.tolist()) == {"cat", "dog"}


def test_a_stray_word_in_a_numeric_column_is_an_error(tmp_path):
    path = write_csv(tmp_path / "p.csv", ["a", "y"], [["1", "0"], ["2", "1"], ["oops", "0"], ["4", "1"]])
    with pytest.raises(NntrainError, match=r"line 4, column 'a': 'oops' is not a number"):
        read_table(path)


def test_unseen_category_is_an_error_naming_column_and_value(tmp_path):
    encoder = FeatureEncoder(["x", "colour"], {"colour": ["blue", "red"]})
    path = write_csv(tmp_path / "q.csv", ["x", "colour"], [["1", "red"], ["2", "purple"]])
    with pytest.raises(NntrainError) as e:
        read_table(path, encoder=encoder, with_target=False)
    assert e.value.key == "data.unknown"
    assert (
        "q.csv, line 3, column 'colour': category 'purple' was not in the training data (known: blue, red); "
        "set data.unknown: ignore to encode unknown categories as all zeros"
    ) in str(e.value)


def test_encoder_state_round_trip():
    encoder = FeatureEncoder(["a", "b.c", "d"], {"b.c": ["x", "y"]})
    state = {k: np.load(io.BytesIO(_npy(v)), allow_pickle=False) for k, v in encoder.state_dict().items()}
    assert FeatureEncoder.from_state(state) == encoder


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.mark.parametrize("cell", ["", "NA", "n/a", "NaN", "nan", "?", "null", "None"])
def test_missing_cells_are_errors_by_default(tmp_path, cell):
    """Every documented spelling is a missing value; the message no longer quotes the cell."""
    path = write_csv(tmp_path / "m.csv", ["a", "b", "y"], [["1", "2", "0"], ["3", cell, "1"]])
    with pytest.raises(NntrainError) as e:
        read_table(path)
    assert str(e.value).endswith(
        "m.csv, line 3, column 'b': missing value (set data.missing: drop to skip such rows, or impute to fill them; "
        "missing in b 1 row)"
    )


def test_missing_drop_skips_and_counts_rows(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["a", "b", "y"], [["1", "2", "0"], ["3", "", "1"], ["5", "6", "NA"], ["7", "8", "1"]])
    table = read_table(path, missing="drop")
    assert table.dropped == 2
    np.testing.assert_array_equal(table.X, [[1, 2], [7, 8]])


def test_minmax_range():
    X = np.array([[0.0, 10.0], [5.0, 20.0], [10.0, 30.0]])
    scaler = Scaler("minmax", (0.01, 0.99)).fit(X)
    out = scaler.transform(X, np.float64)
    np.testing.assert_allclose(out.min(axis=0), 0.01)
    np.testing.assert_allclose(out.max(axis=0), 0.99)
    np.testing.assert_allclose(scaler.inverse(out), X)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize(
    "scale, dtype, message",
    [
        ([-1e308, 1e308], "float32", "data.scale.range: [-1e+308, 1e+308] gives non-finite scaled values; HIGH − LOW overflows"),
        ([0.0, 5e-324], "float32", "data.scale.range: [0.0, 5e-324] gives non-finite scaled values; HIGH − LOW (5e-324) is too small"),
        ([0.0, 1e39], "float32", "data.scale.range: [0.0, 1e+39] gives non-finite scaled values; a value of input"),
    ],
)
def test_a_scaling_that_overflows_is_refused_without_numpy_warnings(cli, write_config, scale, dtype, message):
    """These printed RuntimeWarnings with source lines and then trained on infinite inputs."""
    config = write_config(dtype=dtype, data={"scale": {"name": "minmax", "range": scale}})
    result = cli("validate", config)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not any(bad in result.output for bad in ("internal error", "Traceback", "Warning")), result.output
    ok = write_config("ok.yaml", dtype="float64", data={"scale": {"name": "minmax", "range": [0.0, 1e39]}})
    assert cli("validate", ok).exit_code == 0  # float64 holds 1e39


@pytest.mark.filterwarnings("error")
def test_a_saved_scaling_that_overflows_is_an_error():
    """A damaged saved scaling (eval, predict): a clean error, not inf inputs and a numpy warning."""
    scaler = Scaler.from_state("standardize", {"data.scale.offset": np.zeros(2), "data.scale.factor": np.array([1.0, 1e-320])})
    with pytest.raises(NntrainError, match=r"data.scale: standardize scaling gives non-finite values; a value of input 1 scales to inf"):
        scaler.transform(np.ones((3, 2)), np.float32)
    with pytest.raises(NntrainError, match="values of input 0 are too far apart"):
        Scaler("standardize").fit(np.array([[-1e308, 0.0], [1e308, 1.0]]))


def test_scale_config_forms():
    base = {"data": {"dataset": "spirals"}, "model": {"layers": [{"linear": 3}]}}
    long = cfg.load_config(None, ["data.scale={name: minmax, range: [0.01, 0.99]}"], raw=json.loads(json.dumps(base)))
    assert long.data.scale.name == "minmax" and long.data.scale.range == [0.01, 0.99]
    short = cfg.load_config(None, ["data.scale=minmax"], raw=json.loads(json.dumps(base)))
    assert short.data.scale.range == [0.0, 1.0]
    for bad in ["data.scale={name: standardize, range: [0, 1]}", "data.scale={name: minmax, range: [1, 0]}"]:
        with pytest.raises(NntrainError, match="data.scale.range"):
            cfg.load_config(None, [bad], raw=json.loads(json.dumps(base)))


def test_scale_target_only_for_regression():
    raw = {"data": {"dataset": "spirals", "scale_target": True}, "model": {"layers": [{"linear": 3}]}}
    with pytest.raises(NntrainError, match="data.scale_target"):
        prepare(cfg.load_config(None, [], raw=raw))


def fit(cli, config_path, run, *args):
    result = cli("fit", config_path, "--run-dir", run, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout), result


def test_csv_with_text_features_trains_evaluates_and_predicts(cli, tmp_path):
    pets(tmp_path / "pets.csv", n=300, missing_every=10)
    config = tmp_path / "pets.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "pets.csv", "target": "kind", "missing": "drop"},
                "model": {"layers": [{"linear": 16}, "relu", {"linear": 2}]},
                "optimizer": {"name": "adam", "lr": 0.02},
                "train": {"epochs": 30, "batch_size": 16},
            }
        )
    )
    summary, result = fit(cli, config, tmp_path / "run")
    assert "dropped 30 rows with missing values" in result.stderr
    assert summary["final"]["test"]["accuracy"] >= 0.9
    with np.load(tmp_path / "run" / "checkpoints" / "best.npz", allow_pickle=False) as ckpt:
        assert ckpt["data.categories.1"].tolist() == ["blue", "green", "red"]
        assert ckpt["data.features"].tolist() == ["x", "colour=blue", "colour=green", "colour=red", "weight"]
    query = write_csv(tmp_path / "q.csv", ["weight", "colour", "x"], [["0.1", "red", "2"], ["0.1", "blue", "2"]])
    predicted = cli("predict", tmp_path / "run", query)
    assert predicted.exit_code == 0, predicted.stderr
    assert [line.split(",")[0] for line in predicted.stdout.splitlines()[1:]] == ["cat", "dog"]
    unseen = write_csv(tmp_path / "u.csv", ["weight", "colour", "x"], [["0.1", "pink", "2"], ["0.1", "red", "2"]])
    refused = cli("predict", tmp_path / "run", unseen)  # the unknown row is reported, the other one scored
    assert refused.exit_code == 2, refused.output
    assert "warning: 1 row could not be scored:" in refused.stderr
    assert "u.csv, line 2: column 'colour': category 'pink' was not in the training data" in refused.stderr
    lines = refused.stdout.splitlines()
    assert lines[0] == "class,p_cat,p_dog" and lines[1] == ",," and lines[2].split(",")[0] == "cat"


def test_scale_target_reports_and_predicts_in_original_units(cli, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 400)
    rows = [[f"{a:.5f}", f"{1000 + 300 * a:.5f}"] for a in x]  # targets far from unit scale
    write_csv(tmp_path / "big.csv", ["x", "y"], rows)
    config = tmp_path / "big.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "big.csv", "scale_target": True},
                "model": {"layers": [{"linear": 1}]},
                "loss": "mse",
                "optimizer": {"name": "adam", "lr": 0.05},
                "train": {"epochs": 40, "batch_size": 16, "metrics": ["mse", "mae", "r2"]},
            }
        )
    )
    summary, _ = fit(cli, config, tmp_path / "run")
    test = summary["final"]["test"]
    assert test["r2"] > 0.999
    assert test["mae"] < 3  # in the target's units (spread 600), not standardized ones
    query = write_csv(tmp_path / "q.csv", ["x"], [["0.5"], ["-1"]])
    predicted = cli("predict", tmp_path / "run", query)
    values = [float(v) for v in predicted.stdout.split()[1:]]
    np.testing.assert_allclose(values, [1150, 700], atol=5)
