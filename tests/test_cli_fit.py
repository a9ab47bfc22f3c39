"""`nntrain fit` end to end: what a run directory holds, what the CLI prints, determinism,
overrides, starting weights and divergence."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

import nntrain

METRIC_COLUMNS = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"]
ANSI = re.compile(r"\x1b\[")


def read_metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def params(arrays):
    return {k: v for k, v in arrays.items() if k.startswith("layers.")}


def fit(cli, config, run, *args):
    return cli("fit", config, "--run-dir", run, *args)


@pytest.fixture
def run(cli, write_config, tmp_path):
    """A completed 5-epoch run of the small spirals config with a checkpoint every 2 epochs."""
    path = tmp_path / "run"
    result = fit(cli, write_config(train={"epochs": 5, "batch_size": 32, "checkpoint_every": 2}), path)
    assert result.exit_code == 0, result.output
    return path


# --- the run directory ---------------------------------------------------------------------


def test_run_directory_layout(run):
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.yaml", "metrics.csv", "splits.npz", "summary.json"]
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == ["best.npz", "epoch-0002.npz", "epoch-0004.npz", "last.npz"]


def test_config_yaml_is_fully_resolved_and_revalidates(run, cli):
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["name"] == "small"
    assert resolved["data"]["task"] == "classification"
    assert resolved["data"]["split"] == {"val": 0.15, "test": 0.15, "folds": None, "fold": 0}
    assert resolved["model"]["layers"][0] == {"type": "linear", "units": 16, "init": None, "init_scale": None}
    assert resolved["model"]["layers"][1] == {"type": "relu"}
    assert resolved["optimizer"] == {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0, "schedule": None}
    assert resolved["train"]["metrics"] == ["accuracy"]
    assert resolved["train"]["monitor"] == "val_loss"
    assert resolved["train"]["checkpoint_every"] == 2
    result = cli("validate", run / "config.yaml")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == resolved


def test_metrics_csv_has_one_row_per_epoch(run):
    columns, rows = read_metrics(run)
    assert columns == METRIC_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    for row in rows:
        values = {k: float(v) for k, v in row.items()}
        assert all(math.isfinite(v) for v in values.values())
        assert 0 <= values["train_accuracy"] <= 1 and 0 <= values["val_accuracy"] <= 1
        assert values["train_loss"] > 0 and values["val_loss"] > 0
        assert values["lr"] == 0.1
        assert values["seconds"] >= 0
    # Training does something: the loss goes down.
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_metrics_keep_the_config_order_everywhere(cli, write_config, tmp_path):
    """train.metrics' order is the order of the epoch lines, metrics.csv, summary.json and eval."""
    order = ["f1", "accuracy", "log_loss", "balanced_accuracy"]
    path = tmp_path / "ordered"
    result = fit(cli, write_config(train={"epochs": 2, "metrics": order}), path)
    assert result.exit_code == 0, result.output
    expected = ["loss", *order]
    epoch_line = next(line for line in result.stdout.splitlines() if line.startswith("epoch 2/2"))
    assert re.findall(r"train_(\w+) ", epoch_line) == expected
    columns, _ = read_metrics(path)
    assert [c[len("val_"):] for c in columns if c.startswith("val_")] == expected
    summary = json.loads((path / "summary.json").read_text())
    assert all(list(summary["final"][split]) == expected for split in ("train", "val", "test"))
    shown = cli("eval", path)
    assert [line.split()[0] for line in shown.stdout.splitlines()[1:6]] == expected


def test_summary_json(run):
    summary = json.loads((run / "summary.json").read_text())
    _, rows = read_metrics(run)
    val_losses = [float(r["val_loss"]) for r in rows]
    assert summary["status"] == "completed"
    assert summary["message"] is None
    assert summary["epochs_completed"] == 5 and summary["epochs_planned"] == 5
    assert summary["monitor"] == "val_loss"
    assert summary["best_epoch"] == 1 + int(np.argmin(val_losses))
    assert summary["best_value"] == pytest.approx(min(val_losses), rel=1e-5)
    assert set(summary["final"]) == {"train", "val", "test"}
    for split in ("train", "val", "test"):
        assert set(summary["final"][split]) == {"loss", "accuracy"}
    assert summary["final"]["val"]["loss"] == pytest.approx(val_losses[-1], rel=1e-5)
    assert summary["nntrain_version"] == nntrain.__version__
    assert summary["numpy_version"] == np.__version__


def test_splits_npz_partitions_the_rows(run):
    splits = load(run / "splits.npz")
    assert sorted(splits) == ["test", "train", "val"]
    rows = np.concatenate([splits["train"], splits["val"], splits["test"]])
    assert sorted(rows.tolist()) == list(range(300))  # disjoint and complete
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (210, 45, 45)


def test_checkpoint_contents(run):
    last = load(run / "checkpoints" / "last.npz")
    assert sorted(params(last)) == ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight"]
    assert last["layers.0.weight"].shape == (2, 16)  # (in, out)
    assert last["layers.0.bias"].shape == (16,)
    assert last["layers.2.weight"].shape == (16, 3)
    assert last["layers.2.bias"].shape == (3,)
    # Optimizer state: SGD momentum buffers, and one step per batch (210 training rows / 32 = 7 batches).
    assert int(last["optim.steps"]) == 5 * 7
    for key, value in params(last).items():
        assert last[f"optim.{key}.momentum_buffer"].shape == value.shape
    assert int(last["meta.epoch"]) == 5
    text = str(last["meta.config"])
    assert hashlib.sha256(text.encode()).hexdigest() == str(last["meta.config_sha256"])
    assert json.loads(text) == yaml.safe_load((run / "config.yaml").read_text())
    assert last["data.classes"].tolist() == ["0", "1", "2"]
    assert last["data.features"].tolist() == ["x0", "x1"]


def test_best_and_epoch_checkpoints(run):
    summary = json.loads((run / "summary.json").read_text())
    best = load(run / "checkpoints" / "best.npz")
    assert int(best["meta.epoch"]) == summary["best_epoch"]
    assert float(best["meta.best_value"]) == pytest.approx(summary["best_value"])
    for epoch in (2, 4):
        arrays = load(run / "checkpoints" / f"epoch-{epoch:04d}.npz")
        assert int(arrays["meta.epoch"]) == epoch
        assert int(arrays["optim.steps"]) == epoch * 7
    early, last = load(run / "checkpoints" / "epoch-0002.npz"), load(run / "checkpoints" / "last.npz")
    assert not np.array_equal(early["layers.0.weight"], last["layers.0.weight"])


def test_layer_index_is_the_config_position(cli, write_config, tmp_path):
    layers = [{"linear": 8}, "tanh", {"linear": 5}, "relu", "identity", {"linear": 3}]
    result = fit(cli, write_config(model={"layers": layers}, train={"epochs": 1}), tmp_path / "r")
    assert result.exit_code == 0, result.output
    last = load(tmp_path / "r" / "checkpoints" / "last.npz")
    assert {k: v.shape for k, v in params(last).items()} == {
        "layers.0.weight": (2, 8),
        "layers.0.bias": (8,),
        "layers.2.weight": (8, 5),
        "layers.2.bias": (5,),
        "layers.5.weight": (5, 3),
        "layers.5.bias": (3,),
    }


def test_checkpoint_every_zero_keeps_only_last_and_best(cli, write_config, tmp_path):
    result = fit(cli, write_config(train={"epochs": 3, "checkpoint_every": 0}), tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == ["best.npz", "last.npz"]


# --- run directories --------------------------------------------------------------------------


def test_existing_run_dir_is_refused_and_untouched(cli, write_config, tmp_path):
    target = tmp_path / "existing"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = fit(cli, write_config(), target)
    assert result.exit_code == 2
    assert "already exists" in result.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    assert (target / "notes.txt").read_text() == "mine"


def test_two_runs_in_one_root_get_different_directories(cli, write_config, tmp_path):
    config, root = write_config(train={"epochs": 1}), tmp_path / "runs"
    for _ in range(2):
        assert cli("fit", config, "--runs-root", root, "-q").exit_code == 0
    dirs = sorted(p for p in root.iterdir())
    assert len(dirs) == 2
    assert all(p.name.startswith("small-") for p in dirs)
    assert all((p / "summary.json").is_file() for p in dirs)


def test_fit_without_config_is_a_usage_error(cli):
    result = cli("fit")
    assert result.exit_code == 2
    assert "CONFIG" in result.stderr


# --- output ---------------------------------------------------------------------------------


def test_json_prints_exactly_one_object(cli, write_config, tmp_path):
    result = fit(cli, write_config(), tmp_path / "r", "--json")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1
    summary = json.loads(result.stdout)
    assert summary["status"] == "completed"
    assert summary == json.loads((tmp_path / "r" / "summary.json").read_text())
    assert "epoch 1/5" in result.stderr  # progress goes to stderr


def test_quiet_prints_only_the_summary(cli, write_config, tmp_path):
    result = fit(cli, write_config(), tmp_path / "r", "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "status: completed after 5/5 epochs"
    assert not any(line.startswith("epoch") for line in lines)
    assert lines[-1] == f"run directory: {tmp_path / 'r'}"
    assert sum("run directory" in line for line in lines) == 1
    assert result.stderr == ""


def test_plain_output_has_one_line_per_epoch_and_no_ansi(cli, write_config, tmp_path):
    result = fit(cli, write_config(), tmp_path / "r")
    assert result.exit_code == 0, result.output
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 5
    for n, line in enumerate(epoch_lines, 1):
        assert re.match(rf"epoch {n}/5  train_loss \d+\.\d+  train_accuracy \d\.\d+  val_loss \d+\.\d+  val_accuracy", line), line
    assert not ANSI.search(result.output)
    assert "status: completed after 5/5 epochs" in result.stdout


# --- determinism and overrides ------------------------------------------------------------------


def test_same_config_and_seed_give_identical_runs(cli, write_config, tmp_path):
    config = write_config()
    for name in ("a", "b", "c"):
        seed = "1" if name == "c" else "0"
        assert fit(cli, config, tmp_path / name, "-q", "--set", f"seed={seed}").exit_code == 0
    a, b, c = (read_metrics(tmp_path / n)[1] for n in "abc")
    assert without_seconds(a) == without_seconds(b)
    pa, pb, pc = (params(load(tmp_path / n / "checkpoints" / "last.npz")) for n in "abc")
    assert pa.keys() == pb.keys()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    # Another seed: other data, other init, other numbers.
    assert [r["train_loss"] for r in a] != [r["train_loss"] for r in c]
    assert not np.array_equal(pa["layers.0.weight"], pc["layers.0.weight"])


def test_set_overrides(cli, write_config, tmp_path):
    result = fit(cli, write_config(), tmp_path / "r", "-q", "--set", "train.epochs=2", "-s", "optimizer.lr=0.05")
    assert result.exit_code == 0, result.output
    _, rows = read_metrics(tmp_path / "r")
    assert len(rows) == 2
    assert all(float(r["lr"]) == 0.05 for r in rows)
    resolved = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == 2 and resolved["optimizer"]["lr"] == 0.05


def test_set_override_of_a_layer(cli, write_config, tmp_path):
    result = fit(cli, write_config(train={"epochs": 1}), tmp_path / "r", "-q", "--set", "model.layers.0.units=7")
    assert result.exit_code == 0, result.output
    assert load(tmp_path / "r" / "checkpoints" / "last.npz")["layers.0.weight"].shape == (2, 7)


@pytest.mark.parametrize("lr", ["1.0e-3", "0.001", "1e-3"])
def test_set_learning_rate_in_any_float_notation(cli, write_config, tmp_path, lr):
    """`1e-3` is how most people write a learning rate; YAML 1.1 (PyYAML) reads it as a string."""
    result = fit(cli, write_config(train={"epochs": 1}), tmp_path / "r", "-q", "--set", f"optimizer.lr={lr}")
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["optimizer"]["lr"] == 0.001


# --- starting weights -------------------------------------------------------------------------


def test_weights_start_from_a_trained_network(cli, write_config, tmp_path):
    config = write_config(train={"epochs": 15, "batch_size": 32})
    assert fit(cli, config, tmp_path / "teacher", "-q").exit_code == 0
    best = tmp_path / "teacher" / "checkpoints" / "best.npz"
    assert fit(cli, config, tmp_path / "fresh", "-q", "--set", "train.epochs=1").exit_code == 0
    result = fit(cli, config, tmp_path / "warm", "-q", "--set", "train.epochs=1", "--weights", best)
    assert result.exit_code == 0, result.output
    fresh = float(read_metrics(tmp_path / "fresh")[1][0]["train_loss"])
    warm = float(read_metrics(tmp_path / "warm")[1][0]["train_loss"])
    teacher_best = json.loads((tmp_path / "teacher" / "summary.json").read_text())["best_value"]
    assert warm < 0.5 * fresh
    assert warm < 2 * teacher_best


def test_weights_with_mismatched_shapes_are_refused(cli, write_config, tmp_path):
    config = write_config(train={"epochs": 1})
    assert fit(cli, config, tmp_path / "a", "-q").exit_code == 0
    weights = tmp_path / "a" / "checkpoints" / "last.npz"
    result = fit(cli, config, tmp_path / "b", "--set", "model.layers.0.units=8", "--weights", weights)
    assert result.exit_code == 2
    assert "layers.0.weight" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("content", [None, b"not an npz at all"])
def test_weights_missing_or_unreadable(cli, write_config, tmp_path, content):
    weights = tmp_path / "w.npz"
    if content is not None:
        weights.write_bytes(content)
    result = fit(cli, write_config(), tmp_path / "r", "--weights", weights)
    assert result.exit_code == 2
    assert "w.npz" in result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "r").exists()


# --- divergence -------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings on the way to NaN
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_divergence_exits_1_and_keeps_a_finite_checkpoint(cli, write_config, tmp_path, loss):
    config = write_config(loss=loss, optimizer={"lr": 1.0e6})
    result = fit(cli, config, tmp_path / "r", "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "diverged"
    assert "optimizer.lr" in summary["message"]
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["status"] == "diverged"
    assert summary["epochs_completed"] < 5
    last = load(tmp_path / "r" / "checkpoints" / "last.npz")
    assert int(last["meta.epoch"]) == summary["epochs_completed"]
    assert all(np.isfinite(v).all() for v in params(last).values())
    _, rows = read_metrics(tmp_path / "r")
    assert len(rows) == summary["epochs_completed"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_plain_output(cli, write_config, tmp_path):
    result = fit(cli, write_config(optimizer={"lr": 1.0e6}), tmp_path / "r")
    assert result.exit_code == 1
    assert "status: diverged" in result.stdout
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", [["validate", "configs/quickstart.yaml"], ["schema"], ["datasets", "--json"]])
def test_stdout_on_a_full_device_is_exit_74(args):
    """`nntrain validate CONFIG > /dev/full`: the refused write is said on stderr, with the write error's code."""
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "nntrain.cli", *args], stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 74, result.stderr
    # (validate's model table goes to stderr before the config is printed)
    assert result.stderr.strip().splitlines()[-1] == "error: cannot write '<stdout>': no space left on the device (while printing the output)"
    assert "Traceback" not in result.stderr


def test_small_splits_get_a_caution_printed_and_in_the_summary(cli, write_config, tmp_path):
    """16-row validation and test splits (8 per class), and 3 rows of a rare class, measure little: fit says so."""
    config = write_config(data={"dataset": "spirals", "options": {"samples": 100, "classes": 2, "noise": 0.2}},
                          model={"layers": [{"linear": 8}, "relu", {"linear": 2}]}, train={"epochs": 1})
    result = cli("fit", config, "--runs-root", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert len(summary["cautions"]) == 2 and "validation split has only 16 rows (fewer than 30)" in summary["cautions"][0]
    assert "caution: the validation split has only 16 rows" in result.stderr
    assert "caution: the test split has only 16 rows" in result.stderr

    rows = ["x,y,label"] + [f"{i * 7 % 13},{i % 5},{'rare' if i % 20 == 0 else 'common'}" for i in range(400)]
    (tmp_path / "rare.csv").write_text("\n".join(rows) + "\n")
    rare = write_config("rare.yaml", data={"dataset": str(tmp_path / "rare.csv"), "target": "label", "options": {}},
                        model={"layers": [{"linear": 4}, "relu", {"linear": 2}]}, train={"epochs": 1})
    result = cli("validate", rare)
    assert result.exit_code == 0, result.output
    assert "caution: the validation split has fewer than 5 rows of some classes ('rare' 3)" in result.stderr

    plenty = write_config("plenty.yaml", train={"epochs": 1})  # 45 rows each, 15 per class
    result = cli("fit", plenty, "--runs-root", tmp_path / "runs", "--json")
    assert "caution" not in result.stderr and json.loads(result.stdout)["cautions"] == []


def test_every_new_classification_metric_trains_monitors_and_is_logged(cli, write_config, tmp_path):
    metrics = ["accuracy", "roc_auc", "average_precision", "log_loss", "precision", "recall"]
    config = write_config(train={"epochs": 2, "metrics": metrics, "monitor": "val_roc_auc"})
    result = cli("fit", config, "--runs-root", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["monitor"] == "val_roc_auc" and 0.5 < summary["best_value"] <= 1
    assert set(summary["final"]["val"]) == {"loss", *metrics}
    fields, rows = read_metrics(tmp_path / "runs" / summary["run_dir"].rsplit("/", 1)[-1])
    assert "val_log_loss" in fields and "train_average_precision" in fields and len(rows) == 2
    refused = cli("validate", write_config("hinge.yaml", loss="multiclass_hinge", train={"metrics": ["log_loss"]}))
    assert refused.exit_code == 2 and "log_loss needs class probabilities" in refused.stderr


def test_a_cnn_through_every_command(cli, tmp_path):
    """A small CNN on the digits images: validate shows its shapes, and fit, eval, predict (on an .npy of
    images), gradcheck, inspect and sweep all work on it, rebuilding the network from the run alone."""
    from nntrain.data.bundled import read_bundled

    layers = [{"conv2d": {"filters": 4, "kernel_size": 3, "padding": "same"}}, "relu", {"max_pool2d": 2},
              {"conv2d": {"filters": 6, "kernel_size": 3}}, "relu", "flatten", {"linear": 10}]  # fmt: skip
    config = tmp_path / "cnn.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": "digits", "split": {"val": 0.2, "test": 0.2}}, "model": {"layers": layers},
        "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 3, "batch_size": 64, "diagnostics": True},
    }))  # fmt: skip
    checked = cli("validate", config)
    assert checked.exit_code == 0, checked.stderr
    rows = [line.split() for line in checked.stderr.splitlines()]
    for row in (["input", "(1,", "8,", "8)"], ["0", "conv2d", "(4,", "8,", "8)", "40"], ["2", "max_pool2d", "(4,", "4,", "4)", "0"],
                ["3", "conv2d", "(6,", "2,", "2)", "222"], ["5", "flatten", "(24,)", "0"], ["6", "linear", "(10,)", "250"],
                ["512", "parameters"]):  # fmt: skip
        assert row in rows, checked.stderr
    run = tmp_path / "run"
    trained = cli("fit", config, "--run-dir", run, "--json")
    assert trained.exit_code == 0, trained.stderr
    assert json.loads(trained.stdout)["final"]["test"]["accuracy"] > 0.6
    with np.load(run / "checkpoints" / "last.npz") as ckpt:
        assert ckpt["layers.0.weight"].shape == (4, 1, 3, 3) and ckpt["data.sample_shape"].tolist() == [1, 8, 8]
    evaluated = cli("eval", run, "--checkpoint", "last", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert json.loads(evaluated.stdout)["accuracy"] == json.loads(trained.stdout)["final"]["test"]["accuracy"]
    X, y, _ = read_bundled("digits")
    images = tmp_path / "images.npy"
    np.save(images, np.asarray(X[:6], dtype=np.float32).reshape(6, 1, 8, 8))
    predicted = cli("predict", run, images)
    assert predicted.exit_code == 0, predicted.stderr
    assert len(predicted.stdout.splitlines()) == 7 and predicted.stdout.startswith("class,p_0,")
    assert cli("gradcheck", run).exit_code == 0
    inspected = cli("inspect", run, "--json")
    assert inspected.exit_code == 0 and [r["type"] for r in json.loads(inspected.stdout)["layers"]][:3] == ["conv2d", "relu", "max_pool2d"]
    swept = cli("sweep", config, "--grid", "optimizer.lr=0.01,0.02", "--set", "train.epochs=1", "--runs-root", tmp_path / "sweeps")
    assert swept.exit_code == 0, swept.stderr
    assert swept.stdout.count("completed") >= 2


def test_variable_length_sequences_through_every_command(cli, tmp_path):
    """An .npz of padded sequences with `lengths`: what the padding holds changes nothing in fit, eval,
    predict and gradcheck (lengths reach the recurrent layer and the scaling statistics), and a bidirectional
    GRU and a conv1d see them too; inspect shows the gradient per step; bad lengths exit 2."""
    rng = np.random.default_rng(0)
    n, steps = 300, 10
    lengths = rng.integers(1, steps + 1, n)
    X = rng.uniform(0, 1, (n, steps, 2))
    y = np.array([X[i, : lengths[i], 0].sum() for i in range(n)])  # the sum over the real steps
    files = {}
    for name, fill in (("zeros", 0.0), ("garbage", 1e6)):
        padded = X.copy()
        for i in range(n):
            padded[i, lengths[i] :] = fill
        files[name] = tmp_path / f"{name}.npz"
        np.savez(files[name], X=padded, y=y, lengths=lengths)
    layers = [{"conv1d": {"filters": 4, "kernel_size": 3, "padding": "same"}}, "tanh",
              {"gru": {"units": 6, "bidirectional": True, "output": "last"}}, {"linear": 1}]  # fmt: skip
    config = tmp_path / "seq.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": str(files["zeros"])}, "model": {"layers": layers}, "loss": "mse",
        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 3, "batch_size": 32, "diagnostics": True},
    }))  # fmt: skip
    finals = {}
    for name, path in files.items():
        trained = cli("fit", config, "--run-dir", tmp_path / name, "--set", f"data.dataset={path}", "--json")
        assert trained.exit_code == 0, trained.stderr
        finals[name] = json.loads(trained.stdout)["final"]
    assert finals["zeros"] == finals["garbage"]
    run = tmp_path / "zeros"
    evaluated = [json.loads(cli("eval", run, "--data", files[name], "--json").stdout) for name in files]
    assert evaluated[0]["loss"] == evaluated[1]["loss"] and evaluated[0]["samples"] == n
    predicted = [cli("predict", run, files[name]).stdout for name in files]
    assert predicted[0] == predicted[1] and len(predicted[0].splitlines()) == n + 1
    checked = cli("gradcheck", config, "--samples", "6")
    assert checked.exit_code == 0, checked.stdout
    inspected = json.loads(cli("inspect", run, "--json").stdout)
    assert len(inspected["steps"]) == steps
    bad = tmp_path / "bad.npz"
    np.savez(bad, X=X, y=y, lengths=np.full(n, steps + 1))
    refused = cli("fit", config, "--set", f"data.dataset={bad}", "--runs-root", tmp_path / "runs")
    assert refused.exit_code == 2 and "'lengths' gives row 0 11 steps" in refused.stderr
    np.savez(bad, X=X, y=y, lengths=np.zeros(n, dtype=np.int64))
    refused = cli("fit", config, "--set", f"data.dataset={bad}", "--runs-root", tmp_path / "runs")
    assert refused.exit_code == 2 and "lengths" in refused.stderr


def test_a_language_model_through_every_command(cli, tmp_path):
    """A character LSTM on a text file: validate, fit, eval on its validation part, sample (text and JSON),
    gradcheck on the run, inspect and sweep work; predict and eval --data refuse with a pointer to sample."""
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question.\n" * 40)
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": "text.txt", "text": {"length": 16}, "split": {"val": 0.1, "test": 0.0}},
        "model": {"layers": [{"embedding": {"dim": 8}}, {"gru": {"units": 16}}, {"linear": 18}]},
        "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.02},
        "train": {"epochs": 3, "batch_size": 16, "diagnostics": True},
    }))  # fmt: skip
    checked = cli("validate", config)
    assert checked.exit_code == 0, checked.stderr
    assert ["0", "embedding", "(16,", "8)", "144"] in [line.split() for line in checked.stderr.splitlines()]
    run = tmp_path / "run"
    trained = cli("fit", config, "--run-dir", run, "--json")
    assert trained.exit_code == 0, trained.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["scale"]["name"] == "none"
    evaluated = cli("eval", run, "--split", "val", "--json")
    assert evaluated.exit_code == 0 and "confusion" not in json.loads(evaluated.stdout)
    written = cli("sample", run, "--length", "30", "--prime", "to be", "--seed", "3")
    assert written.exit_code == 0 and written.stdout.startswith("to be") and len(written.stdout) == len("to be") + 30 + 1
    as_json = json.loads(cli("sample", run, "--length", "30", "--prime", "to be", "--seed", "3", "--json").stdout)
    assert as_json["text"] + "\n" == written.stdout and as_json["seed"] == 3
    assert cli("sample", run, "--temperature", "-1").exit_code == 2
    assert cli("gradcheck", run, "--samples", "2", "--entries", "10").exit_code == 0
    inspected = json.loads(cli("inspect", run, "--json").stdout)
    assert [r["type"] for r in inspected["layers"]] == ["embedding", "gru", "linear"] and inspected["steps"] == []
    for refused in (cli("predict", run, text), cli("eval", run, "--data", text)):
        assert refused.exit_code == 2 and "nntrain sample" in refused.stderr
    swept = cli("sweep", config, "--grid", "optimizer.lr=0.01,0.02", "--set", "train.epochs=1", "--runs-root", tmp_path / "sweeps")
    assert swept.exit_code == 0 and swept.stdout.count("completed") >= 2, swept.stderr


def test_a_text_classifier_from_a_table_column(cli, tmp_path):
    """data.text.column: the vocabulary comes from the training rows only, the run predicts and evaluates
    new tables by their text column alone, and a missing column or text-only table is refused."""
    rows = [("a good film", "pos"), ("a bad film", "neg"), ("not bad at all", "pos"), ("not good", "neg")] * 30
    rows.append(("zebra zebra", "pos"))  # a word of one row: in the vocabulary only when its row trains
    table = tmp_path / "reviews.csv"
    with open(table, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "label", "stars"])
        writer.writerows((i, text, label, i % 5) for i, (text, label) in enumerate(rows))
    config = tmp_path / "text.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": str(table), "target": "label", "text": {"column": "review", "tokens": "word", "length": 6}},
        "model": {"layers": [{"embedding": {"dim": 8}}, {"gru": {"units": 8, "output": "last"}}, {"linear": 2}]},
        "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.05}, "train": {"epochs": 15, "batch_size": 16},
    }))  # fmt: skip
    run = tmp_path / "run"
    trained = cli("fit", config, "--run-dir", run, "--json")
    assert trained.exit_code == 0, trained.stderr
    assert json.loads(trained.stdout)["final"]["test"]["accuracy"] == 1.0
    with np.load(run / "checkpoints" / "best.npz") as checkpoint:
        vocabulary = checkpoint["data.text.vocabulary"].tolist()
    with np.load(run / "splits.npz") as splits:
        assert ("zebra" in vocabulary) == (len(rows) - 1 in splits["train"])
    assert sorted(vocabulary)[:2] == ["<pad>", "<unk>"] and "stars" not in vocabulary
    new = tmp_path / "new.csv"
    new.write_text("review\nnot bad at all\na bad film\n")
    predicted = cli("predict", run, new)
    assert predicted.exit_code == 0, predicted.stderr
    assert [line.split(",")[0] for line in predicted.stdout.splitlines()] == ["class", "pos", "neg"]
    evaluated = json.loads(cli("eval", run, "--data", table, "--json").stdout)
    assert evaluated["samples"] == len(rows) and evaluated["accuracy"] > 0.99
    missing = cli("fit", config, "--set", "data.text.column=text", "--runs-root", tmp_path / "runs")
    assert missing.exit_code == 2 and "no column named 'text'" in missing.stderr
    alone = tmp_path / "alone.csv"
    alone.write_text("review\na good film\n")
    refused = cli("fit", config, "--set", f"data.dataset={alone}", "--set", "data.target=null", "--runs-root", tmp_path / "runs")
    assert refused.exit_code == 2 and "a target column is needed" in refused.stderr


def test_text_and_sequence_data_mistakes_are_refused_with_the_key(cli, tmp_path):
    """What the review of the text and sequence data found: each is an `error:` with exit 2, never an internal error."""
    def config(data, layers, loss="cross_entropy", **train):
        path = tmp_path / f"c{len(list(tmp_path.glob('c*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump({"seed": 0, "data": data, "model": {"layers": layers}, "loss": loss,
                                        "optimizer": {"name": "adam", "lr": 0.01}, "train": {"epochs": 1, "batch_size": 16, **train}}))  # fmt: skip
        return cli("fit", path, "--runs-root", tmp_path / "runs")

    rnn = [{"gru": {"units": 4, "output": "last"}}, {"linear": 2}]
    ids = tmp_path / "ids.npz"
    np.savez(ids, X=np.arange(40).reshape(8, 5) % 10, y=np.arange(8) % 2)
    result = config({"dataset": str(ids), "scale": "none"}, [{"embedding": {"vocabulary": 5, "dim": 3}}, *rnn])
    assert result.exit_code == 2 and "takes token ids, whole numbers 0 .. 4" in result.stderr and "model.layers.0.vocabulary" in result.stderr
    seqs = tmp_path / "seqs.npz"
    np.savez(seqs, X=np.zeros((8, 5, 2)), y=np.arange(8) % 2, lengths=np.full(8, 3))
    for layers in ([{"linear": 4}, "relu", "flatten", {"linear": 2}], [{"conv2d": {"filters": 2, "kernel_size": 2}}, "flatten", {"linear": 2}]):
        result = config({"dataset": str(seqs)}, layers)
        assert result.exit_code == 2 and "`lengths` are for a network that reads sequences" in result.stderr, result.stderr
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh " * 50)
    result = config({"train": str(text), "split": {"test": 0.0}}, rnn)
    assert result.exit_code == 2 and "data.train" in result.stderr and "whole data" in result.stderr
    result = config({"dataset": str(text), "text": {"column": "x"}}, rnn)
    assert result.exit_code == 2 and "data.text.column" in result.stderr
    result = config({"dataset": "spirals", "text": {"length": 5}}, [{"linear": 3}])
    assert result.exit_code == 2 and "data.text" in result.stderr
    result = config({"dataset": str(text), "text": {"length": 20}, "split": {"val": 0.01, "test": 0.0}},
                    [{"embedding": {"dim": 4}}, {"gru": {"units": 4}}, {"linear": 11}])
    assert result.exit_code == 2 and "raise data.split.val (or set it to 0)" in result.stderr
    table = tmp_path / "scores.csv"
    table.write_text("review,score\n" + "".join(f"{'good ' * (i % 4)}film,{i % 4}.5\n" for i in range(40)))
    regression = {"dataset": str(table), "task": "regression", "text": {"column": "review", "tokens": "word", "length": 6}}
    result = config(regression, [{"embedding": {"dim": 4}}, {"gru": {"units": 4, "output": "last"}}, {"linear": 1}], loss="mse")
    assert result.exit_code == 0, result.stderr
    table.write_text("review,label\ngood film,pos\nbad film,\n" + "a film,neg\n" * 20)
    labelled = {"dataset": str(table), "text": {"column": "review", "tokens": "word", "length": 6}}
    result = config(labelled, rnn)
    assert result.exit_code == 2 and "line 3, column 'label': the target is missing" in result.stderr
    assert config({**labelled, "missing": "drop"}, [{"embedding": {"dim": 4}}, *rnn]).exit_code == 0


def test_sequence_labelling_a_class_per_step_through_every_command(cli, tmp_path):
    """An .npz with y (N, T), a class per step (here the running parity of the bits so far), and lengths: the labels
    of padded steps are never read, a GRU with output: sequence learns it, predict writes a class per step, eval
    --data scores a file of the same form, and class weights count only the real steps."""
    rng = np.random.default_rng(0)
    n, steps = 400, 8
    bits = rng.integers(0, 2, (n, steps))
    labels = (np.cumsum(bits, axis=1) % 2).astype(float)  # floats, as an .npz often has them
    lengths = rng.integers(3, steps + 1, n)
    X = bits[:, :, None].astype(float)
    for i in range(n):
        X[i, lengths[i] :], labels[i, lengths[i] :] = 5.0, -1.0  # padding, and labels that are no class
    data = tmp_path / "parity.npz"
    np.savez(data, X=X, y=labels, lengths=lengths)
    config = tmp_path / "label.yaml"
    config.write_text(yaml.safe_dump({
        "seed": 0, "data": {"dataset": str(data), "scale": "none"}, "model": {"layers": [{"gru": {"units": 12}}, {"linear": 2}]},
        "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.03}, "train": {"epochs": 25, "batch_size": 32},
    }))  # fmt: skip
    run = tmp_path / "run"
    trained = cli("fit", config, "--run-dir", run, "--json")
    assert trained.exit_code == 0, trained.stderr
    final = json.loads(trained.stdout)["final"]
    assert final["test"]["accuracy"] > 0.95, final
    with np.load(run / "checkpoints" / "best.npz") as checkpoint:
        assert checkpoint["data.classes"].tolist() == ["0", "1"] and int(checkpoint["data.target_steps"]) == steps
    new = tmp_path / "new.npz"
    np.savez(new, X=X[:3], lengths=lengths[:3])
    predicted = cli("predict", run, new)
    assert predicted.exit_code == 0, predicted.stderr
    lines = predicted.stdout.splitlines()
    assert lines[0] == ",".join(f"class_{t}" for t in range(steps)) and len(lines) == 4
    for line, length, truth in zip(lines[1:], lengths[:3], labels[:3]):
        cells = line.split(",")
        assert cells[length:] == [""] * (steps - length)  # nothing after a sequence's end
        assert sum(c == str(int(t)) for c, t in zip(cells[:length], truth)) >= length - 1
    evaluated = json.loads(cli("eval", run, "--data", data, "--json").stdout)
    assert evaluated["samples"] == n and evaluated["accuracy"] > 0.95
    assert sum(map(sum, evaluated["confusion"])) == int(lengths.sum())  # every real step, no padded one
    assert cli("gradcheck", run, "--samples", "3").exit_code == 0
    weighted = cli("fit", config, "--set", "loss.class_weights=balanced", "--set", "train.epochs=1", "--runs-root", tmp_path / "w")
    assert weighted.exit_code == 0, weighted.stderr
