"""`nntrain compare` (nntrain.report.compare): config differences, metrics side by side, sweeps, errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import small_config

from nntrain import api
from nntrain.errors import NntrainError
from nntrain.report import plots
from nntrain.report.compare import compare_runs, flatten, format_comparison, plot_comparison
from nntrain.sweep import run_sweep, sweep_options


def tiny(**sections) -> dict:
    """A spirals classifier that trains 3 epochs in a fraction of a second."""
    return small_config(
        data={"dataset": "spirals", "options": {"samples": 200, "classes": 3, "noise": 0.2}},
        model={"layers": [{"linear": 8}, "relu", {"linear": 3}]},
        train={"epochs": 3, "batch_size": 32},
        **sections,
    )


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def metrics_rows(run: Path) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Runs a (the tiny config), b (lr 0.3, 4 epochs), deep (a fourth and fifth layer), and a 2-trial sweep."""
    root = tmp_path_factory.mktemp("compare")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny()))
    paths = {name: root / name for name in ("a", "b", "deep")}
    api.fit(config, run_dir=paths["a"])
    api.fit(config, ["optimizer.lr=0.3", "train.epochs=4"], run_dir=paths["b"])
    api.fit(config, ["model.layers=[{linear: 8}, relu, {linear: 8}, tanh, {linear: 3}]"], run_dir=paths["deep"])
    paths["sweep"] = root / "sweep"
    run_sweep(tiny(), spec=sweep_options(grid=["optimizer.lr=0.3,0.01"]), sweep_dir=paths["sweep"])
    return paths


def test_flatten_gives_the_dotted_keys_set_takes():
    assert flatten({"model": {"layers": [{"type": "linear", "units": 8}, {"type": "relu"}]}, "seed": 0, "x": {}, "y": []}) == {
        "model.layers.0.type": "linear",
        "model.layers.0.units": 8,
        "model.layers.1.type": "relu",
        "seed": 0,
        "x": {},
        "y": [],
    }


def test_exactly_the_keys_that_differ_with_the_value_of_each_run(runs):
    result = compare_runs([runs["a"], runs["b"]])
    assert result["differences"] == {"optimizer.lr": [0.1, 0.3], "train.epochs": [3, 4]}
    assert result["absent"] == {}
    assert [r["name"] for r in result["runs"]] == ["a", "b"]
    assert [r["path"] for r in result["runs"]] == [str(runs["a"]), str(runs["b"])]
    # in the order given
    again = compare_runs([runs["b"], runs["a"]])
    assert again["differences"] == {"optimizer.lr": [0.3, 0.1], "train.epochs": [4, 3]}
    json.dumps(result)  # what `compare --json` prints


def test_same_config_twice_has_no_differences(runs):
    result = compare_runs([runs["a"], runs["a"]])
    assert result["differences"] == {}
    assert "config differences: none" in format_comparison(result)


def test_a_key_only_one_run_has_is_absent_in_the_others_in_config_order(runs):
    result = compare_runs([runs["a"], runs["deep"]])
    assert list(result["differences"].items()) == [  # layer 3 and 4 right after layer 2, before optimizer / train
        ("model.layers.2.units", [3, 8]),
        ("model.layers.3.type", [None, "tanh"]),
        ("model.layers.4.type", [None, "linear"]),
        ("model.layers.4.units", [None, 3]),
        ("model.layers.4.init", [None, None]),
        ("model.layers.4.init_scale", [None, None]),
    ]
    assert result["absent"] == {k: [0] for k in result["differences"] if k.startswith(("model.layers.3", "model.layers.4"))}
    lines = format_comparison(result).splitlines()
    assert next(line for line in lines if "model.layers.4.init " in line).split() == ["model.layers.4.init", "(absent)", "null"]


def test_metrics_side_by_side_are_the_summaries_and_metrics_csv(runs):
    result = compare_runs([runs["a"], runs["b"], runs["deep"]])
    for info, name in zip(result["runs"], ("a", "b", "deep")):
        s = summary(runs[name])
        assert info["status"] == s["status"] == "completed"
        assert info["epochs"] == s["epochs_completed"]
        assert info["epochs_planned"] == s["epochs_planned"]
        assert info["seconds"] == s["seconds"]
        assert info["best_epoch"] == s["best_epoch"]
        assert info["best_value"] == s["best_value"]
        assert info["monitor"] == s["monitor"] == "val_loss"
        assert info["final"] == s["final"]
        row = next(r for r in metrics_rows(runs[name]) if int(r["epoch"]) == s["best_epoch"])
        assert info["best_metrics"] == {k: float(v) for k, v in row.items() if k not in ("epoch", "lr", "seconds")}
        assert info["epoch_seconds"] == round(sum(float(r["seconds"]) for r in metrics_rows(runs[name])), 3)


def test_the_table_shows_each_runs_values_within_100_columns(runs):
    result = compare_runs([runs["a"], runs["b"]])
    text = format_comparison(result)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100
    lr = next(line for line in lines if line.strip().startswith("optimizer.lr"))
    assert lr.split() == ["optimizer.lr", "0.1", "0.3"]
    epochs = next(line for line in lines if line.strip().startswith("train.epochs"))
    assert epochs.split() == ["train.epochs", "3", "4"]
    for split in ("train", "val", "test"):
        row = next(line for line in lines if line.strip().startswith(f"{split} accuracy"))
        assert row.split()[2:] == [f"{summary(runs[n])['final'][split]['accuracy']:.4f}" for n in ("a", "b")]
    b = summary(runs["b"])
    assert f"val_loss {b['best_value']:.4f} ({b['best_epoch']})" in text
    assert "4/4" in text
    assert f"{b['seconds']:.2f}s" in text


def test_many_runs_and_long_values_stay_within_100_columns(runs, tmp_path):
    long_name = "a-run-name-that-goes-on-and-on-" + "x" * 60
    other = tmp_path / "other"
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(tiny(name=long_name[:100])))
    api.fit(config, run_dir=other)
    result = compare_runs([runs["a"], runs["b"], runs["deep"], runs["sweep"], other, runs["a"], runs["b"]])
    assert len(result["runs"]) == 8
    text = format_comparison(result)
    assert max(map(len, text.splitlines())) <= 100
    assert long_name[:100] not in text and "..." in text  # cut in the middle
    assert result["differences"]["name"][5] == long_name[:100]  # the JSON keeps it whole
    assert "runs 1-" in text  # the columns wrap into blocks


def test_a_sweep_directory_stands_for_its_trials(runs):
    sweep = runs["sweep"]
    result = compare_runs([sweep])
    assert [r["path"] for r in result["runs"]] == [str(sweep / "trial-000"), str(sweep / "trial-001")]
    assert result["differences"] == {"optimizer.lr": [0.3, 0.01]}
    for info in result["runs"]:
        assert info["final"] == summary(Path(info["path"]))["final"]
    mixed = compare_runs([runs["a"], sweep])
    assert [r["name"] for r in mixed["runs"]] == ["a", "trial-000", "trial-001"]
    assert mixed["differences"] == {"optimizer.lr": [0.1, 0.3, 0.01]}


def test_runs_with_the_same_directory_name_are_told_apart(runs, tmp_path):
    copy = tmp_path / "elsewhere" / "a"
    shutil.copytree(runs["a"], copy)
    result = compare_runs([runs["a"], copy])
    names = [r["name"] for r in result["runs"]]
    assert len(set(names)) == 2 and all(n.endswith("/a") for n in names)


def test_a_run_without_summary_uses_metrics_csv(runs, tmp_path):
    killed = tmp_path / "killed"
    shutil.copytree(runs["b"], killed)
    (killed / "summary.json").unlink()
    result = compare_runs([runs["b"], killed])
    info, full = result["runs"][1], summary(runs["b"])
    assert info["status"] is None
    assert info["epochs"] == len(metrics_rows(runs["b"])) == full["epochs_completed"]
    assert info["best_epoch"] == full["best_epoch"]
    assert info["best_value"] == pytest.approx(full["best_value"], rel=1e-5)  # metrics.csv keeps 6 digits
    assert info["final"] == {}
    assert any("no summary.json" in note for note in result["notes"])
    text = format_comparison(result)
    assert "no summary" in text and "note:" in text


def test_not_a_run_is_an_error_that_says_what_a_run_directory_holds(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (empty, tmp_path / "missing", runs["a"] / "metrics.csv"):
        with pytest.raises(NntrainError) as info:
            compare_runs([runs["a"], path])
        message = str(info.value)
        assert str(path) in message and "config.yaml" in message and "sweep.yaml" in message
        assert info.value.exit_code == 2


def test_fewer_than_two_runs_is_an_error(runs, tmp_path):
    with pytest.raises(NntrainError, match="at least 2 runs"):
        compare_runs([runs["a"]])
    with pytest.raises(NntrainError, match="at least 2 runs"):
        compare_runs([])
    one_trial = tmp_path / "one"
    run_sweep(tiny(), spec=sweep_options(grid=["optimizer.lr=0.3"]), sweep_dir=one_trial)
    with pytest.raises(NntrainError, match="at least 2 runs"):
        compare_runs([one_trial])


def test_plot_overlays_the_runs_curves(runs, tmp_path):
    result = compare_runs([runs["a"], runs["sweep"]])
    if not plots.have_matplotlib():
        pytest.fail("matplotlib is a test dependency (pip install -e '.[test]')")
    out = plot_comparison(result, tmp_path / "curves.png")
    assert out == tmp_path / "curves.png"
    expected = plots.render([runs["a"], runs["sweep"] / "trial-000", runs["sweep"] / "trial-001"], "curves", "png")
    assert out.read_bytes() == expected.content and out.read_bytes().startswith(b"\x89PNG")
    assert plot_comparison(result, tmp_path / "curves.svg").read_bytes().lstrip().startswith(b"<?xml")
    with pytest.raises(NntrainError, match=".png or .svg"):
        plot_comparison(result, tmp_path / "curves.jpeg")
    with pytest.raises(NntrainError, match="inside the run directory"):
        plot_comparison(result, runs["a"] / "curves.png")
    assert not (runs["a"] / "curves.png").exists()
