"""Bad input found in review: each gives a clear message and the documented exit code, never a traceback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nntrain.train.metrics import Metrics
from nntrain.engine.losses import MSE


@pytest.fixture
def run(cli, write_config, tmp_path):
    path = tmp_path / "run"
    result = cli("fit", write_config(train={"epochs": 2}), "--run-dir", path, "-q")
    assert result.exit_code == 0, result.stderr
    return path


def rewrite_checkpoint(src, dst, **changes):
    with np.load(src, allow_pickle=False) as npz:
        arrays = dict(npz)
    for key, value in changes.items():
        key = key.replace("__", ".")
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(dst, **arrays)


def test_a_nan_metric_fails_a_gate(cli, run):
    weight = np.load(run / "checkpoints/last.npz")["layers.0.weight"]
    rewrite_checkpoint(run / "checkpoints/last.npz", run / "nan.npz", layers__0__weight=np.full_like(weight, np.nan))
    result = cli("eval", run, "--checkpoint", run / "nan.npz", "--fail-over", "loss=100", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"]
    assert "RuntimeWarning" not in result.stderr


def test_a_checkpoint_of_another_run_is_refused(cli, write_config, run, tmp_path):
    other = tmp_path / "other"
    assert cli("fit", write_config("o.yaml", seed=5, train={"epochs": 1}), "--run-dir", other, "-q").exit_code == 0
    result = cli("eval", run, "--checkpoint", other / "checkpoints/last.npz")
    assert result.exit_code == 2 and "not a checkpoint of" in result.stderr and "seed" in result.stderr


def test_an_incomplete_checkpoint_cannot_be_resumed(cli, run):
    rewrite_checkpoint(run / "checkpoints/last.npz", run / "checkpoints/last.npz", meta__best_epoch=None)
    for path in run.glob("checkpoints/*.npz"):
        if path.name != "last.npz":
            path.unlink()
    result = cli("fit", "--resume", run, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "damaged or incomplete" in result.stderr


def test_optimizer_state_of_the_wrong_shape_is_refused(cli, run):
    buffer = np.zeros((3, 3))
    rewrite_checkpoint(run / "checkpoints/last.npz", run / "checkpoints/last.npz", optim__layers__0__weight__momentum_buffer=buffer)
    for path in run.glob("checkpoints/*.npz"):
        if path.name != "last.npz":
            path.unlink()
    result = cli("fit", "--resume", run, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "momentum_buffer" in result.stderr


@pytest.mark.parametrize("splits", [{"train": np.arange(3), "test": np.arange(2)}, {"train": np.array([0.5]), "val": np.arange(2), "test": np.arange(2)}, {"train": np.array([-1, 2]), "val": np.arange(2), "test": np.arange(2)}])
def test_a_bad_splits_file_is_refused(cli, run, splits):
    np.savez(run / "splits.npz", **splits)
    result = cli("eval", run)
    assert result.exit_code == 2 and "splits.npz" in result.stderr


def test_diverging_without_validation_keeps_finite_checkpoints(cli, write_config, tmp_path):
    config = write_config(
        data={"split": {"val": 0, "test": 0}}, optimizer={"lr": 1e30, "momentum": 0.0}, train={"batch_size": "full", "epochs": 3}
    )
    result = cli("fit", config, "--run-dir", tmp_path / "d", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "diverged"
    for path in (tmp_path / "d/checkpoints").glob("*.npz"):
        with np.load(path) as npz:
            assert np.isfinite(npz["layers.0.weight"]).all(), path.name


def test_a_validation_fraction_that_rounds_to_nothing_is_refused(cli, write_config):
    config = write_config(data={"options": {"samples": 30, "classes": 3, "noise": 0.2}, "split": {"val": 0.01, "test": 0.01}})
    result = cli("validate", config)
    assert result.exit_code == 2 and "data.split.val" in result.stderr


def test_duplicate_yaml_keys_are_refused(cli, tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("data: {dataset: spirals}\nmodel: {layers: [linear: 3]}\ndata: {dataset: moons}\n")
    result = cli("validate", path)
    assert result.exit_code == 2 and "'data' appears twice" in result.stderr


@pytest.mark.parametrize("content, message", [(b"a,a,y\n1,2,0\n", "more than once"), (b"a,y\n\xff\xfe,1\n", "UTF-8")])
def test_bad_csv_headers_and_encodings(cli, write_config, tmp_path, content, message):
    (tmp_path / "bad.csv").write_bytes(content)
    result = cli("validate", write_config(data={"dataset": str(tmp_path / "bad.csv"), "options": {}}))
    assert result.exit_code == 2 and message in result.stderr


def test_unwritable_prediction_output_is_exit_2(cli, run, tmp_path):
    (tmp_path / "in.csv").write_text("x0,x1\n0.1,0.2\n")
    result = cli("predict", run, tmp_path / "in.csv", "--out", tmp_path / "no" / "such" / "dir.csv")
    assert result.exit_code == 2 and "cannot write" in result.stderr and "the predictions" in result.stderr


def test_gradcheck_that_compared_nothing_does_not_pass(cli):
    result = cli("gradcheck", "configs/svm_hinge.yaml", "--eps", "100")
    assert result.exit_code == 1 and "not compared" in result.stdout


def test_r2_keeps_its_precision_with_a_large_offset():
    rng = np.random.default_rng(0)
    y = 1e8 + rng.normal(size=(1000, 1))
    z = y + 0.1 * rng.normal(size=(1000, 1))
    metrics = Metrics(MSE(), ["r2"])
    for start in range(0, 1000, 100):
        metrics.add(0.0, z[start : start + 100], y[start : start + 100])
    exact = 1 - np.sum((z - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert metrics.result()["r2"] == pytest.approx(exact, abs=1e-6)
