"""Data given as separate split files, and features left on disk in .npy files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from nntrain import config as cfg
from nntrain.data.arrays import DiskRows, StackedRows
from nntrain.errors import NntrainError
from nntrain.train.experiment import prepare


def blobs(n, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, 4)) + 3 * np.eye(3, 4)[y]
    return X.astype(np.float32), y


def write_yaml(path, data, **train):
    path.write_text(
        yaml.safe_dump(
            {
                "seed": 3,
                "data": data,
                "model": {"layers": [{"linear": 8}, "relu", {"linear": 3}]},
                "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                "train": {"epochs": 3, "batch_size": 16, **train},
            }
        )
    )
    return path


def fit(cli, config, run):
    result = cli("fit", config, "--run-dir", run, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_npy_pair_on_disk_trains_exactly_like_the_same_data_in_memory(cli, tmp_path):
    """Reading batches from disk is a memory choice, not a numerical one: results are bit-identical."""
    X, y = blobs(300)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    disk = fit(cli, write_yaml(tmp_path / "disk.yaml", {"dataset": {"X": "X.npy", "y": "y.npy"}}), tmp_path / "a")
    memory = fit(cli, write_yaml(tmp_path / "mem.yaml", {"dataset": "d.npz"}), tmp_path / "b")
    assert disk["final"] == memory["final"]
    with np.load(tmp_path / "a/checkpoints/last.npz") as a, np.load(tmp_path / "b/checkpoints/last.npz") as b:
        for key in ("layers.0.weight", "layers.2.bias", "data.scale.offset", "data.scale.factor"):
            np.testing.assert_array_equal(a[key], b[key])
    assert (tmp_path / "a/metrics.csv").read_text().split("\n")[1].split(",")[:-1] == (
        (tmp_path / "b/metrics.csv").read_text().split("\n")[1].split(",")[:-1]
    )
    evaluated = cli("eval", tmp_path / "a", "--json")
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["samples"] == 45


def test_disk_rows_gather_in_the_order_asked(tmp_path):
    X = np.arange(40, dtype=np.float32).reshape(10, 4)
    np.save(tmp_path / "X.npy", X)
    rows = DiskRows(tmp_path / "X.npy")
    np.testing.assert_array_equal(rows[np.array([7, 2, 2, 9])], X[[7, 2, 2, 9]])
    np.testing.assert_array_equal(rows[np.array([0, 1, 2, 3])], X[:4])  # one read for a run of rows
    np.testing.assert_array_equal(rows[np.arange(10)[::-1]], X[::-1])
    np.testing.assert_array_equal(rows[2:5], X[2:5])
    stacked = StackedRows([rows, X[:3] + 100])
    np.testing.assert_array_equal(stacked[np.array([11, 0, 12, 9])], np.vstack([X[1] + 100, X[0], X[2] + 100, X[9]]))
    assert stacked.shape == (13, 4)


def test_truncated_and_fortran_npy_are_refused(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((5, 3), dtype=np.float32)))
    with pytest.raises(NntrainError, match="Fortran"):
        DiskRows(tmp_path / "f.npy")
    np.save(tmp_path / "t.npy", np.ones((50, 3)))
    data = (tmp_path / "t.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[:-40])
    with pytest.raises(NntrainError, match="truncated"):
        DiskRows(tmp_path / "t.npy")


def test_pickled_npy_is_refused(tmp_path):
    np.save(tmp_path / "X.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(NntrainError, match="X.npy"):
        DiskRows(tmp_path / "X.npy")


def test_nan_in_disk_features_is_found_when_fitting_the_scaler(tmp_path):
    X, y = blobs(60)
    X[17, 2] = np.nan
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    config = cfg.load_config(write_yaml(tmp_path / "c.yaml", {"dataset": {"X": "X.npy", "y": "y.npy"}, "split": {"val": 0, "test": 0}}))
    with pytest.raises(NntrainError, match="row 17"):
        prepare(config, tmp_path)


def csv_file(path, X, y, labels=("a", "b", "c")):
    lines = ["f0,f1,f2,f3,label"] + [",".join(f"{v:.5f}" for v in row) + f",{labels[c]}" for row, c in zip(X, y)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_split_files_keep_their_rows(cli, tmp_path):
    X, y = blobs(300)
    csv_file(tmp_path / "train.csv", X[:200], y[:200])
    csv_file(tmp_path / "val.csv", X[200:250], y[200:250])
    csv_file(tmp_path / "test.csv", X[250:], y[250:])
    data = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
    summary = fit(cli, write_yaml(tmp_path / "c.yaml", data), tmp_path / "run")
    with np.load(tmp_path / "run/splits.npz") as splits:
        assert [len(splits[k]) for k in ("train", "val", "test")] == [200, 50, 50]
        np.testing.assert_array_equal(splits["test"], np.arange(250, 300))
    assert summary["final"]["test"]["accuracy"] > 0.9
    # the resolved config records what the files decided, so the run reloads: eval, predict, resume
    evaluated = cli("eval", tmp_path / "run", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["samples"] == 50
    resumed = cli("fit", "--resume", tmp_path / "run", "--set", "train.epochs=4", "-q")
    assert resumed.exit_code == 0, resumed.stderr
    # the scaler saw the training file only
    with np.load(tmp_path / "run/checkpoints/last.npz") as ckpt:
        np.testing.assert_allclose(ckpt["data.scale.offset"], X[:200].astype(np.float64).mean(axis=0), rtol=1e-4)


def test_without_a_val_file_validation_rows_are_carved_from_train(tmp_path):
    X, y = blobs(200)
    csv_file(tmp_path / "train.csv", X[:150], y[:150])
    csv_file(tmp_path / "test.csv", X[150:], y[150:])
    config = cfg.load_config(write_yaml(tmp_path / "c.yaml", {"train": "train.csv", "test": "test.csv", "split": {"val": 0.2}}))
    exp = prepare(config, tmp_path)
    assert [len(exp.splits[k]) for k in ("train", "val", "test")] == [120, 30, 50]
    assert set(exp.splits["val"]) < set(range(150))


def test_a_label_missing_from_train_is_an_error_naming_the_file(tmp_path):
    X, y = blobs(90)
    csv_file(tmp_path / "train.csv", X[:60], y[:60])
    csv_file(tmp_path / "test.csv", X[60:], y[60:], labels=("a", "b", "zebra"))
    config = cfg.load_config(write_yaml(tmp_path / "c.yaml", {"train": "train.csv", "test": "test.csv"}))
    with pytest.raises(NntrainError, match=r"data.test.*zebra"):
        prepare(config, tmp_path)


def test_split_files_config_rules():
    base = {"model": {"layers": [{"linear": 3}]}}
    with pytest.raises(NntrainError, match="data.split.test"):
        cfg.load_config(None, [], raw={**base, "data": {"train": "a.csv", "split": {"test": 0.1}}})
    with pytest.raises(NntrainError, match="data.val: needs data.train"):
        cfg.load_config(None, [], raw={**base, "data": {"dataset": "a.csv", "val": "b.csv"}})
    with pytest.raises(NntrainError, match="give either data.dataset, or data.train"):
        cfg.load_config(None, [], raw={**base, "data": {"split": {"val": 0.1}}})


def test_one_hot_targets_are_class_indices(tmp_path):
    X, y = blobs(90)
    np.savez(tmp_path / "onehot.npz", X=X, y=np.eye(4)[y])  # class 3 never occurs, and still counts
    config = cfg.load_config(write_yaml(tmp_path / "c.yaml", {"dataset": "onehot.npz"}))
    config.model.layers[-1].units = 4
    exp = prepare(config, tmp_path)
    assert exp.dataset.classes == ["0", "1", "2", "3"]
    np.testing.assert_array_equal(exp.dataset.y, y)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("ragged.csv", "a,b,label\n1,2,x\n3,y\n", "line 3: 2 fields"),
        ("nan.csv", "a,b,label\n1,2,x\n3,nan,y\n", "line 3, column 'b'"),
        ("target.csv", "a,b,lable\n1,2,x\n3,4,y\n", "no column named 'label'"),
    ],
)
def test_bad_data_files_exit_2_naming_the_problem(cli, tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    data = {"dataset": name, "target": "label"} if name == "target.csv" else {"dataset": name}
    result = cli("fit", write_yaml(tmp_path / "c.yaml", data), "--runs-root", tmp_path / "runs")
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # nothing is created for a run that cannot start


def test_pickled_npz_exits_2(cli, tmp_path):
    np.savez(tmp_path / "p.npz", X=np.zeros((4, 2)), y=np.array([{"a": 1}] * 4, dtype=object))
    result = cli("fit", write_yaml(tmp_path / "c.yaml", {"dataset": "p.npz"}), "--runs-root", tmp_path / "runs")
    assert result.exit_code == 2 and "p.npz" in result.stderr and "Traceback" not in result.output


def _clean_refusal(result, *parts):
    assert result.exit_code == 2, result.output
    for part in parts:
        assert part in result.stderr, result.stderr
    for bad in ("internal error", "Traceback", "Warning"):
        assert bad not in result.output, result.output


@pytest.mark.filterwarnings("error")
def test_data_files_without_rows_are_refused_where_they_are_read(cli, write_config, tmp_path):
    """An .npz whose X has shape (0, 2) reached the metrics (ZeroDivisionError) at `eval --data`."""
    np.savez(tmp_path / "empty.npz", X=np.zeros((0, 2)), y=np.zeros(0))
    np.save(tmp_path / "X.npy", np.zeros((0, 2), dtype=np.float32))
    np.save(tmp_path / "y.npy", np.zeros(0, dtype=np.int64))
    (tmp_path / "empty.csv").write_text("x0,x1,label\n\n")
    run = tmp_path / "run"
    assert cli("fit", write_config(train={"epochs": 1, "batch_size": 32}), "--run-dir", run, "-q").exit_code == 0
    _clean_refusal(cli("eval", run, "--data", tmp_path / "empty.npz"), "empty.npz has no rows")
    _clean_refusal(cli("eval", run, "--data", tmp_path / "empty.csv"), "empty.csv has a header but no data rows")
    _clean_refusal(cli("predict", run, tmp_path / "empty.csv"), "empty.csv has a header but no data rows")
    for data, message in [("empty.npz", "empty.npz has no rows"), ({"X": "X.npy", "y": "y.npy"}, "X.npy has no rows")]:
        config = write_yaml(tmp_path / "c.yaml", {"dataset": data})
        _clean_refusal(cli("validate", config), "data.dataset", message)
