"""`nntrain fit --resume`: a resumed run equals an uninterrupted one, bit for bit; what may and
may not change on resume; recovery from a corrupt last checkpoint and from a crash between
writing metrics.csv and the checkpoint."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml

from conftest import small_config


def read_rows(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def without_seconds(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def load(path):
    with np.load(path, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def state(arrays):
    """Parameters and optimizer state of a checkpoint."""
    return {k: v for k, v in arrays.items() if k.startswith(("layers.", "optim."))}


def assert_same_state(a, b):
    a, b = state(a), state(b)
    assert sorted(a) == sorted(b)
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, different


def write(path, config):
    path.write_text(yaml.safe_dump(config))
    return path


OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "adam": {"name": "adam", "lr": 0.01},
}


@pytest.fixture
def setup(cli, tmp_path):
    """setup(optimizer) -> (config path, run A: 6 epochs straight)."""

    def make(optimizer="sgd", **train):
        raw = small_config(train={"epochs": 6, "batch_size": 32, **train})
        raw["optimizer"] = OPTIMIZERS[optimizer]
        config = write(tmp_path / "small.yaml", raw)
        a = tmp_path / "A"
        result = cli("fit", config, "--run-dir", a, "-q")
        assert result.exit_code == 0, result.output
        return config, a

    return make


def start_b(cli, config, b, epochs=3):
    result = cli("fit", config, "--run-dir", b, "-q", "--set", f"train.epochs={epochs}")
    assert result.exit_code == 0, result.output
    assert len(read_rows(b)) == epochs


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_resume_equals_uninterrupted(cli, setup, tmp_path, optimizer):
    config, a = setup(optimizer)
    b = tmp_path / "B"
    start_b(cli, config, b)
    result = cli("fit", "--resume", b, "--set", "train.epochs=6")
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr and "last.npz" in result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["4/6", "5/6", "6/6"]

    last_a, last_b = load(a / "checkpoints" / "last.npz"), load(b / "checkpoints" / "last.npz")
    assert_same_state(last_a, last_b)
    assert str(last_a["meta.rng"]) == str(last_b["meta.rng"])
    assert int(last_b["meta.epoch"]) == 6
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))
    assert_same_state(load(a / "checkpoints" / "best.npz"), load(b / "checkpoints" / "best.npz"))

    summary_a = json.loads((a / "summary.json").read_text())
    summary_b = json.loads((b / "summary.json").read_text())
    assert summary_b["status"] == "completed" and summary_b["epochs_completed"] == 6
    for key in ("best_epoch", "best_value", "final"):
        assert summary_a[key] == summary_b[key], key
    assert yaml.safe_load((b / "config.yaml").read_text())["train"]["epochs"] == 6


def test_resume_with_a_changed_key_is_refused(cli, setup, tmp_path):
    config, _ = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    before = {p: p.read_bytes() for p in [b / "metrics.csv", b / "config.yaml", b / "checkpoints" / "last.npz"]}
    result = cli("fit", "--resume", b, "--set", "train.epochs=6", "--set", "optimizer.lr=0.5")
    assert result.exit_code == 2
    assert "optimizer.lr" in result.stderr
    assert "train.epochs" not in result.stderr.split("changed in")[-1].split(";")[0]
    assert "Traceback" not in result.output
    assert {p: p.read_bytes() for p in before} == before  # the run is left as it was


def test_resume_cannot_lower_epochs(cli, setup, tmp_path):
    config, _ = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    result = cli("fit", "--resume", b, "--set", "train.epochs=2")
    assert result.exit_code == 2
    assert "train.epochs" in result.stderr
    assert len(read_rows(b)) == 3


def test_resume_with_its_own_resolved_config(cli, setup, tmp_path):
    config, a = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    copy = write(tmp_path / "copy.yaml", yaml.safe_load((b / "config.yaml").read_text()))
    result = cli("fit", "--resume", b, copy, "--set", "train.epochs=6", "-q")
    assert result.exit_code == 0, result.output
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))


def test_resume_with_the_matching_config_file(cli, setup, tmp_path):
    """The config the run was started from (plus the same --set) is a matching config."""
    config, a = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    result = cli("fit", "--resume", b, config, "--set", "train.epochs=6", "-q")
    assert result.exit_code == 0, result.output
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))


def test_resume_with_a_different_config_file_is_refused(cli, setup, tmp_path):
    config, _ = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    other = write(tmp_path / "other.yaml", small_config(optimizer={"name": "sgd", "lr": 0.3, "momentum": 0.9}))
    result = cli("fit", "--resume", b, other, "--set", "train.epochs=6")
    assert result.exit_code == 2
    assert "optimizer.lr" in result.stderr
    assert len(read_rows(b)) == 3


def test_corrupt_last_checkpoint_falls_back_to_newest_epoch_checkpoint(cli, setup, tmp_path):
    config, a = setup(checkpoint_every=1)
    b = tmp_path / "B"
    start_b(cli, config, b)
    last = b / "checkpoints" / "last.npz"
    last.write_bytes(b"garbage, not a zip file" * 10)
    result = cli("fit", "--resume", b, "--set", "train.epochs=6")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning, result.stderr
    assert "last.npz" in warning[0] and "epoch-0003.npz" in warning[0]
    assert_same_state(load(a / "checkpoints" / "last.npz"), load(last))
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))


def test_truncated_checkpoints_fall_back_and_drop_later_metrics(cli, setup, tmp_path):
    """last.npz and the epoch-4 checkpoint torn: resume from epoch 2, forget metrics rows 3 and 4."""
    config, a = setup(checkpoint_every=2)
    b = tmp_path / "B"
    start_b(cli, config, b, epochs=4)
    for name in ("last.npz", "epoch-0004.npz", "best.npz"):
        path = b / "checkpoints" / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = cli("fit", "--resume", b, "--set", "train.epochs=6")
    assert result.exit_code == 0, result.output
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warning and "last.npz" in warning[0] and "epoch-0002.npz" in warning[0], result.stderr
    assert [line.split()[1] for line in result.stdout.splitlines() if line.startswith("epoch ")] == ["3/6", "4/6", "5/6", "6/6"]
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))
    assert_same_state(load(a / "checkpoints" / "last.npz"), load(b / "checkpoints" / "last.npz"))


def test_no_readable_checkpoint_is_an_error(cli, setup, tmp_path):
    config, _ = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    for path in (b / "checkpoints").iterdir():
        path.write_bytes(b"")
    result = cli("fit", "--resume", b, "--set", "train.epochs=6")
    assert result.exit_code == 2
    assert "last.npz" in result.stderr
    assert "Traceback" not in result.output


def test_metrics_rows_after_the_checkpoint_are_dropped(cli, setup, tmp_path):
    config, a = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    # A crash after the row of epoch 4 was written but before its checkpoint.
    with open(b / "metrics.csv", "a") as f:
        f.write("4,9.99,0.01,9.99,0.01,0.1,0.5\n")
    result = cli("fit", "--resume", b, "--set", "train.epochs=6", "-q")
    assert result.exit_code == 0, result.output
    rows = read_rows(b)
    assert [r["epoch"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert "9.99" not in (b / "metrics.csv").read_text()
    assert without_seconds(read_rows(a)) == without_seconds(rows)


def test_resume_of_a_non_run_directory(cli, tmp_path):
    (tmp_path / "plain").mkdir()
    for target in (tmp_path / "plain", tmp_path / "missing"):
        result = cli("fit", "--resume", target)
        assert result.exit_code == 2
        assert "not a run directory" in result.stderr
        assert "Traceback" not in result.output


def test_resume_refuses_weights_and_run_dir(cli, setup, tmp_path):
    config, a = setup()
    result = cli("fit", "--resume", a, "--run-dir", tmp_path / "elsewhere")
    assert result.exit_code == 2
    result = cli("fit", "--resume", a, "--weights", a / "checkpoints" / "best.npz")
    assert result.exit_code == 2
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("name", ["metrics.csv", "diagnostics.csv"])
@pytest.mark.parametrize("damage", [b"\xff\xfe not utf-8\n", "4,caf\u00e9\n".encode("latin-1")])
def test_an_unreadable_csv_of_the_run_is_an_error_naming_it(cli, setup, tmp_path, name, damage):
    config, _ = setup(diagnostics=True)
    b = tmp_path / "B"
    start_b(cli, config, b)
    with open(b / name, "ab") as f:
        f.write(damage)
    before = (b / name).read_bytes()
    result = cli("fit", "--resume", b, "--set", "train.epochs=6")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    assert f"cannot read the {name.split('.')[0]} file '{b / name}'" in result.stderr
    assert (b / name).read_bytes() == before  # left as it was
    if name == "diagnostics.csv":
        result = cli("inspect", b)
        assert result.exit_code == 2 and str(b / name) in result.stderr and "Traceback" not in result.output


def test_a_foreign_metrics_file_is_refused_not_emptied(cli, setup, tmp_path):
    config, _ = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    (b / "metrics.csv").write_text("step,loss\n1,0.5\n")
    result = cli("fit", "--resume", b, "--set", "train.epochs=6")
    assert result.exit_code == 2 and "not this run's metrics file" in result.stderr
    assert (b / "metrics.csv").read_text() == "step,loss\n1,0.5\n"


def test_a_torn_last_metrics_row_is_dropped_on_resume(cli, setup, tmp_path):
    """Killed mid-row: what is left of '12,0.3,...' is '1', which reads as epoch 1 and must not be kept."""
    config, a = setup()
    b = tmp_path / "B"
    start_b(cli, config, b)
    with open(b / "metrics.csv", "a") as f:
        f.write("1")
    result = cli("fit", "--resume", b, "--set", "train.epochs=6", "-q")
    assert result.exit_code == 0, result.output
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))


def test_a_resumed_run_on_the_raw_example_table_equals_an_uninterrupted_one(cli, tmp_path):
    """Column roles, imputation (fill values fitted once, saved, reused) and indicators survive a resume exactly."""
    from pathlib import Path

    config = Path(__file__).resolve().parent.parent / "configs" / "tables" / "customers_raw.yaml"
    a, b = tmp_path / "A", tmp_path / "B"
    assert cli("fit", config, "--run-dir", a, "-q", "--set", "train.epochs=4").exit_code == 0
    assert cli("fit", config, "--run-dir", b, "-q", "--set", "train.epochs=2").exit_code == 0
    result = cli("fit", "--resume", b, "--set", "train.epochs=4")
    assert result.exit_code == 0, result.output
    last_a, last_b = load(a / "checkpoints" / "last.npz"), load(b / "checkpoints" / "last.npz")
    assert_same_state(last_a, last_b)
    for key in ("data.impute.fill", "data.indicators", "data.features", "data.scale.offset", "data.scale.factor"):
        assert np.array_equal(last_a[key], last_b[key]), key
    assert without_seconds(read_rows(a)) == without_seconds(read_rows(b))
