"""`nntrain plot`, `report`, `compare` and `export` through the command line: what they print and write, exit codes."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished runs of the small spirals config (learning rates 0.1 and 0.3)."""
    from nntrain.api import fit

    from conftest import small_config
    import yaml

    root = tmp_path_factory.mktemp("runs")
    config = root / "small.yaml"
    config.write_text(yaml.safe_dump(small_config(train={"epochs": 3, "batch_size": 32})))
    a, b = root / "a", root / "b"
    fit(config, run_dir=a)
    fit(config, overrides=["optimizer.lr=0.3"], run_dir=b)
    return a, b


def test_plot_writes_the_kinds_asked_for(cli, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("plot", runs[0], "--what", "curves", "--what", "confusion", "--out", "pics")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["wrote pics/a-curves.png", "wrote pics/a-confusion.png"]
    assert (tmp_path / "pics" / "a-curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_json_lists_what_was_not_drawn(cli, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("plot", runs[0], "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert "curves" in out["kinds"] and "roc" in out["skipped"]  # three classes: no ROC curve
    assert all((tmp_path / f).exists() for f in out["files"])


def test_plot_in_the_terminal_writes_no_file(cli, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("plot", *runs, "--terminal")
    assert result.exit_code == 0, result.output
    assert "a: loss per epoch" in result.stdout and "b: loss per epoch" in result.stdout
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["plot"], ["report"], ["export", "--format", "onnx"], ["compare", "RUN"]])
def test_a_directory_that_is_not_a_run_is_exit_2(cli, runs, tmp_path, command):
    args = [arg if arg != "RUN" else runs[0] for arg in command]
    result = cli(*args[:1], tmp_path, *args[1:])
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and "Traceback" not in result.output


def test_plot_refuses_an_unknown_kind(cli, runs):
    result = cli("plot", runs[0], "--what", "confusoin")
    assert result.exit_code == 2
    assert "confusion" in result.stderr  # did you mean


def test_report_and_compare(cli, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("report", runs[0])
    assert result.exit_code == 0, result.output
    assert result.stdout == "wrote a-report.html\n"
    assert (tmp_path / "a-report.html").read_text().startswith("<!DOCTYPE html>")
    result = cli("compare", *runs, "--plot", "both.png")
    assert result.exit_code == 0, result.output
    assert "optimizer.lr" in result.stdout and result.stdout.endswith("wrote both.png\n")
    out = json.loads(cli("compare", *runs, "--json").stdout)
    assert out["differences"] == {"optimizer.lr": [0.1, 0.3]}


def test_compare_text_width(monkeypatch):
    """$COLUMNS sets compare's table width; a pipe or a file without it gets 100 columns, whatever window started it."""
    from nntrain.cli import _text_width

    monkeypatch.setenv("COLUMNS", "57")
    assert _text_width() == 57
    monkeypatch.setenv("COLUMNS", "12")
    assert _text_width() == 40  # no narrower than a table can be laid out in
    monkeypatch.delenv("COLUMNS")
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert _text_width() == 100


def test_export_writes_the_model_and_its_sidecar(cli, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("export", runs[0], "--format", "onnx")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "wrote a.onnx (inputs x0, x1; outputs probabilities; best checkpoint, epoch 3)", "wrote a.onnx.json"
    ]
    result = cli("export", runs[0], "-f", "safetensors", "--json")
    assert json.loads(result.stdout)["path"] == "a.safetensors"
    assert cli("export", runs[0], "--format", "pickle").exit_code == 2


def test_plot_without_matplotlib(cli, runs, tmp_path, monkeypatch):
    """The loss curves in the terminal and how to get images; exit 2 when nothing asked for can be drawn."""
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an installation without the plot extra sees
    monkeypatch.chdir(tmp_path)
    result = cli("plot", runs[0])
    assert result.exit_code == 0, result.output
    assert "a: loss per epoch" in result.stdout and "pip install 'nntrain[plot]'" in result.stderr
    result = cli("plot", runs[0], "--what", "confusion")
    assert result.exit_code == 2 and "pip install 'nntrain[plot]'" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("summary", ["[1, 2]", "{bad"])
@pytest.mark.parametrize("command", ["plot", "report", "compare"])
def test_a_damaged_summary_is_exit_2_everywhere(cli, runs, tmp_path, monkeypatch, summary, command):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(runs[0], damaged)
    (damaged / "summary.json").write_text(summary)
    monkeypatch.chdir(tmp_path)
    extra = {"compare": [runs[1]], "plot": ["--what", "curves"]}.get(command, [])  # the curves mark the best epoch
    result = cli(command, damaged, *extra)
    assert result.exit_code == 2, result.output
    assert "summary" in result.stderr and "Traceback" not in result.output


def test_report_refuses_a_checkpoint_that_is_not_there(cli, runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli("report", runs[0], "--checkpoint", "nothing.npz")
    assert result.exit_code == 2 and "nothing.npz" in result.stderr
    assert not list(tmp_path.iterdir())
