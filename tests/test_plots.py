"""`nntrain.report.plots`: which kinds apply to which run, that each writes a file of its declared size, that the
numbers each draws are the run's own (metrics.csv, eval's confusion matrix, checkpoint weights, diagnostics.csv),
determinism, the errors, the terminal curves and where plot_runs writes.

Tiny runs of the example configs are trained once per module (a few epochs; about two seconds in all).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nntrain.api import evaluate_run, fit, load_run, predict_run
from nntrain.errors import NntrainError
from nntrain.report import plots
from nntrain.report.plots import KINDS, Figure, kinds_for, plot_runs, render, terminal_curves

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# run name -> (config, overrides)
RUNS = {
    "spirals": ("quickstart.yaml", ["train.epochs=3", "train.checkpoint_every=1", "train.diagnostics=true",
                                    "data.options.samples=600"]),
    "spirals-fast": ("quickstart.yaml", ["train.epochs=2", "optimizer.lr=0.3", "data.options.samples=600"]),
    "binary": ("breast_cancer.yaml", ["train.epochs=2"]),
    "regression": ("sine_regression.yaml", ["train.epochs=2"]),
    "lenet": ("lenet_digits.yaml", ["train.epochs=1"]),
    "digits": ("digits.yaml", ["train.epochs=1"]),
    "text": ("text_reviews.yaml", ["train.epochs=1"]),
}  # fmt: skip

EXPECTED_KINDS = {
    "spirals": ["curves", "confusion", "boundary", "boundary-epochs", "weights", "diagnostics", "projection"],
    "spirals-fast": ["curves", "confusion", "boundary", "weights", "projection"],  # checkpoints only at epoch 2
    "binary": ["curves", "confusion", "roc", "pr", "weights", "projection"],
    "regression": ["curves", "scatter", "residuals", "weights", "projection"],
    "lenet": ["curves", "confusion", "filters", "features", "projection"],
    "digits": ["curves", "confusion", "weights", "projection"],
    "text": ["curves", "confusion", "roc", "pr", "projection"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, (config, overrides) in RUNS.items():
        out[name] = root / name
        fit(CONFIGS / config, overrides, run_dir=out[name])
    return out


@pytest.fixture(scope="module")
def figures(runs) -> dict[tuple[str, str], Figure]:
    """Every kind that applies to every run, rendered once as PNG (small grids where a kind takes one)."""
    small = {"boundary": {"grid": 40}, "boundary-epochs": {"grid": 30}, "projection": {"max_points": 300}}
    return {(name, kind): render([path], kind, "png", **small.get(kind, {})) for name, path in runs.items() for kind in kinds_for(path)}


def png_size(content: bytes) -> tuple[int, int]:
    assert content.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(content)) as image:
        return image.size


def svg_size(content: bytes) -> tuple[float, float]:
    head = content[:2000].decode()
    width, height = (float(re.search(rf'<svg[^>]*\b{a}="([\d.]+)pt"', head, re.S).group(1)) for a in ("width", "height"))
    return width, height


def checkpoint(run: Path, which: str = "best") -> dict[str, np.ndarray]:
    with np.load(run / "checkpoints" / f"{which}.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


# ---------------------------------------------------------------- which kinds apply


@pytest.mark.parametrize("name", sorted(EXPECTED_KINDS))
def test_kinds_for_each_kind_of_run(runs, name):
    assert kinds_for(runs[name]) == EXPECTED_KINDS[name]


def test_kinds_are_in_display_order_and_reasons_cover_the_rest(runs):
    found = plots.reasons(runs["regression"])
    assert list(found) == list(KINDS)
    assert found["scatter"] is None
    assert "binary classification" in found["roc"] and "regression" in found["roc"]
    assert "diagnostics: true" in found["diagnostics"]


# ---------------------------------------------------------------- files of the declared size


def test_every_kind_that_applies_renders_a_png_of_its_declared_size(figures):
    assert {kind for _, kind in figures} == set(KINDS)  # every kind is exercised
    for (name, kind), fig in figures.items():
        assert fig.kind == kind and fig.fmt == "png", (name, kind)
        assert len(fig.content) > 5000, (name, kind)
        assert png_size(fig.content) == fig.size, (name, kind)
        # 800 x 500 pixels, but curves of more than 4 panels grow by 250 pixels a row of two
        assert fig.size == ((800, 750) if (name, kind) == ("regression", "curves") else (800, 500)), (name, kind)
        json.dumps(fig.data)  # the numbers are JSON-ready (for --json)


@pytest.mark.parametrize("name,kind", [("spirals", "curves"), ("lenet", "filters"), ("binary", "pr"), ("spirals", "boundary")])
def test_svg_declares_its_size_and_renders_deterministically(runs, name, kind):
    options = {"grid": 30} if kind == "boundary" else {}
    first = render([runs[name]], kind, "svg", **options)
    second = render([runs[name]], kind, "svg", **options)
    assert first.content.startswith(b"<?xml") and b"<svg" in first.content[:1000]
    assert svg_size(first.content) == (first.size[0] * 0.72, first.size[1] * 0.72) == (576.0, 360.0)
    assert first.content == second.content
    assert b"<dc:date>" not in first.content  # no timestamp


def test_png_renders_deterministically(runs, figures):
    for name, kind in [("spirals", "curves"), ("spirals", "diagnostics"), ("lenet", "features"), ("text", "projection")]:
        options = {"max_points": 300} if kind == "projection" else {}
        assert render([runs[name]], kind, "png", **options).content == figures[name, kind].content, kind


def test_curves_with_many_metrics_grow_taller(figures):
    fig = figures["regression", "curves"]  # loss, mse, mae, r2, lr: 5 panels in 3 rows of 2
    assert fig.data["panels"] == ["loss", "mse", "mae", "r2", "lr"]
    assert fig.size == (800, 750) == png_size(fig.content)


# ---------------------------------------------------------------- the numbers are the run's


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_curves_data_is_metrics_csv(runs, figures):
    rows = read_csv(runs["spirals"] / "metrics.csv")
    (data,) = figures["spirals", "curves"].data["runs"]
    assert data["epoch"] == [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert set(data["series"]) == set(rows[0]) - {"epoch", "seconds"}
    for column, values in data["series"].items():
        assert values == [float(r[column]) for r in rows], column
    summary = json.loads((runs["spirals"] / "summary.json").read_text())
    assert data["best_epoch"] == summary["best_epoch"]
    assert data["monitor"] == "val_loss"
    assert figures["spirals", "curves"].data["panels"] == ["loss", "accuracy", "lr"]


def test_several_runs_overlay_in_one_curves_plot(runs):
    fig = render([runs["spirals"], runs["spirals-fast"]], "curves")
    assert [r["run"] for r in fig.data["runs"]] == ["spirals", "spirals-fast"]
    assert [len(r["epoch"]) for r in fig.data["runs"]] == [3, 2]
    assert fig.data["runs"][1]["series"]["lr"] == [0.3, 0.3]


def test_confusion_is_evals(runs, figures):
    for name in ("spirals", "lenet", "binary"):
        data = figures[name, "confusion"].data
        result = evaluate_run(runs[name], "best", "test")
        assert data["split"] == "test" and data["checkpoint"] == "best"
        assert data["confusion"] == result["confusion"]
        assert data["classes"] == result["classes"]
        assert data["accuracy"] == pytest.approx(result["accuracy"])


@pytest.mark.parametrize("name", ["binary", "text"])
def test_roc_and_pr_areas_are_evals(runs, figures, name):
    result = evaluate_run(runs[name], "best", "test", metrics=["roc_auc", "average_precision"])
    roc, pr = figures[name, "roc"].data, figures[name, "pr"].data
    assert roc["auc"] == pytest.approx(result["roc_auc"], abs=1e-12)
    assert pr["ap"] == pytest.approx(result["average_precision"], abs=1e-12)
    assert roc["fpr"][0] == roc["tpr"][0] == 0 and roc["fpr"][-1] == roc["tpr"][-1] == 1
    assert np.all(np.diff(roc["fpr"]) >= 0) and np.all(np.diff(pr["recall"]) >= 0)
    assert roc["samples"] == pr["samples"] == result["samples"]


def test_regression_plots_are_the_runs_predictions(runs, figures):
    result = evaluate_run(runs["regression"], "best", "test")
    for kind in ("scatter", "residuals"):
        data = figures["regression", kind].data
        actual, predicted = np.array(data["actual"]), np.array(data["predicted"])
        assert actual.shape == predicted.shape == (result["samples"], 1)
        assert np.array(data["residual"]) == pytest.approx(actual - predicted)
        assert np.mean((actual - predicted) ** 2) == pytest.approx(result["mse"], rel=1e-6)
        assert data["r2"] == pytest.approx(result["r2"], rel=1e-6)
        assert data["mae"] == pytest.approx(result["mae"], rel=1e-6)


def test_boundary_is_what_predict_says_at_the_grid_points(runs, figures, tmp_path):
    data = figures["spirals", "boundary"].data
    xs, ys, predicted = np.array(data["x"]), np.array(data["y"]), np.array(data["predicted"])
    assert predicted.shape == (40, 40)
    picked = [(i, j) for i in range(0, 40, 3) for j in range(0, 40, 3)]
    points = tmp_path / "grid.csv"
    points.write_text("x0,x1\n" + "".join(f"{float(xs[j])!r},{float(ys[i])!r}\n" for i, j in picked))
    text, problems = predict_run(runs["spirals"], points)
    assert not problems
    classes = [row["class"] for row in csv.DictReader(io.StringIO(text))]
    assert classes == [data["classes"][predicted[i, j]] for i, j in picked]
    # The points drawn are the training rows, with their own classes.
    splits = np.load(runs["spirals"] / "splits.npz")
    assert data["split"] == "train" and len(data["labels"]) == len(splits["train"]) == len(data["points"])
    assert 0.5 < data["accuracy"] <= 1


def test_boundary_epochs_frames_are_the_epoch_checkpoints(runs, figures):
    data = figures["spirals", "boundary-epochs"].data
    assert data["epochs"] == [1, 2, 3]
    assert [Path(p).name for p in data["checkpoints"]] == ["epoch-0001.npz", "epoch-0002.npz", "epoch-0003.npz"]
    last = render([runs["spirals"]], "boundary", which="last", grid=30).data
    assert data["predicted"][-1] == last["predicted"] and data["x"] == last["x"]
    assert data["predicted"][0] != data["predicted"][-1]  # the boundary moves


def test_boundary_epochs_as_an_animated_gif(runs):
    fig = render([runs["spirals"]], "boundary-epochs", "gif", grid=30, frames=2)
    assert fig.data["epochs"] == [1, 3]
    with Image.open(io.BytesIO(fig.content)) as image:
        assert image.format == "GIF" and image.n_frames == 2 and image.size == fig.size == (800, 500)
    assert render([runs["spirals"]], "boundary-epochs", "gif", grid=30, frames=2).content == fig.content


def test_weights_are_the_checkpoints_first_matrix(runs, figures):
    for name, images in (("spirals", False), ("digits", True)):
        data = figures[name, "weights"].data
        assert data["layer"] == 0 and data["as_images"] is images
        assert np.array_equal(np.array(data["weight"]), checkpoint(runs[name])["layers.0.weight"].astype(np.float64))
    assert figures["digits", "weights"].data["sample_shape"] == [1, 8, 8]


def test_filters_are_the_checkpoints_kernels(runs, figures):
    saved = checkpoint(runs["lenet"])
    data = figures["lenet", "filters"].data
    assert data["layer"] == 0 and data["shown"] == [16, 1]
    assert np.array_equal(np.array(data["weight"]), saved["layers.0.weight"].astype(np.float64))
    second = render([runs["lenet"]], "filters", layer=4).data
    assert np.array(second["weight"]).shape == (32, 16, 3, 3) and second["shown"] == [32, 16]
    assert np.array_equal(np.array(second["weight"]), saved["layers.4.weight"].astype(np.float64))
    with pytest.raises(NntrainError, match=r"layer 1 has no convolution filters.*: 0, 4"):
        render([runs["lenet"]], "filters", layer=1)


def test_feature_maps_are_the_convolution_of_the_input(runs, figures):
    """The maps of layer 0 (3x3 kernels, padding same) recomputed from the checkpoint by direct summation."""
    data = figures["lenet", "features"].data
    saved = checkpoint(runs["lenet"])
    w, b = saved["layers.0.weight"].astype(np.float64), saved["layers.0.bias"].astype(np.float64)
    x = np.pad(np.array(data["input"]), ((0, 0), (1, 1), (1, 1)))
    expected = np.zeros((16, 8, 8))
    for f in range(16):
        for i in range(8):
            for j in range(8):
                expected[f, i, j] = np.sum(w[f] * x[:, i : i + 3, j : j + 3]) + b[f]
    assert np.array(data["maps"]) == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert data["row"] == int(np.load(runs["lenet"] / "splits.npz")["test"][0])
    other = render([runs["lenet"]], "features", sample=5, split="val", layer=2).data
    assert other["sample"] == 5 and other["split"] == "val" and other["layer"] == 2
    assert np.min(other["maps"]) >= 0  # layer 2 is the relu after batch_norm
    with pytest.raises(NntrainError, match="sample must be a row"):
        render([runs["lenet"]], "features", sample=10**6)


def test_diagnostics_data_is_diagnostics_csv(runs, figures):
    rows = read_csv(runs["spirals"] / "diagnostics.csv")
    data = figures["spirals", "diagnostics"].data
    assert data["epochs"] == [1, 2, 3]
    assert [(e["layer"], e["type"]) for e in data["layers"]] == sorted({(int(r["layer"]), r["type"]) for r in rows})
    for entry in data["layers"]:
        mine = [r for r in rows if int(r["layer"]) == entry["layer"]]
        for column in ("grad_norm", "update_ratio", "dead_fraction", "activation_std"):
            assert entry[column] == [float(r[column]) if r[column] else None for r in mine], column


def test_projection_is_the_pca_of_the_hidden_layer(runs, figures):
    """The spirals' relu outputs, recomputed from the checkpoint, projected on the top eigenvectors of their covariance."""
    data = figures["spirals", "projection"].data
    assert data["of"] == "activations" and data["layer"] == 1 and data["method"] == "pca"
    exp = load_run(runs["spirals"])
    X, y, _ = exp.rows(data["split"], np.array(data["rows"]))
    saved = checkpoint(runs["spirals"])
    h = np.maximum(X.astype(np.float64) @ saved["layers.0.weight"] + saved["layers.0.bias"], 0)
    centred = h - h.mean(axis=0)
    values, vectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    top = vectors[:, ::-1][:, :2]
    points = np.array(data["points"])
    assert np.abs(points) == pytest.approx(np.abs(centred @ top), rel=1e-4, abs=1e-4)  # an axis' sign is a convention
    assert data["explained"] == pytest.approx(values[::-1][:2] / values.sum(), rel=1e-4)
    assert data["labels"] == y.tolist()


def test_projection_of_an_embedding_is_its_matrix(runs, figures):
    data = figures["text", "projection"].data
    saved = checkpoint(runs["text"])
    table = saved["layers.0.weight"].astype(np.float64)
    assert data["of"] == "token_vectors" and data["layer"] == 0
    assert data["tokens"] == saved["data.text.vocabulary"].tolist()
    centred = table - table.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    assert np.abs(data["points"]) == pytest.approx(np.abs(centred @ vt[:2].T), rel=1e-6, abs=1e-9)


def test_projection_by_tsne_and_without_scikit_learn(runs, monkeypatch):
    fig = render([runs["spirals"]], "projection", method="tsne", max_points=60)
    assert np.array(fig.data["points"]).shape == (60, 2) and "explained" not in fig.data
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    with pytest.raises(NntrainError, match="scikit-learn"):
        render([runs["spirals"]], "projection", method="tsne", max_points=60)


# ---------------------------------------------------------------- errors


def test_a_kind_that_does_not_apply_says_why_and_what_does(runs):
    with pytest.raises(NntrainError, match=r"roc does not apply to spirals: .*binary.*3 classes; plots that apply: curves, confusion, boundary"):
        render([runs["spirals"]], "roc")
    with pytest.raises(NntrainError, match="not trained with train.diagnostics"):
        render([runs["lenet"]], "diagnostics")
    with pytest.raises(NntrainError, match="fewer than 2 epoch checkpoints"):
        render([runs["spirals-fast"]], "boundary-epochs")


def test_refused_requests(runs):
    run = runs["spirals"]
    with pytest.raises(NntrainError, match=r"unknown plot 'confusoin' \(did you mean 'confusion'\?\)"):
        render([run], "confusoin")
    with pytest.raises(NntrainError, match="only curves overlay several"):
        render([run, runs["spirals-fast"]], "confusion")
    with pytest.raises(NntrainError, match="takes no option 'grid'"):
        render([run], "confusion", grid=10)
    with pytest.raises(NntrainError, match="cannot be written as 'gif'"):
        render([run], "confusion", "gif")
    with pytest.raises(NntrainError, match="no 'nope' split|unknown split 'nope'"):
        render([run], "confusion", split="nope")
    with pytest.raises(NntrainError, match="not a run directory"):
        render([run / "checkpoints"], "curves")


def block_matplotlib(monkeypatch):
    """What an installation without the plot extra sees: `import matplotlib` fails."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_without_matplotlib_render_says_how_to_install(runs, monkeypatch):
    block_matplotlib(monkeypatch)
    assert not plots.have_matplotlib()
    with pytest.raises(NntrainError, match=re.escape("pip install 'nntrain[plot]'")):
        render([runs["spirals"]], "curves")


def test_without_matplotlib_plot_runs_draws_the_curves_in_the_terminal(runs, monkeypatch, tmp_path):
    block_matplotlib(monkeypatch)
    result = plot_runs([runs["spirals"]], None, tmp_path / "plots")
    assert result["files"] == [] and result["kinds"] == []
    assert result["text"] == terminal_curves([runs["spirals"]])
    assert "nntrain[plot]" in result["skipped"]["curves"]
    assert not (tmp_path / "plots").exists()


# ---------------------------------------------------------------- terminal curves


def test_terminal_curves_shape(runs):
    text = terminal_curves([runs["spirals"]], width=60, height=8)
    lines = text.split("\n")
    assert len(lines) == 1 + 8 + 3  # title, chart, axis, epoch numbers, legend
    assert lines[0] == "spirals: loss per epoch"
    assert all(len(line) <= 60 for line in lines)
    rows = read_csv(runs["spirals"] / "metrics.csv")
    first, last = float(rows[0]["train_loss"]), float(rows[-1]["val_loss"])
    assert lines[1].lstrip().startswith(f"{max(first, float(rows[0]['val_loss'])):.4g} ┤")
    assert "●" in text and "○" in text
    assert lines[-3].endswith("▲")  # the best epoch (the last) under the last column
    assert lines[-1].split() == ["●", "train", f"{float(rows[-1]['train_loss']):.4g}", "○", "val", f"{last:.4g}", "▲", "best", "epoch", "3"]


def test_terminal_curves_of_several_runs_are_blocks(runs):
    text = terminal_curves([runs["spirals"], runs["lenet"]])
    blocks = text.split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == ["spirals: loss per epoch", "lenet: loss per epoch"]
    assert all(len(b.split("\n")) == 1 + 12 + 3 for b in blocks)
    assert all(len(line) <= 72 for line in text.split("\n"))


# ---------------------------------------------------------------- plot_runs: which files, where


def test_plot_runs_draws_every_kind_that_applies_into_a_folder(runs, tmp_path):
    result = plot_runs([runs["lenet"]], None, tmp_path / "plots")
    assert result["kinds"] == EXPECTED_KINDS["lenet"]
    assert result["files"] == [str(tmp_path / "plots" / f"lenet-{kind}.png") for kind in result["kinds"]]
    assert set(result["skipped"]) == set(KINDS) - set(result["kinds"])
    assert "binary classification" in result["skipped"]["roc"]
    assert result["text"] is None
    for path in result["files"]:
        assert png_size(Path(path).read_bytes()) == (800, 500)


def test_plot_runs_without_out_writes_into_the_current_directory(runs, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = plot_runs([runs["spirals"], runs["spirals-fast"]], None, None)
    assert result["kinds"] == ["curves"] and result["files"] == ["spirals+spirals-fast-curves.png"]
    assert (tmp_path / "spirals+spirals-fast-curves.png").stat().st_size > 5000
    one = plot_runs([runs["binary"]], ["roc", "pr"], None, "svg")
    assert one["files"] == ["binary-roc.svg", "binary-pr.svg"]


def test_plot_runs_out_is_a_file_or_a_stem(runs, tmp_path):
    single = plot_runs([runs["spirals"]], ["boundary-epochs"], tmp_path / "evolution.gif", grid=20)
    assert single["files"] == [str(tmp_path / "evolution.gif")]
    assert Image.open(tmp_path / "evolution.gif").n_frames == 3
    stem = plot_runs([runs["spirals"]], ["curves", "confusion"], tmp_path / "fig.svg")
    assert stem["files"] == [str(tmp_path / "fig-curves.svg"), str(tmp_path / "fig-confusion.svg")]
    assert all(Path(p).read_bytes().startswith(b"<?xml") for p in stem["files"])


def test_plot_runs_refuses(runs, tmp_path):
    run = runs["spirals"]
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(NntrainError, match="inside the run directory"):
        plot_runs([run], ["curves"], run / "curves.png")
    assert sorted(p.name for p in run.rglob("*")) == before  # nothing written into the run
    with pytest.raises(NntrainError, match="plot roc does not apply"):
        plot_runs([run], ["curves", "roc"], tmp_path)
    with pytest.raises(NntrainError, match=r"option 'grid' \(--grid\) applies to none of the plots drawn"):
        plot_runs([run], ["curves"], tmp_path, grid=10)
    with pytest.raises(NntrainError, match="ends in .svg, but the format asked for is png"):
        plot_runs([run], ["curves"], tmp_path / "x.svg", "png")


def test_a_network_with_batch_norm_over_features_is_plotted(tmp_path):
    """Loading such a run without its data is refused (batch_norm's minimum batch against 0 training rows);
    the plots then load it with the data."""
    run = tmp_path / "bn"
    fit(CONFIGS / "classic" / "mlp_digits_regularized.yaml", ["train.epochs=1"], run_dir=run)
    assert kinds_for(run) == ["curves", "confusion", "weights", "projection"]
    fig = render([run], "weights")
    assert np.array_equal(np.array(fig.data["weight"]), checkpoint(run)["layers.0.weight"].astype(np.float64))
