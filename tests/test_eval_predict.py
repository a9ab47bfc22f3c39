"""`nntrain eval`, `predict`, `gradcheck` and `datasets` on real run directories."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import yaml

from nntrain.api import load_run
from nntrain.train.experiment import load_dataset, seed_streams

FEATURES = ["x0", "x1"]


def fit(cli, config, run, *args):
    result = cli("fit", config, "--run-dir", run, "-q", *args)
    assert result.exit_code == 0, result.output
    return json.loads((run / "summary.json").read_text())


@pytest.fixture
def run(cli, write_config, tmp_path):
    path = tmp_path / "run"
    fit(cli, write_config(train={"epochs": 5, "batch_size": 32, "checkpoint_every": 2}), path)
    return path


def eval_json(cli, run, *args):
    result = cli("eval", run, "--json", *args)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.strip().splitlines()) == 1
    return json.loads(result.stdout)


def split_csv(run, split, path, with_label=True):
    """The raw rows of one split of a run, as a CSV with the training feature names."""
    exp = load_run(run)
    rows = exp.splits[split]
    raw = load_dataset(exp.config, seed_streams(exp.config.seed)["data"], None)  # exp.dataset.X is scaled
    X, y = raw.X[rows], raw.y[rows]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FEATURES + (["label"] if with_label else []))
        for features, label in zip(X, y):
            writer.writerow([repr(float(v)) for v in features] + ([exp.dataset.classes[label]] if with_label else []))
    return path, [exp.dataset.classes[i] for i in y]


def parse_csv(text):
    reader = csv.reader(io.StringIO(text))
    header = next(reader)
    return header, list(reader)


# --- eval -----------------------------------------------------------------------------------


@pytest.mark.parametrize("split, rows", [("test", 45), ("val", 45), ("train", 210)])
def test_eval_splits(cli, run, split, rows):
    result = eval_json(cli, run, "--split", split, "--checkpoint", "last")
    assert result["data"] == split and result["checkpoint"] == "last"
    assert result["samples"] == rows
    assert result["failed"] == []
    # The last checkpoint is the final network, which summary.json scored on every split.
    final = json.loads((run / "summary.json").read_text())["final"][split]
    assert result["loss"] == pytest.approx(final["loss"], rel=1e-6)
    assert result["accuracy"] == pytest.approx(final["accuracy"])
    assert 0 <= result["accuracy"] <= 1


def test_eval_default_is_best_checkpoint_on_test(cli, run):
    result = eval_json(cli, run)
    assert result["checkpoint"] == "best" and result["data"] == "test" and result["samples"] == 45
    summary = json.loads((run / "summary.json").read_text())
    best_val = eval_json(cli, run, "--split", "val")
    assert best_val["loss"] == pytest.approx(summary["best_value"], rel=1e-6)


def test_eval_checkpoint_file(cli, run):
    epoch2 = run / "checkpoints" / "epoch-0002.npz"
    by_path = eval_json(cli, run, "--checkpoint", epoch2)
    assert by_path["checkpoint"] == str(epoch2)
    with open(run / "metrics.csv", newline="") as f:
        row2 = list(csv.DictReader(f))[1]
    val2 = eval_json(cli, run, "--checkpoint", epoch2, "--split", "val")
    assert val2["loss"] == pytest.approx(float(row2["val_loss"]), rel=1e-5)
    last = eval_json(cli, run, "--checkpoint", "last")
    last_by_path = eval_json(cli, run, "--checkpoint", run / "checkpoints" / "last.npz")
    assert last["loss"] == last_by_path["loss"]
    assert by_path["loss"] != last["loss"]


def test_eval_missing_or_bad_checkpoint(cli, run, tmp_path):
    result = cli("eval", run, "--checkpoint", tmp_path / "nope.npz")
    assert result.exit_code == 2 and "nope.npz" in result.stderr
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"junk")
    result = cli("eval", run, "--checkpoint", junk)
    assert result.exit_code == 2 and "junk.npz" in result.stderr
    assert "Traceback" not in result.output


def test_eval_text_output(cli, run):
    result = cli("eval", run, "--split", "val")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "val (45 samples, best checkpoint)"
    assert [line.split()[0] for line in lines[1:3]] == ["loss", "accuracy"]
    assert lines[3] == "confusion (rows: true, columns: predicted)"
    matrix = [[int(v) for v in line.split()[1:]] for line in lines[5:8]]
    assert sum(map(sum, matrix)) == 45 and [line.split()[0] for line in lines[5:8]] == ["0", "1", "2"]
    assert eval_json(cli, run, "--split", "val")["confusion"] == matrix


def test_fail_under_and_over(cli, run):
    accuracy = eval_json(cli, run)["accuracy"]
    loss = eval_json(cli, run)["loss"]
    assert cli("eval", run, "--fail-under", "accuracy=0.0").exit_code == 0
    result = cli("eval", run, "--fail-under", "accuracy=1.01")
    assert result.exit_code == 1
    assert "FAILED: accuracy" in result.stdout
    assert cli("eval", run, "--fail-over", f"loss={loss * 2}").exit_code == 0
    result = cli("eval", run, "--fail-over", f"loss={loss / 2}", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["failed"] == [f"loss {loss:.4f} > {loss / 2:g}"]
    both = cli("eval", run, "--fail-under", f"accuracy={accuracy}", "--fail-over", f"loss={loss}")
    assert both.exit_code == 0  # the limits are inclusive


@pytest.mark.parametrize("flag, item", [("--fail-under", "acuracy=0.5"), ("--fail-over", "r2=1"), ("--fail-under", "accuracy"), ("--fail-under", "accuracy=high")])
def test_fail_threshold_errors(cli, run, flag, item):
    result = cli("eval", run, flag, item)
    assert result.exit_code == 2
    assert item.split("=")[0] in result.stderr
    assert "Traceback" not in result.output


def test_eval_empty_split(cli, write_config, tmp_path):
    fit(cli, write_config(train={"epochs": 1}), tmp_path / "r", "--set", "data.split.test=0")
    result = cli("eval", tmp_path / "r", "--split", "test")
    assert result.exit_code == 2
    assert "test" in result.stderr
    assert cli("eval", tmp_path / "r", "--split", "val").exit_code == 0


def test_eval_unknown_split_or_run(cli, run, tmp_path):
    assert cli("eval", run, "--split", "validation").exit_code == 2
    result = cli("eval", tmp_path)
    assert result.exit_code == 2 and "not a run directory" in result.stderr


def test_eval_data_file_equals_the_split(cli, run, tmp_path):
    path, _ = split_csv(run, "test", tmp_path / "test.csv")
    on_file = eval_json(cli, run, "--data", path)
    on_split = eval_json(cli, run, "--split", "test")
    assert on_file["data"] == str(path) and on_file["samples"] == 45
    assert on_file["loss"] == pytest.approx(on_split["loss"], rel=1e-6)
    assert on_file["accuracy"] == on_split["accuracy"]


def test_eval_data_file_with_wrong_features(cli, run, tmp_path):
    path = tmp_path / "three.csv"
    path.write_text("a,b,c,label\n1,2,3,0\n4,5,6,1\n")
    result = cli("eval", run, "--data", path)
    assert result.exit_code == 2
    assert "needs the features" in result.stderr
    path.write_text("x0,x1,label\n1,2,7\n")
    result = cli("eval", run, "--data", path)
    assert result.exit_code == 2
    assert "'7'" in result.stderr


# --- predict -----------------------------------------------------------------------------------


def test_predict_probabilities_and_classes(cli, run, tmp_path):
    path, labels = split_csv(run, "test", tmp_path / "test.csv")
    result = cli("predict", run, path)
    assert result.exit_code == 0, result.output
    header, rows = parse_csv(result.stdout)
    assert header == ["class", "p_0", "p_1", "p_2"]
    assert len(rows) == 45
    probs = np.array([[float(v) for v in row[1:]] for row in rows])
    assert np.all(probs >= 0) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    predicted = [row[0] for row in rows]
    assert predicted == [str(i) for i in probs.argmax(axis=1)]
    accuracy = np.mean([p == t for p, t in zip(predicted, labels)])
    assert accuracy == pytest.approx(eval_json(cli, run)["accuracy"])


def test_predict_without_label_column_and_to_file(cli, run, tmp_path):
    path, _ = split_csv(run, "val", tmp_path / "val.csv", with_label=False)
    on_stdout = cli("predict", run, path, "--checkpoint", "last")
    out = tmp_path / "pred.csv"
    to_file = cli("predict", run, path, "--checkpoint", "last", "--out", out)
    assert to_file.exit_code == 0 and to_file.stdout == ""
    assert out.read_text() == on_stdout.stdout
    assert len(parse_csv(on_stdout.stdout)[1]) == 45


def test_predict_columns_in_order_when_names_differ(cli, run, tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("a,b\n0.1,0.2\n-0.5,0.3\n")
    result = cli("predict", run, path)
    assert result.exit_code == 0, result.output
    assert len(parse_csv(result.stdout)[1]) == 2


@pytest.mark.parametrize("text", ["a,b,c\n1,2,3\n", "x0\n1\n", "x0,x1\n1,abc\n", "x0,x1\n", ""])
def test_predict_bad_input(cli, run, tmp_path, text):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    result = cli("predict", run, path)
    assert result.exit_code == 2
    assert "bad.csv" in result.stderr
    assert "Traceback" not in result.output


def test_string_class_labels(cli, tmp_path):
    rng = np.random.default_rng(0)
    with open(tmp_path / "flowers.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["species", "width", "length"])  # the target first: found by name
        for i in range(120):
            species = ["setosa", "virginica"][i % 2]
            centre = -2.0 if species == "setosa" else 2.0
            writer.writerow([species, f"{centre + rng.normal(0, 0.5):.4f}", f"{centre + rng.normal(0, 0.5):.4f}"])
    config = tmp_path / "flowers.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "flowers.csv", "target": "species"},
                "model": {"layers": [{"linear": 8}, "relu", {"linear": 2}]},
                "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
                "train": {"epochs": 5, "batch_size": 16},
            }
        )
    )
    summary = fit(cli, config, tmp_path / "r")
    assert summary["final"]["test"]["accuracy"] == 1.0
    assert eval_json(cli, tmp_path / "r", "--data", tmp_path / "flowers.csv")["samples"] == 120
    query = tmp_path / "q.csv"
    query.write_text("length,width\n-2,-2.1\n2.2,1.9\n-1.5,-2.5\n")
    result = cli("predict", tmp_path / "r", query)
    assert result.exit_code == 0, result.output
    header, rows = parse_csv(result.stdout)
    assert header == ["class", "p_setosa", "p_virginica"]
    assert [row[0] for row in rows] == ["setosa", "virginica", "setosa"]
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("species,width,length\nrosa,1,1\n")
    result = cli("eval", tmp_path / "r", "--data", unknown)
    assert result.exit_code == 2 and "rosa" in result.stderr
    # The run directory alone is enough for predict and eval --data: the training file may go.
    (tmp_path / "flowers.csv").rename(tmp_path / "moved.csv")
    moved = cli("predict", tmp_path / "r", query)
    assert moved.exit_code == 0, moved.output
    assert parse_csv(moved.stdout) == (header, rows)
    assert eval_json(cli, tmp_path / "r", "--data", tmp_path / "moved.csv")["accuracy"] == 1.0


def test_regression(cli, tmp_path):
    config = tmp_path / "sine.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data": {"dataset": "sine", "options": {"samples": 400}},
                "model": {"layers": [{"linear": 16}, "tanh", {"linear": 1}, "identity"]},
                "loss": "mse",
                "optimizer": {"name": "adam", "lr": 0.01},
                "train": {"epochs": 10, "batch_size": 16, "metrics": ["mse", "mae", "r2"]},
            }
        )
    )
    fit(cli, config, tmp_path / "r")
    with open(tmp_path / "r" / "metrics.csv", newline="") as f:
        columns = csv.DictReader(f).fieldnames
    assert columns == ["epoch", "train_loss", "train_mse", "train_mae", "train_r2", "val_loss", "val_mse", "val_mae", "val_r2", "lr", "seconds"]
    result = eval_json(cli, tmp_path / "r")
    assert set(result) >= {"loss", "mse", "mae", "r2", "samples"} and "accuracy" not in result
    assert result["mse"] == pytest.approx(result["loss"], rel=1e-5)
    assert 0.5 < result["r2"] <= 1
    assert cli("eval", tmp_path / "r", "--fail-under", "r2=0.5").exit_code == 0
    assert cli("eval", tmp_path / "r", "--fail-under", "accuracy=0.5").exit_code == 2
    query = tmp_path / "x.csv"
    query.write_text("x0\n0\n1.5707963\n-1.5707963\n")
    result = cli("predict", tmp_path / "r", query)
    assert result.exit_code == 0, result.output
    header, rows = parse_csv(result.stdout)
    assert header == ["prediction"]
    values = [float(row[0]) for row in rows]
    assert abs(values[0]) < 0.3 and values[1] > 0.6 and values[2] < -0.6  # sin(0), sin(pi/2), sin(-pi/2)


# --- gradcheck -----------------------------------------------------------------------------------

TENSORS = ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "input"]


def table_rows(stdout):
    lines = stdout.splitlines()
    assert lines[0].split() == ["tensor", "shape", "checked", "kinks", "max", "rel", "error", "result"]
    return [line.split() for line in lines[1:-1]], lines[-1]


def test_gradcheck_config(cli, write_config):
    result = cli("gradcheck", write_config())
    assert result.exit_code == 0, result.output
    rows, last = table_rows(result.stdout)
    assert [r[0] for r in rows] == TENSORS
    assert [r[1] for r in rows] == ["2x16", "16", "16x3", "3", "8x2"]
    assert all(r[-1] == "pass" for r in rows)
    assert last.startswith("passed: 8 samples")


def test_gradcheck_run_dir(cli, run):
    result = cli("gradcheck", run)
    assert result.exit_code == 0, result.output
    rows, last = table_rows(result.stdout)
    assert [r[0] for r in rows] == TENSORS
    assert last.startswith("passed")


def test_gradcheck_json(cli, write_config):
    result = cli("gradcheck", write_config(), "--json", "--samples", "4", "--set", "model.layers.0.units=5")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["samples"] == 4
    assert [t["name"] for t in report["tensors"]] == TENSORS
    assert [t["shape"] for t in report["tensors"]] == [[2, 5], [5], [5, 3], [3], [4, 2]]
    for t in report["tensors"]:
        assert t["passed"] and 0 <= t["max_rel_error"] <= 1e-6
        assert t["checked"] == int(np.prod(t["shape"]))  # all entries: every tensor is small


def test_gradcheck_can_fail(cli, write_config):
    result = cli("gradcheck", write_config(), "--tol", "0")
    assert result.exit_code == 1
    rows, last = table_rows(result.stdout)
    assert "FAIL" in [r[-1] for r in rows]
    assert last.startswith("FAILED")
    report = json.loads(cli("gradcheck", write_config(), "--tol", "0", "--json").stdout)
    assert report["passed"] is False


def test_gradcheck_bad_source(cli, tmp_path):
    result = cli("gradcheck", tmp_path / "nope.yaml")
    assert result.exit_code == 2 and "nope.yaml" in result.stderr
    assert cli("gradcheck", tmp_path).exit_code == 2  # a directory that is not a run


def test_gradcheck_of_a_converged_run_passes(cli, tmp_path):
    """Backprop is exact on a well-trained network too; gradcheck must not report FAIL for it."""
    config = tmp_path / "blobs.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "blobs",
                "data": {"dataset": "blobs", "options": {"samples": 600}},
                "model": {"layers": [{"linear": 32}, "relu", {"linear": 32}, "relu", {"linear": 3}]},
                "optimizer": {"name": "adam", "lr": 0.01},
                "train": {"epochs": 50, "batch_size": 32},
            }
        )
    )
    summary = fit(cli, config, tmp_path / "r")
    assert summary["final"]["train"]["accuracy"] == 1.0
    result = cli("gradcheck", tmp_path / "r")
    assert result.exit_code == 0, result.stdout


# --- datasets ----------------------------------------------------------------------------------


def test_datasets(cli):
    result = cli("datasets")
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()]
    generated = {"spirals", "xor", "moons", "circles", "blobs", "linear", "sine", "adding", "parity", "sine_wave", "copy_memory"}
    bundled = {"iris", "wine", "breast_cancer", "digits", "diabetes"}
    assert generated | bundled | {"mnist", "fashion_mnist"} <= set(names)
    listing = json.loads(cli("datasets", "--json").stdout)
    assert {n for n, info in listing.items() if info["kind"] == "generated"} == generated
    assert {n for n, info in listing.items() if info["kind"] == "bundled"} == bundled
    assert listing["mnist"]["kind"] == "downloadable" and "status" in listing["mnist"]
    assert listing["sine"]["task"] == "regression"
    assert listing["spirals"]["options"] == {"samples": 3000, "classes": 3, "noise": 0.2}


# --- predict and eval on a binary table run with an ID column --------------------------------


BINARY_CONFIG = {
    "seed": 0,
    "data": {"dataset": "train.csv", "target": "label", "columns": {"id": "customer_id"}},
    "model": {"layers": [{"linear": 8}, "relu", {"linear": 2}]},
    "optimizer": {"name": "adam", "lr": 0.01},
    "train": {"epochs": 20, "batch_size": 16},
}


@pytest.fixture(scope="module")
def binary(tmp_path_factory):
    """A binary run (classes no, yes) on customer_id (an ID: data.columns.id), colour (red / blue), size."""
    from typer.testing import CliRunner

    from nntrain.cli import app

    tmp = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(0)
    lines = ["customer_id,colour,size,label"]
    for i in range(200):
        colour, size = ["red", "blue"][i % 2], rng.normal()
        label = "yes" if size + 0.8 * (colour == "red") + rng.normal(0, 0.5) > 0.4 else "no"
        lines.append(f"{1001 + i},{colour},{size:.4f},{label}")
    (tmp / "train.csv").write_text("\n".join(lines) + "\n")
    (tmp / "features.csv").write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in lines))  # no label
    (tmp / "run.yaml").write_text(yaml.safe_dump(BINARY_CONFIG))
    result = CliRunner().invoke(app, ["fit", str(tmp / "run.yaml"), "--run-dir", str(tmp / "run"), "-q"])
    assert result.exit_code == 0, result.output
    return tmp


def json_lines(text):
    return [json.loads(line) for line in text.splitlines()]


def p_yes(cli, run, path):
    """P(yes) of every row of `path`, from predict --json (full precision)."""
    result = cli("predict", run, path, "--json")
    assert result.exit_code == 0, result.output
    return np.array([record["p_yes"] for record in json_lines(result.stdout)])


def test_the_id_column_must_be_declared(cli, binary, tmp_path):
    """customer_id (distinct whole numbers, an ID-like name) trips the guard unless it is data.columns.id."""
    config = {**BINARY_CONFIG, "data": {"dataset": str(binary / "train.csv"), "target": "label"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    result = cli("validate", tmp_path / "c.yaml")
    assert result.exit_code == 2 and "data.columns" in result.stderr and "'customer_id'" in result.stderr, result.output


QUERY = "customer_id,colour,size\n5001,red,0.5\n5002,purple,0.1\n5003,blue,\n5004,blue,-0.3\n5005,red,-1.2\n"
UNKNOWN = "column 'colour': category 'purple' was not in the training data (known: blue, red); set data.unknown: ignore"


def test_predict_json_keeps_ids_and_order_and_reports_unscorable_rows(cli, binary, tmp_path):
    query = tmp_path / "q.csv"
    query.write_text(QUERY)
    result = cli("predict", binary / "run", query, "--json")
    assert result.exit_code == 2, result.output
    records = json_lines(result.stdout)
    assert [r["line"] for r in records] == [2, 3, 4, 5, 6]  # every input row, in file order
    assert [r["customer_id"] for r in records] == ["5001", "5002", "5003", "5004", "5005"]
    assert UNKNOWN in records[1]["error"] and "class" not in records[1]
    assert "column 'size': missing value" in records[2]["error"] and "class" not in records[2]
    scored = [records[i] for i in (0, 3, 4)]
    for r in scored:
        assert set(r) == {"line", "customer_id", "class", "p_no", "p_yes"} and "error" not in r
        assert r["p_no"] + r["p_yes"] == pytest.approx(1, abs=1e-6)
        assert r["class"] == ("yes" if r["p_yes"] > r["p_no"] else "no")
    lines = result.stderr.splitlines()
    assert lines[0] == "warning: 2 rows could not be scored:"
    assert lines[1].startswith(f"  {query}, line 3: ") and UNKNOWN in lines[1]
    assert lines[2].startswith(f"  {query}, line 4: ") and "column 'size': missing value" in lines[2]
    assert len(lines) == 3 and "Traceback" not in result.output
    # The scored rows are what the good rows alone give: the bad rows shift nothing.
    good = tmp_path / "good.csv"
    good.write_text("".join(line + "\n" for i, line in enumerate(QUERY.splitlines()) if i not in (2, 3)))
    alone = cli("predict", binary / "run", good, "--json")
    assert alone.exit_code == 0 and alone.stderr == "", alone.output
    strip = lambda r: {k: v for k, v in r.items() if k != "line"}
    assert [strip(r) for r in json_lines(alone.stdout)] == [strip(r) for r in scored]


def test_predict_csv_puts_the_id_column_first(cli, binary, tmp_path):
    query = tmp_path / "q.csv"
    query.write_text("size,colour,customer_id\n0.5,red,5001\n0.1,purple,5002\n-0.3,blue,5004\n")  # any column order
    result = cli("predict", binary / "run", query)
    assert result.exit_code == 2, result.output
    header, rows = parse_csv(result.stdout)
    assert header == ["customer_id", "class", "p_no", "p_yes"]
    assert [row[0] for row in rows] == ["5001", "5002", "5004"]
    assert rows[1] == ["5002", "", "", ""]  # the unknown category: kept in place, nothing predicted
    assert rows[0][1] in ("no", "yes") and rows[2][1] in ("no", "yes")
    assert f"{query}, line 3: " in result.stderr and "'purple'" in result.stderr
    # A file without the id column: no id in the output.
    query.write_text("colour,size\nred,0.5\nblue,-0.3\n")
    result = cli("predict", binary / "run", query)
    assert result.exit_code == 0 and result.stderr == "", result.output
    header, rows = parse_csv(result.stdout)
    assert header == ["class", "p_no", "p_yes"] and len(rows) == 2


def _threshold_between(p, below_half=True):
    """A threshold halfway between two neighbouring P(yes) values, in the lower (or upper) quarter."""
    values = np.unique(p)
    k = len(values) // 4 if below_half else 3 * len(values) // 4
    return float((values[k] + values[k + 1]) / 2)


@pytest.mark.parametrize("below_half", [True, False])
def test_predict_threshold_flips_the_class_where_p_reaches_it(cli, binary, below_half):
    run, path = binary / "run", binary / "features.csv"
    p = p_yes(cli, run, path)
    T = _threshold_between(p, below_half)
    default = [r["class"] for r in json_lines(cli("predict", run, path, "--json").stdout)]
    result = cli("predict", run, path, "--json", "--threshold", T)
    assert result.exit_code == 0, result.output
    records = json_lines(result.stdout)
    assert [r["class"] for r in records] == ["yes" if v >= T else "no" for v in p]
    assert np.array_equal([r["p_yes"] for r in records], p)  # the probabilities do not change
    flipped = [i for i, (a, r) in enumerate(zip(default, records)) if a != r["class"]]
    assert flipped  # the threshold is far from 0.5: some rows change class, and only those between
    low, high = sorted((T, 0.5))
    assert all(low <= p[i] <= high for i in flipped)
    as_csv = cli("predict", run, path, "--threshold", T)
    assert as_csv.exit_code == 0, as_csv.output
    header, rows = parse_csv(as_csv.stdout)
    assert header[:2] == ["customer_id", "class"] and [row[1] for row in rows] == [r["class"] for r in records]


def test_threshold_is_refused_for_a_multiclass_run(cli, run, tmp_path):
    query = tmp_path / "q.csv"
    query.write_text("x0,x1\n0.1,0.2\n")
    for args in (("--json",), ()):
        result = cli("predict", run, query, "--threshold", "0.5", *args)
        assert result.exit_code == 2 and result.stdout == "", result.output
        assert "--threshold" in result.stderr and "binary" in result.stderr and "3 classes" in result.stderr
    result = cli("eval", run, "--threshold", "0.5")
    assert result.exit_code == 2 and result.stdout == "" and "threshold" in result.stderr, result.output
    assert "Traceback" not in result.output
    for bad in ("0", "1", "1.5"):
        result = cli("predict", run, query, "--threshold", bad)
        assert result.exit_code == 2 and "strictly between 0 and 1" in result.stderr, result.output


def test_eval_threshold_changes_accuracy_as_computed_by_hand(cli, binary):
    run, path = binary / "run", binary / "train.csv"
    p = p_yes(cli, run, path)  # predict ignores the label column
    truth = np.array([line.rsplit(",", 1)[1] == "yes" for line in path.read_text().splitlines()[1:]])
    T = _threshold_between(p, below_half=True)
    plain = eval_json(cli, run, "--data", path)
    thresholded = eval_json(cli, run, "--data", path, "--threshold", T)
    assert plain["samples"] == thresholded["samples"] == len(truth) == 200
    assert plain["accuracy"] == pytest.approx(np.mean((p > 0.5) == truth))
    decided = p >= T
    assert thresholded["accuracy"] == pytest.approx(np.mean(decided == truth))
    assert thresholded["accuracy"] != pytest.approx(plain["accuracy"])
    confusion = [[int(np.sum(~truth & ~decided)), int(np.sum(~truth & decided))],
                 [int(np.sum(truth & ~decided)), int(np.sum(truth & decided))]]
    assert thresholded["confusion"] == confusion
    assert thresholded["loss"] == pytest.approx(plain["loss"])  # a threshold decides classes, not the loss


@pytest.mark.parametrize("which", ["multiclass", "binary"])
def test_eval_json_per_class(cli, run, binary, which):
    if which == "multiclass":
        result, classes = eval_json(cli, run), 3
    else:
        result, classes = eval_json(cli, binary / "run", "--data", binary / "train.csv"), 2
    per_class = result["per_class"]
    assert set(per_class) == {"precision", "recall", "f1", "support"}
    assert all(len(v) == classes for v in per_class.values())
    assert sum(per_class["support"]) == result["samples"]
    C = np.array(result["confusion"])
    assert per_class["support"] == C.sum(axis=1).tolist()
    diagonal = np.diag(C).astype(float)
    with np.errstate(all="ignore"):
        precision = np.nan_to_num(diagonal / C.sum(axis=0))
        recall = np.nan_to_num(diagonal / C.sum(axis=1))
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    assert per_class["precision"] == pytest.approx(precision.tolist())
    assert per_class["recall"] == pytest.approx(recall.tolist())
    assert per_class["f1"] == pytest.approx(f1.tolist())
    assert result["accuracy"] == pytest.approx(diagonal.sum() / result["samples"])


def test_predict_json_of_a_parquet_file_numbers_rows(cli, binary, tmp_path):
    """Parquet has no lines: records and messages give the 1-based row."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "q.parquet"
    pq.write_table(pa.table({"customer_id": [7, 8, 9], "colour": ["red", "purple", "blue"], "size": [0.5, 0.1, None]}), path)
    result = cli("predict", binary / "run", path, "--json")
    assert result.exit_code == 2, result.output
    records = json_lines(result.stdout)
    assert [r["row"] for r in records] == [1, 2, 3] and all("line" not in r for r in records)
    assert [r["customer_id"] for r in records] == ["7", "8", "9"]
    assert "class" in records[0] and "'purple'" in records[1]["error"] and "missing value" in records[2]["error"]
    assert f"{path}, row 2: " in result.stderr and f"{path}, row 3: " in result.stderr


def _auc_by_hand(y: np.ndarray, score: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting one half."""
    pos, neg = score[y == 1], score[y == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def test_ci_gates_on_roc_auc_even_when_the_run_did_not_track_it(cli, binary, tmp_path):
    """`eval --fail-under roc_auc=...` computes the metric for the gate; its value is the AUC of P(yes)."""
    run = binary / "run"
    data = binary / "train.csv"
    labels = np.array([line.rsplit(",", 1)[1] == "yes" for line in data.read_text().splitlines()[1:]], dtype=int)
    auc = _auc_by_hand(labels, p_yes(cli, run, data))
    passed = cli("eval", run, "--data", data, "--fail-under", f"roc_auc={auc - 0.01}", "--json")
    assert passed.exit_code == 0, passed.output
    result = json.loads(passed.stdout)
    assert result["roc_auc"] == pytest.approx(auc, abs=1e-6) and "roc_auc" in result
    failed = cli("eval", run, "--data", data, "--fail-under", f"roc_auc={auc + 0.01}", "--fail-over", "log_loss=0.01")
    assert failed.exit_code == 1 and "FAILED: roc_auc" in failed.stdout and "FAILED: log_loss" in failed.stdout
    plain = json.loads(cli("eval", run, "--data", data, "--json").stdout)
    assert "roc_auc" not in plain  # computed for a gate only


def test_predict_a_run_whose_batch_norm_needs_two_rows_per_batch(cli, write_config, tmp_path):
    """batch_norm over flat features needs 2 rows per training batch; a run loaded without its data predicts."""
    run = tmp_path / "bn"
    layers = [{"linear": 8}, "batch_norm", "relu", {"linear": 3}]
    fit(cli, write_config(model={"layers": layers}, train={"epochs": 2, "batch_size": 16}), run)
    points = tmp_path / "points.csv"
    points.write_text("x0,x1\n0.5,0.1\n-0.3,0.4\n")
    result = cli("predict", run, points)
    assert result.exit_code == 0, result.output
    header, rows = parse_csv(result.stdout)
    assert header[0] == "class" and len(rows) == 2


def test_predict_names_rows_that_are_infinite_or_scale_beyond_float32(cli, run, tmp_path):
    """Such rows are refused one by one; the others are scored (the whole file is not refused)."""
    points = tmp_path / "far.csv"
    points.write_text("x0,x1\n0.5,0.1\ninf,0.4\n1e308,0.2\n0.0,-0.6\n")
    result = cli("predict", run, points)
    assert result.exit_code == 2
    header, rows = parse_csv(result.stdout)
    assert [bool(r[0]) for r in rows] == [True, False, False, True]
    assert "line 3: column 'x0': 'inf' is not a finite number" in result.stderr
    assert "line 4: a value scales beyond float32" in result.stderr
