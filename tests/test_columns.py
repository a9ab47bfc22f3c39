"""Column roles, guards, imputation and unknown categories (nntrain/data/columns.py), end to end through the CLI."""

from __future__ import annotations

import csv
import datetime
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from conftest import fit_json, table_config
from nntrain import api
from nntrain.data.columns import FeatureEncoder, Imputer, Roles, Rule, column_report, impute_rules, plan_columns
from nntrain.data.files import TableOptions, read_table
from nntrain.data.table import read
from nntrain.errors import NntrainError


# --- helpers -------------------------------------------------------------------------------------


def write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return "" if np.isnan(v) else repr(float(v))
    return str(v)


def write_columns(path, columns: dict):
    """A CSV from {name: values}; None / NaN cells are written empty."""
    return write_rows(path, list(columns), [[cell(v) for v in row] for row in zip(*columns.values())])


def refused(cli, config, *needles, command="validate"):
    """The command exits 2 and its stderr holds every needle; for fit, no run directory is left."""
    args = [command, config]
    if command == "fit":
        args += ["--run-dir", config.parent / "refused-run"]
    result = cli(*args)
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)
    assert "internal error" not in result.stderr and "Traceback" not in result.output
    if command == "fit":
        assert not (config.parent / "refused-run").exists()
    return result


def checkpoint(run_dir, which="last"):
    with np.load(run_dir / "checkpoints" / f"{which}.npz", allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def report_lines(stderr: str) -> dict[str, str]:
    """The validate column report: {column: 'role: kind ...'}."""
    lines = stderr.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("columns ("))
    out = {}
    for line in lines[start + 1 :]:
        if not line.startswith("  "):
            break
        name, _, rest = line.strip().partition("  ")
        out[name.strip()] = rest.strip()
    return out


def report_header(stderr: str) -> str:
    return next(line for line in stderr.splitlines() if line.startswith("columns ("))


def base_columns(n=60, seed=0):
    """Two number features and a 0/1 label that depends on them."""
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(size=n), 4)
    b = np.round(rng.normal(size=n), 4)
    y = ((a + b) > 0).astype(int)
    return {"a": a, "b": b, "y": y}


def predictions(stdout: str) -> list[list[str]]:
    return [line.split(",") for line in stdout.splitlines()[1:]]


# --- the unnamed index column (R's write.csv, pandas' to_csv) ------------------------------------


@pytest.mark.parametrize("style", ["pandas", "R"])
def test_an_exported_row_number_column_is_never_a_feature(cli, tmp_path, style):
    columns = base_columns(60)
    path = tmp_path / "export.csv"
    if style == "pandas":  # ,a,b,y then 0,...
        write_rows(path, ["", "a", "b", "y"], [[i, cell(a), cell(b), y] for i, (a, b, y) in enumerate(zip(*columns.values()))])
    else:  # "","a","b","y" then "1",...
        with open(path, "w", newline="") as f:
            writer = csv.writer(f, quoting=csv.QUOTE_NONNUMERIC)
            writer.writerow(["", "a", "b", "y"])
            for i, (a, b, y) in enumerate(zip(*columns.values())):
                writer.writerow([str(i + 1), float(a), float(b), int(y)])
    config = table_config(tmp_path, {"dataset": str(path)})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    report = report_lines(result.stderr)
    assert list(report) == ["unnamed_1", "a", "b", "y"]
    assert report["unnamed_1"].startswith("ignored:") and "no name in the header" in report["unnamed_1"]
    assert report_header(result.stderr) == "columns (4; 2 features, 2 inputs after encoding):"
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    assert saved["data.features"].tolist() == ["a", "b"]
    assert saved["layers.0.weight"].shape[0] == 2  # the network has 2 inputs
    predicted = cli("predict", tmp_path / "run", path)  # the same export predicts; the index is not read
    assert predicted.exit_code == 0, predicted.output
    assert len(predicted.stdout.splitlines()) == 61


def test_an_unnamed_column_named_by_a_role_is_used(cli, tmp_path):
    rng = np.random.default_rng(1)
    rows = [[int(rng.integers(0, 5)), f"{rng.normal():.3f}", i % 2] for i in range(40)]
    path = write_rows(tmp_path / "u.csv", ["", "a", "y"], rows)
    config = table_config(tmp_path, {"dataset": str(path), "columns": {"categorical": ["unnamed_1"]}})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert report_lines(result.stderr)["unnamed_1"].startswith("feature: category")


# --- ID guards -----------------------------------------------------------------------------------


def id_file(tmp_path, n=600):
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(size=n), 4)
    return write_columns(tmp_path / "customers.csv", {"customer_id": [f"c{i:04d}" for i in range(n)], "x": x, "y": (x > 0).astype(int)})


def test_a_text_id_column_is_refused(cli, tmp_path):
    path = id_file(tmp_path)
    config = table_config(tmp_path, {"dataset": str(path)})
    message = (
        "text column 'customer_id' has 600 distinct values in 600 rows (nearly every row has its own value: an ID? free text?);"
        " list 'customer_id' in data.columns.ignore (or make it data.columns.id), or in data.columns.categorical"
    )
    refused(cli, config, "error: data.columns:", message)
    refused(cli, config, message, command="fit")


@pytest.mark.parametrize("columns", [{"id": "customer_id"}, {"ignore": ["customer_id"]}, {"features": ["x"]}])
def test_a_text_id_column_passes_once_declared(cli, tmp_path, columns):
    config = table_config(tmp_path, {"dataset": str(id_file(tmp_path)), "columns": columns})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert "1 features, 1 inputs after encoding" in report_header(result.stderr)


def test_a_text_id_column_declared_categorical_is_one_hot(tmp_path):
    data = read_table(id_file(tmp_path, 100), options=TableOptions(roles=Roles(categorical=["customer_id"])))
    assert data.X.shape == (100, 101)
    assert data.encoder.names[:2] == ["customer_id=c0000", "customer_id=c0001"]


def test_few_rows_of_distinct_text_are_not_an_id(tmp_path):
    """The 'nearly every row' rule starts at 20 rows."""
    path = write_columns(tmp_path / "t.csv", {"name": [f"n{i}" for i in range(19)], "y": [i % 2 for i in range(19)]})
    assert read_table(path).encoder.columns == ["name"]


@pytest.mark.parametrize("name", ["ID", "Sample Number", "customer_id", "row", "key", "order no"])
def test_a_numeric_id_column_is_refused(cli, tmp_path, name):
    rng = np.random.default_rng(3)
    ids = rng.permutation(5000)[:40] + 100  # distinct whole numbers, not in row order
    columns = {name: ids, **base_columns(40)}
    config = table_config(tmp_path, {"dataset": str(write_columns(tmp_path / "n.csv", columns))})
    refused(
        cli, config, f"column '{name}' looks like an ID (its name, and 40 distinct whole numbers, one per row)",
        "data.columns.ignore", "data.columns.id", "data.columns.features",
    )


@pytest.mark.parametrize("columns, features", [
    ({"id": "ID"}, 2), ({"ignore": ["ID"]}, 2), ({"features": ["ID", "a", "b"]}, 3), ({"categorical": ["ID"]}, 3),
])
def test_a_numeric_id_column_passes_once_declared(cli, tmp_path, columns, features):
    ids = np.random.default_rng(3).permutation(5000)[:40] + 100
    path = write_columns(tmp_path / "n.csv", {"ID": ids, **base_columns(40)})
    config = table_config(tmp_path, {"dataset": str(path), "columns": columns})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert f"{features} features" in report_header(result.stderr)


def test_number_columns_that_are_not_ids_pass(tmp_path):
    ids = np.random.default_rng(3).permutation(5000)[:40] + 100
    repeated = np.array([7, 7] + list(ids[2:]))
    path = write_columns(tmp_path / "n.csv", {"weight": ids, "ID": repeated, **base_columns(40)})
    assert read_table(path).encoder.columns == ["weight", "ID", "a", "b"]
    short = write_columns(tmp_path / "s.csv", {"ID": ids[:9], "seq": np.arange(9), **base_columns(9)})  # the rules start at 10 rows
    assert read_table(short).encoder.columns == ["ID", "seq", "a", "b"]
    shuffled = write_columns(tmp_path / "p.csv", {"seq": np.roll(np.arange(30), 1), **base_columns(30)})  # not in file order
    assert read_table(shuffled).encoder.columns == ["seq", "a", "b"]


@pytest.mark.parametrize("start", [0, 1])
def test_a_row_number_column_is_refused(cli, tmp_path, start):
    columns = {"seq": np.arange(start, start + 30), **base_columns(30)}
    config = table_config(tmp_path, {"dataset": str(write_columns(tmp_path / "r.csv", columns))})
    refused(
        cli, config, f"column 'seq' is the row number ({start}, {start + 1}, {start + 2}, ... {start + 29})",
        "data.columns.ignore", "data.columns.id",
    )


@pytest.mark.parametrize("columns", [{"ignore": ["seq"]}, {"id": "seq"}, {"features": ["seq", "a"]}])
def test_a_row_number_column_passes_once_declared(cli, tmp_path, columns):
    path = write_columns(tmp_path / "r.csv", {"seq": np.arange(30), **base_columns(30)})
    config = table_config(tmp_path, {"dataset": str(path), "columns": columns})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert report_lines(result.stderr)["seq"].split(":")[0] == {"ignore": "ignored", "id": "id", "features": "feature"}[next(iter(columns))]


def test_a_row_number_in_parquet_is_refused(tmp_path):
    table = pa.table({"n": pa.array(np.arange(1, 21), pa.int64()), **{k: v[:20] for k, v in base_columns(20).items()}})
    pq.write_table(table, tmp_path / "r.parquet")
    with pytest.raises(NntrainError, match=r"column 'n' is the row number \(1, 2, 3, ... 20\)"):
        read_table(tmp_path / "r.parquet")


# --- roles ---------------------------------------------------------------------------------------


def roles_file(tmp_path, n=60):
    rng = np.random.default_rng(4)
    a = np.round(rng.normal(size=n), 4)
    return write_columns(tmp_path / "roles.csv", {
        "sample_id": [f"s{i:03d}" for i in range(n)],
        "a": a,
        "b": np.round(rng.normal(size=n), 4),
        "plan": [["basic", "pro", "team"][i % 3] for i in range(n)],
        "notes": [f"free text {i}" if i % 4 else "" for i in range(n)],
        "y": np.where(a > 0, "yes", "no"),
    })


def test_features_makes_the_other_columns_ignored(cli, tmp_path):
    config = table_config(tmp_path, {"dataset": str(roles_file(tmp_path)), "columns": {"features": ["a", "plan"]}})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    report = report_lines(result.stderr)
    assert report["a"] == "feature: number"
    assert report["plan"] == "feature: category (3 values)"
    for name in ("sample_id", "b", "notes"):
        assert report[name].startswith("ignored:") and "not in data.columns.features" in report[name]
    assert report["y"].startswith("target: category")
    assert report_header(result.stderr) == "columns (6; 2 features, 4 inputs after encoding):"
    fit_json(cli, config, tmp_path / "run")
    assert checkpoint(tmp_path / "run")["data.features"].tolist() == ["a", "plan=basic", "plan=pro", "plan=team"]


def test_ignore_and_id_are_never_features(cli, tmp_path):
    path = roles_file(tmp_path)
    config = table_config(tmp_path, {"dataset": str(path), "columns": {"id": "sample_id", "ignore": ["notes", "b"]}})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    report = report_lines(result.stderr)
    assert report["sample_id"] == "id: text"
    assert report["notes"] == "ignored: text, 15 missing"
    assert report["b"] == "ignored: number"
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    assert saved["data.features"].tolist() == ["a", "plan=basic", "plan=pro", "plan=team"]
    assert saved["layers.0.weight"].shape[0] == 4
    # predict copies the id column into its output, first; the ignored columns may be absent
    query = write_rows(tmp_path / "q.csv", ["plan", "sample_id", "a"], [["pro", "q1", "0.5"], ["team", "q2", "-1"]])
    predicted = cli("predict", tmp_path / "run", query)
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.stdout.splitlines()
    assert lines[0].split(",")[0] == "sample_id"
    assert [line.split(",")[0] for line in lines[1:]] == ["q1", "q2"]


def test_a_missing_id_or_ignored_cell_does_not_matter(tmp_path):
    path = write_columns(tmp_path / "g.csv", {"k": ["a", "", "c", "d"], "n": [1, None, 2, 3], "x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    data = read_table(path, options=TableOptions(roles=Roles(id="k", ignore=["n"])))
    assert data.X.shape == (4, 1) and data.dropped == 0
    assert data.ids.tolist() == ["a", "", "c", "d"]


def test_a_number_coded_categorical_column_keeps_the_file_spelling(cli, tmp_path):
    rng = np.random.default_rng(5)
    region = [["04", "07", "12"][i % 3] for i in range(60)]
    x = np.round(rng.normal(size=60), 4)
    path = write_columns(tmp_path / "r.csv", {"region": region, "x": x, "y": (x > 0).astype(int)})
    plain = read_table(path)  # undeclared: a number
    assert plain.encoder.columns == ["region", "x"] and plain.encoder.categories == {}
    assert plain.X[:3, 0].tolist() == [4, 7, 12]
    config = table_config(tmp_path, {"dataset": str(path), "columns": {"categorical": ["region"]}})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert report_lines(result.stderr)["region"] == "feature: category (3 values)"
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    assert saved["data.categories.0"].tolist() == ["04", "07", "12"]
    assert saved["data.features"].tolist() == ["region=04", "region=07", "region=12", "x"]
    ok = write_rows(tmp_path / "q.csv", ["x", "region"], [["0.1", "07"]])
    assert cli("predict", tmp_path / "run", ok).exit_code == 0
    # categories are compared as text: '4' is not '04'
    other = write_rows(tmp_path / "q4.csv", ["x", "region"], [["0.1", "4"]])
    result = cli("predict", tmp_path / "run", other)
    assert result.exit_code == 2
    assert "column 'region': category '4' was not in the training data (known: 04, 07, 12)" in result.stderr


def test_a_categorical_integer_column_in_parquet(tmp_path):
    table = pa.table({"zip": pa.array([10, 20, 10, 30], pa.int64()), "x": [0.1, 0.2, 0.3, 0.4], "y": [0, 1, 0, 1]})
    pq.write_table(table, tmp_path / "z.parquet")
    data = read_table(tmp_path / "z.parquet", options=TableOptions(roles=Roles(categorical=["zip"])))
    assert data.encoder.categories == {"zip": ["10", "20", "30"]}
    np.testing.assert_array_equal(data.X[:, :3], [[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])


def many_categories(path, distinct, n):
    rng = np.random.default_rng(6)
    x = np.round(rng.normal(size=n), 4)
    return write_columns(path, {"colour": [f"k{i % distinct:02d}" for i in range(n)], "x": x, "y": (x > 0).astype(int)})


def test_max_categories_limit(cli, tmp_path):
    path = many_categories(tmp_path / "m.csv", 8, 80)
    refused(
        cli, table_config(tmp_path, {"dataset": str(path), "columns": {"max_categories": 5}}),
        "text column 'colour' has 8 distinct values in 80 rows (more than data.columns.max_categories: 5)",
        "data.columns.categorical to one-hot encode its 8 values",
    )
    for columns in ({"max_categories": 8}, {"max_categories": 5, "categorical": ["colour"]}, {"max_categories": 5, "features": ["colour", "x"]}):
        result = cli("validate", table_config(tmp_path, {"dataset": str(path), "columns": columns}))
        assert result.exit_code == 0, (columns, result.output)
        assert report_lines(result.stderr)["colour"] == "feature: category (8 values)"


def test_max_categories_default_is_50(cli, tmp_path):
    path = many_categories(tmp_path / "m.csv", 51, 200)
    refused(cli, table_config(tmp_path, {"dataset": str(path)}), "text column 'colour' has 51 distinct values in 200 rows",
            "max_categories: 50")
    at_limit = many_categories(tmp_path / "m50.csv", 50, 200)
    assert cli("validate", table_config(tmp_path, {"dataset": str(at_limit)})).exit_code == 0


@pytest.mark.parametrize("value", [1, 100001])
def test_max_categories_range(cli, tmp_path, value):
    path = many_categories(tmp_path / "m.csv", 3, 30)
    refused(cli, table_config(tmp_path, {"dataset": str(path), "columns": {"max_categories": value}}), "data.columns.max_categories")


@pytest.mark.parametrize("columns, data, needles", [
    ({"ignore": ["b"], "id": "b"}, {}, ["column 'b' is in both data.columns.ignore and data.columns.id"]),
    ({"ignore": ["b"], "features": ["a", "b"]}, {}, ["column 'b' is in both data.columns.ignore and data.columns.features"]),
    ({"id": "a", "features": ["a", "b"]}, {}, ["column 'a' is in both data.columns.id and data.columns.features"]),
    ({"ignore": ["y"]}, {"target": "y"}, ["column 'y' is in both data.columns.ignore and data.target"]),
    ({"id": "y"}, {}, ["column 'y' is in both data.columns.id and data.target"]),  # the default target, the last column
    ({"categorical": ["b"], "ignore": ["b"]}, {}, ["data.columns.categorical", "'b'", "one role"]),
    ({"categorical": ["a"], "id": "a"}, {}, ["data.columns.categorical", "'a'", "one role"]),
    ({"categorical": ["y"]}, {"target": "y"}, ["'y'", "data.target", "data.columns.categorical"]),
])
def test_two_roles_for_one_column_are_an_error(cli, tmp_path, columns, data, needles):
    path = write_columns(tmp_path / "t.csv", base_columns(30))
    refused(cli, table_config(tmp_path, {"dataset": str(path), "columns": columns, **data}), *needles)


@pytest.mark.parametrize("key, columns", [
    ("data.columns.ignore", {"ignore": ["zz"]}),
    ("data.columns.id", {"id": "zz"}),
    ("data.columns.features", {"features": ["a", "zz"]}),
    ("data.columns.categorical", {"categorical": ["zz"]}),
])
def test_a_role_naming_a_column_the_file_lacks_is_an_error(cli, tmp_path, key, columns):
    path = write_columns(tmp_path / "t.csv", base_columns(30))
    refused(cli, table_config(tmp_path, {"dataset": str(path), "columns": columns}), f"error: {key}: no column named 'zz' in", "columns: a, b, y")


def test_a_role_naming_a_near_miss_suggests_the_column(tmp_path):
    path = write_columns(tmp_path / "t.csv", {"weight": [1, 2, 3], "y": [0, 1, 0]})
    with pytest.raises(NntrainError, match=r"data.columns.ignore: no column named 'wieght'.*weight"):
        read_table(path, options=TableOptions(roles=Roles(ignore=["wieght"])))


def test_a_column_listed_twice_under_one_key_is_an_error(cli, tmp_path):
    path = write_columns(tmp_path / "t.csv", base_columns(30))
    refused(cli, table_config(tmp_path, {"dataset": str(path), "columns": {"ignore": ["b", "b"]}}), "lists 'b' more than once")


def test_no_feature_left_is_an_error(cli, tmp_path):
    path = write_columns(tmp_path / "t.csv", base_columns(30))
    refused(cli, table_config(tmp_path, {"dataset": str(path), "columns": {"ignore": ["a", "b"]}}), "no column is a feature")


def test_columns_need_a_table_file(cli, write_config):
    config = write_config(data={"dataset": "spirals", "columns": {"ignore": ["x0"]}})
    refused(cli, config, "data.columns")


# --- dates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dates", [
    [f"2024-01-{i % 28 + 1:02d}" for i in range(30)],  # pyarrow reads these as dates
    [f"{i % 12 + 1}/{i % 28 + 1}/07" for i in range(30)],  # text that looks like dates
    [f"2024-01-{i % 28 + 1:02d} {i % 24:02d}:30" for i in range(30)],
    [f"2024-01-{i % 28 + 1:02d}T{i % 24:02d}:30:15Z" for i in range(30)],
    [f"31.{i % 12 + 1:02d}.2024" for i in range(30)],
])
def test_date_columns_are_refused_unless_declared(cli, tmp_path, dates):
    path = write_columns(tmp_path / "d.csv", {"when": dates, **base_columns(30)})
    refused(cli, table_config(tmp_path, {"dataset": str(path)}), "column 'when' holds dates", "data.columns.ignore", "data.columns.categorical")
    for columns, role in (({"ignore": ["when"]}, "ignored"), ({"id": "when"}, "id"), ({"categorical": ["when"]}, "feature")):
        result = cli("validate", table_config(tmp_path, {"dataset": str(path), "columns": columns}))
        assert result.exit_code == 0, (columns, result.output)
        assert report_lines(result.stderr)["when"].startswith(f"{role}:")


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
@pytest.mark.parametrize("values", [
    [datetime.date(2024, 1, i % 28 + 1) for i in range(30)],
    [datetime.datetime(2024, 1, 1, i % 24, 30) for i in range(30)],
])
def test_arrow_date_columns_are_refused_unless_declared(cli, tmp_path, fmt, values):
    table = pa.table({"when": pa.array(values), **{k: pa.array(v) for k, v in base_columns(30).items()}})
    path = tmp_path / f"d.{fmt}"
    (pq.write_table if fmt == "parquet" else feather.write_feather)(table, path)
    refused(cli, table_config(tmp_path, {"dataset": str(path)}), "column 'when' holds dates", "data.columns.ignore")
    refused(cli, table_config(tmp_path, {"dataset": str(path)}), "column 'when' holds dates", command="fit")
    for columns in ({"ignore": ["when"]}, {"id": "when"}, {"categorical": ["when"]}):
        result = cli("validate", table_config(tmp_path, {"dataset": str(path), "columns": columns}))
        assert result.exit_code == 0, (columns, result.output)


def test_other_arrow_types_are_refused(tmp_path):
    table = pa.table({"tags": pa.array([[1, 2], [3], [], [4]]), "x": [0.1, 0.2, 0.3, 0.4], "y": [0, 1, 0, 1]})
    pq.write_table(table, tmp_path / "l.parquet")
    with pytest.raises(NntrainError, match=r"column 'tags' holds values of type list"):
        read_table(tmp_path / "l.parquet")
    data = read_table(tmp_path / "l.parquet", options=TableOptions(roles=Roles(ignore=["tags"])))
    assert data.encoder.columns == ["x"]


def test_a_text_column_of_mixed_dates_and_words_is_a_category(tmp_path):
    values = ["2024-01-01", "soon", "2024-02-01", "later"] * 5
    path = write_columns(tmp_path / "d.csv", {"when": values, "y": [0, 1] * 10})
    assert read_table(path).encoder.categories == {"when": ["2024-01-01", "2024-02-01", "later", "soon"]}


# --- imputation ----------------------------------------------------------------------------------


def gappy_columns(n, seed, shift=0.0, gap_every=4):
    """Number columns a (continuous), k (small integers: most_frequent), a text column c; gaps in all three."""
    rng = np.random.default_rng(seed)
    a = np.round(rng.normal(size=n) + shift, 3)
    k = rng.integers(0, 4, size=n).astype(float) + shift
    c = np.array([["red", "green", "blue"][j] for j in rng.integers(0, 3, size=n)], dtype=object)
    if shift:
        c[:] = "red"  # the other file is all red, so the most frequent category differs from the training file's
    y = (a - shift > 0).astype(int)
    a_gap = a.copy()
    a_gap[::gap_every] = np.nan
    k_gap = k.copy()
    k_gap[1::gap_every] = np.nan
    c_gap = c.copy()
    c_gap[2::gap_every] = None
    return {"a": a_gap, "k": k_gap, "c": list(c_gap), "y": y}


def most_frequent_number(values):
    values = values[~np.isnan(values)]
    distinct, counts = np.unique(values, return_counts=True)
    return distinct[np.argmax(counts)]  # the smallest among ties


def most_frequent_text(values):
    present = sorted(v for v in values if v is not None)
    counts = {v: present.count(v) for v in present}
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)  # the first in sorted order among ties


def numeric_fill(values, rule):
    values = np.asarray(values, dtype=float)
    present = values[~np.isnan(values)]
    if rule == "mean":
        return present.mean()
    if rule == "median":
        return np.median(present)
    if rule == "most_frequent":
        return most_frequent_number(values)
    if rule == "constant":
        return 0.0
    return float(rule["value"])


def fills(saved) -> dict[str, float]:
    return dict(zip(saved["data.features"].tolist(), saved["data.impute.fill"].tolist()))


@pytest.mark.parametrize("rule", ["mean", "median", "most_frequent", "constant", {"strategy": "constant", "value": -2.5}])
def test_impute_is_fitted_on_the_training_file_only(cli, tmp_path, rule):
    train = gappy_columns(40, seed=7)
    val = gappy_columns(80, seed=8, shift=100.0)  # more rows, far away: a fill from all rows would show
    train_path = write_columns(tmp_path / "train.csv", train)
    val_path = write_columns(tmp_path / "val.csv", val)
    data = {"train": str(train_path), "val": str(val_path), "missing": "impute", "impute": {"numeric": rule}}
    config = table_config(tmp_path, data)
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    fill = fills(saved)
    assert list(fill) == ["a", "k", "c=blue", "c=green", "c=red"]
    for column in ("a", "k"):
        expected = numeric_fill(train[column], rule)
        assert fill[column] == pytest.approx(expected, rel=1e-12, abs=1e-12), column
    if rule in ("mean", "median", "most_frequent"):  # the check can tell the training file from all rows
        column = "k" if rule == "most_frequent" else "a"
        assert abs(numeric_fill(np.concatenate([train[column], val[column]]), rule) - fill[column]) > 50
    top = most_frequent_text(train["c"])
    assert top == "blue" and most_frequent_text(train["c"] + val["c"]) == "red"  # (blue ties with red in train.csv: the first)
    assert [fill[f"c={v}"] for v in ("blue", "green", "red")] == [float(v == top) for v in ("blue", "green", "red")]


@pytest.mark.parametrize("rule", ["mean", "median", "most_frequent"])
def test_impute_uses_the_training_split_of_one_file(cli, tmp_path, rule):
    """data.dataset: the statistics come from the rows splits.npz lists as train, not from the whole file."""
    rng = np.random.default_rng(9)
    n = 90
    a = np.round(rng.exponential(size=n) * np.arange(1, n + 1), 2)  # later rows larger: any split changes the mean
    a[rng.integers(0, 4, size=n) == 0] = np.nan
    k = rng.integers(0, 6, size=n).astype(float)
    k[::5] = np.nan
    y = rng.integers(0, 2, size=n)
    path = write_columns(tmp_path / "one.csv", {"a": a, "k": k, "y": y})
    config = table_config(tmp_path, {"dataset": str(path), "missing": "impute", "impute": {"numeric": rule}})
    fit_json(cli, config, tmp_path / "run")
    with np.load(tmp_path / "run" / "splits.npz", allow_pickle=False) as splits:
        train = splits["train"]
    assert 0 < len(train) < n
    fill = fills(checkpoint(tmp_path / "run"))
    for column, values in (("a", a), ("k", k)):
        assert fill[column] == pytest.approx(numeric_fill(values[train], rule), rel=1e-12), column
    if rule != "most_frequent":  # (a's values are all distinct: its most frequent is its smallest, in any split)
        assert fill["a"] != pytest.approx(numeric_fill(a, rule), rel=1e-6)


def test_predict_fills_gaps_with_the_saved_values(cli, tmp_path):
    train = gappy_columns(80, seed=7)
    config = table_config(tmp_path, {
        "train": str(write_columns(tmp_path / "train.csv", train)),
        "val": str(write_columns(tmp_path / "val.csv", gappy_columns(40, seed=8, shift=100.0))),
        "missing": "impute", "impute": {"numeric": "median"},
    })
    fit_json(cli, config, tmp_path / "run")
    fill = fills(checkpoint(tmp_path / "run", "best"))
    top = next(v for v in ("blue", "green", "red") if fill[f"c={v}"] == 1.0)
    gaps = [["", "1", "red"], ["0.5", "NA", "green"], ["-0.25", "2", "?"], ["", "", ""]]
    filled = [
        [repr(fill["a"]), "1", "red"], ["0.5", repr(fill["k"]), "green"], ["-0.25", "2", top],
        [repr(fill["a"]), repr(fill["k"]), top],
    ]
    # the all-gap row would be skipped as blank; give it an id-like extra column so it stays a row
    q_gaps = write_rows(tmp_path / "gaps.csv", ["a", "k", "c", "note"], [r + ["x"] for r in gaps])
    q_filled = write_rows(tmp_path / "filled.csv", ["a", "k", "c", "note"], [r + ["x"] for r in filled])
    with_gaps = cli("predict", tmp_path / "run", q_gaps)
    by_hand = cli("predict", tmp_path / "run", q_filled)
    assert with_gaps.exit_code == 0, with_gaps.output
    assert by_hand.exit_code == 0, by_hand.output
    assert with_gaps.stdout == by_hand.stdout
    assert len(with_gaps.stdout.splitlines()) == 5
    # eval --data fills the same way
    e1 = cli("eval", tmp_path / "run", "--data", write_rows(tmp_path / "eg.csv", ["a", "k", "c", "y"], [r + ["1"] for r in gaps]), "--json")
    e2 = cli("eval", tmp_path / "run", "--data", write_rows(tmp_path / "ef.csv", ["a", "k", "c", "y"], [r + ["1"] for r in filled]), "--json")
    assert e1.exit_code == 0 and e2.exit_code == 0, (e1.output, e2.output)
    r1, r2 = json.loads(e1.stdout), json.loads(e2.stdout)
    assert r1["loss"] == r2["loss"] and r1["accuracy"] == r2["accuracy"]


def test_indicators_add_missing_inputs(cli, tmp_path):
    train = gappy_columns(80, seed=7)
    train["full"] = np.round(np.linspace(-1, 1, 80) ** 3, 4)  # no gaps: no indicator
    path = write_columns(tmp_path / "train.csv", train)
    config = table_config(tmp_path, {"dataset": str(path), "target": "y", "missing": "impute", "impute": {"indicators": True}})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert report_header(result.stderr) == "columns (5; 4 features, 9 inputs after encoding):"
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    names = ["a", "a:missing", "k", "k:missing", "c=blue", "c=green", "c=red", "c:missing", "full"]
    assert saved["data.features"].tolist() == names
    assert saved["data.indicators"].tolist() == ["a", "k", "c"]
    assert saved["layers.0.weight"].shape[0] == 9
    fill = fills(saved)
    assert fill["a:missing"] == fill["k:missing"] == fill["c:missing"] == 0.0
    # the encoder sets the indicator to 1 where the cell was missing
    encoder = FeatureEncoder.from_state(saved)
    query = write_rows(tmp_path / "q.csv", ["a", "k", "c", "full"], [["", "1", "red", "0"], ["0.5", "2", "blue", "0"]])
    X = read_table(query, encoder=encoder, with_target=False, options=TableOptions(missing="impute")).X
    assert X[0, names.index("a:missing")] == 1 and X[1, names.index("a:missing")] == 0
    assert np.isnan(X[0, 0])


def test_per_column_rules(cli, tmp_path):
    train = gappy_columns(80, seed=7)
    train["m"] = np.where(np.arange(80) % 6 == 0, np.nan, np.arange(80) % 7 * 1.5)
    config = table_config(tmp_path, {
        "train": str(write_columns(tmp_path / "train.csv", train)),
        "val": str(write_columns(tmp_path / "val.csv", {**gappy_columns(30, seed=1), "m": np.arange(30) * 1.0})),
        "target": "y",
        "missing": "impute",
        "impute": {
            "numeric": "mean",
            "columns": {"k": "median", "m": {"strategy": "constant", "value": 42}, "c": {"strategy": "constant", "value": "unknown"}},
        },
    })
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    fill = fills(saved)
    assert fill["a"] == pytest.approx(numeric_fill(train["a"], "mean"), rel=1e-12)
    assert fill["k"] == pytest.approx(numeric_fill(train["k"], "median"), rel=1e-12)
    assert fill["m"] == 42.0
    assert saved["data.categories.2"].tolist() == ["blue", "green", "red", "unknown"]  # the constant is a category
    assert [fill[f"c={v}"] for v in ("blue", "green", "red", "unknown")] == [0, 0, 0, 1]


@pytest.mark.parametrize("impute", [{"categorical": "constant"}, {"columns": {"c": "constant"}}, {"columns": {"c": {"strategy": "constant"}}}])
def test_a_constant_category_defaults_to_missing(cli, tmp_path, impute):
    train = gappy_columns(60, seed=7)
    config = table_config(tmp_path, {"dataset": str(write_columns(tmp_path / "t.csv", train)), "missing": "impute", "impute": impute})
    fit_json(cli, config, tmp_path / "run")
    saved = checkpoint(tmp_path / "run")
    assert saved["data.categories.2"].tolist() == ["blue", "green", "missing", "red"]
    assert fills(saved)["c=missing"] == 1.0


def test_mean_of_a_category_column_is_refused(cli, tmp_path):
    path = write_columns(tmp_path / "t.csv", gappy_columns(60, seed=7))
    refused(
        cli, table_config(tmp_path, {"dataset": str(path), "missing": "impute", "impute": {"columns": {"c": "mean"}}}),
        "data.impute.columns.c: column 'c' holds categories, which have no mean; use most_frequent or constant",
    )
    refused(cli, table_config(tmp_path, {"dataset": str(path), "missing": "impute", "impute": {"categorical": "median"}}),
            "data.impute.categorical")
    refused(cli, table_config(tmp_path, {"dataset": str(path), "missing": "impute", "impute": {"columns": {"a": {"strategy": "constant", "value": "zero"}}}}),
            "data.impute.columns.a", "the constant must be a number")
    refused(cli, table_config(tmp_path, {"dataset": str(path), "missing": "impute", "impute": {"columns": {"zz": "mean"}}}),
            "data.impute.columns.zz", "not a feature column")


def test_a_column_without_training_values_needs_a_constant(cli, tmp_path):
    train = gappy_columns(60, seed=7)
    train["e"] = [None] * 60
    val = gappy_columns(30, seed=8)
    val["e"] = np.arange(30) * 1.0
    data = {"train": str(write_columns(tmp_path / "train.csv", train)), "val": str(write_columns(tmp_path / "val.csv", val)),
            "target": "y", "missing": "impute"}
    refused(cli, table_config(tmp_path, data), "data.impute: column 'e' has no values in the 60 training rows", "constant")
    for i, (rules, expected) in enumerate([
        ({"columns": {"e": "constant"}}, 0.0),
        ({"numeric": "constant"}, 0.0),
        ({"columns": {"e": {"strategy": "constant", "value": 3}}}, 3.0),
    ]):
        config = table_config(tmp_path, {**data, "impute": rules}, name=f"ok{i}.yaml")
        fit_json(cli, config, tmp_path / f"run{i}")
        assert fills(checkpoint(tmp_path / f"run{i}"))["e"] == expected


def test_impute_drops_rows_without_a_target_with_a_note(cli, tmp_path):
    train = gappy_columns(60, seed=7)
    y = train["y"].astype(object)
    y[[3, 10]] = None
    train["y"] = list(y)
    config = table_config(tmp_path, {"dataset": str(write_columns(tmp_path / "t.csv", train)), "missing": "impute"})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert "dropped 2 rows without a target ('y')" in result.stderr


def test_imputer_unit():
    encoder = FeatureEncoder(["n", "c"], {"c": ["p", "q", "r"]})
    X = np.array([
        [1.0, 1, 0, 0],
        [np.nan, 0, 1, 0],
        [3.0, np.nan, np.nan, np.nan],
        [3.0, 0, 1, 0],
        [100.0, 0, 0, 1],  # not a training row
    ])
    train = np.arange(4)
    fitted = Imputer.fitted(encoder, X, train, {"n": Rule("mean"), "c": Rule("most_frequent")})
    np.testing.assert_allclose(fitted.fill, [7 / 3, 0, 1, 0])
    assert Imputer.fitted(encoder, X, train, {"n": Rule("median"), "c": Rule("most_frequent")}).fill[0] == 3.0
    assert Imputer.fitted(encoder, X, train, {"n": Rule("most_frequent"), "c": Rule("most_frequent")}).fill[0] == 3.0
    ties = np.array([[2.0, 0, 1, 0], [1.0, 1, 0, 0], [np.nan, np.nan, np.nan, np.nan]])
    tied = Imputer.fitted(encoder, ties, np.arange(3), {"n": Rule("most_frequent"), "c": Rule("most_frequent")})
    np.testing.assert_array_equal(tied.fill, [1.0, 1, 0, 0])  # the smallest number, the first category
    out = fitted.transform(X.copy())
    np.testing.assert_allclose(out[1, 0], 7 / 3)
    np.testing.assert_array_equal(out[2, 1:], [0, 1, 0])
    assert not np.isnan(out).any()
    with pytest.raises(NntrainError, match="column 'n' has no values in the 1 training rows"):
        Imputer.fitted(encoder, X, np.array([1]), {"n": Rule("mean"), "c": Rule("most_frequent")})


def test_impute_rules_unit():
    from nntrain.config import ImputeConfig

    encoder = FeatureEncoder(["n", "c"], {"c": ["p", "q"]})
    rules = impute_rules(encoder, ImputeConfig())
    assert rules == {"n": Rule("mean"), "c": Rule("most_frequent")}
    rules = impute_rules(encoder, ImputeConfig(columns={"n": "constant", "c": "constant"}))
    assert rules == {"n": Rule("constant", 0.0), "c": Rule("constant", "missing")}
    with pytest.raises(NntrainError, match="data.impute.columns.c: column 'c' holds categories, which have no median"):
        impute_rules(encoder, ImputeConfig(columns={"c": "median"}))


# --- data.missing: drop --------------------------------------------------------------------------


def test_drop_names_the_columns_and_counts(cli, tmp_path):
    n = 60
    columns = base_columns(n)
    a = columns["a"].copy()
    b = columns["b"].copy()
    a[[1, 5, 9]] = np.nan
    b[[5, 20]] = np.nan
    notes = [None if i % 2 else "x" for i in range(n)]  # ignored: never a reason to drop
    ids = [f"r{i}" if i % 3 else None for i in range(n)]  # the id: never a reason to drop
    path = write_columns(tmp_path / "d.csv", {"rid": ids, "a": a, "b": b, "notes": notes, "y": columns["y"]})
    config = table_config(tmp_path, {"dataset": str(path), "missing": "drop", "columns": {"id": "rid", "ignore": ["notes"]}})
    note = f"data.dataset: {path}: dropped 4 rows with missing values (data.missing: drop); missing in a 3 rows, b 2 rows"
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert f"note: {note}" in result.stderr
    _, fitted = fit_json(cli, config, tmp_path / "run")
    assert note in fitted.stderr
    with np.load(tmp_path / "run" / "splits.npz", allow_pickle=False) as splits:
        assert sum(len(splits[k]) for k in ("train", "val", "test")) == n - 4


def test_missing_error_names_the_line_column_and_counts(cli, tmp_path):
    columns = base_columns(40)
    columns["b"] = columns["b"].copy()
    columns["b"][[6, 7]] = np.nan
    path = write_columns(tmp_path / "e.csv", columns)
    refused(cli, table_config(tmp_path, {"dataset": str(path)}),
            f"{path}, line 8, column 'b': missing value (set data.missing: drop to skip such rows, or impute to fill them; missing in b 2 rows)")


# --- unknown categories --------------------------------------------------------------------------


def cities_file(path, n=120):
    rng = np.random.default_rng(10)
    x = np.round(rng.normal(size=n), 4)
    city = [f"c{i % 12:02d}" for i in range(n)]
    return write_columns(path, {"x": x, "city": city, "y": (x > 0).astype(int)})


def test_an_unknown_category_is_an_error_by_default(cli, tmp_path):
    config = table_config(tmp_path, {"dataset": str(cities_file(tmp_path / "train.csv"))})
    fit_json(cli, config, tmp_path / "run")
    known = "known: c00, c01, c02, c03, c04, c05, c06, c07, c08, c09, ... (12 in all)"
    labelled = write_rows(tmp_path / "unseen.csv", ["city", "x", "y"], [["c01", "0.5", "1"], ["zz", "0.1", "0"], ["c02", "0", "1"]])
    result = cli("eval", tmp_path / "run", "--data", labelled)
    assert result.exit_code == 2
    assert (
        f"error: data.unknown: {labelled}, line 3, column 'city': category 'zz' was not in the training data ({known});"
        " set data.unknown: ignore to encode unknown categories as all zeros"
    ) in result.stderr
    query = write_rows(tmp_path / "q.csv", ["x", "city"], [["0.5", "c01"], ["0.1", "zz"]])
    predicted = cli("predict", tmp_path / "run", query)
    assert predicted.exit_code == 2
    assert f"{query}, line 3: column 'city': category 'zz' was not in the training data ({known})" in predicted.stderr
    rows = predictions(predicted.stdout)
    assert rows[0][0] in ("0", "1") and all(v == "" for v in rows[1])


def test_few_known_categories_are_listed_in_full(tmp_path):
    encoder = FeatureEncoder(["plan"], {"plan": ["basic", "pro", "team"]})
    path = write_rows(tmp_path / "unseen.csv", ["plan"], [["pro"], ["enterprise"]])
    with pytest.raises(NntrainError) as error:
        read_table(path, encoder=encoder, with_target=False)
    assert str(error.value) == (
        f"data.unknown: {path}, line 3, column 'plan': category 'enterprise' was not in the training data"
        " (known: basic, pro, team); set data.unknown: ignore to encode unknown categories as all zeros"
    )


def test_unknown_ignore_encodes_all_zeros(cli, tmp_path):
    config = table_config(tmp_path, {"dataset": str(cities_file(tmp_path / "train.csv")), "unknown": "ignore"})
    fit_json(cli, config, tmp_path / "run")
    query = write_rows(tmp_path / "q.csv", ["x", "city"], [["0.5", "c03"], ["0.1", "zz"], ["-0.7", "nowhere"]])
    predicted = cli("predict", tmp_path / "run", query, "--checkpoint", "last")
    assert predicted.exit_code == 0, predicted.output
    got = np.array([[float(v) for v in row[1:]] for row in predictions(predicted.stdout)])
    # the same rows encoded by hand: x, then twelve zeros (or the one-hot of c03), through the saved scaling and network
    exp = api.load_run(tmp_path / "run", "last", with_data=False)
    assert exp.dataset.encoder.names[0] == "x" and len(exp.dataset.encoder.names) == 13
    X = np.zeros((3, 13))
    X[:, 0] = [0.5, 0.1, -0.7]
    X[0, 1 + 3] = 1.0
    z = exp.network.forward(exp.scaler.transform(X, exp.dtype))
    expected = exp.network.loss.predict(z).astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    labelled = write_rows(tmp_path / "l.csv", ["x", "city", "y"], [["0.1", "zz", "1"]])
    assert cli("eval", tmp_path / "run", "--data", labelled).exit_code == 0


def test_encoder_unknown_ignore_unit(tmp_path):
    encoder = FeatureEncoder(["x", "c"], {"c": ["a", "b"]}, unknown="ignore")
    path = write_rows(tmp_path / "q.csv", ["c", "x"], [["a", "1"], ["zz", "2"], ["b", "3"], ["", "4"]])
    X = read_table(path, encoder=encoder, with_target=False, options=TableOptions(missing="impute", unknown="ignore")).X
    np.testing.assert_array_equal(X[:3], [[1, 1, 0], [2, 0, 0], [3, 0, 1]])
    assert X[3, 0] == 4 and np.isnan(X[3, 1:]).all()  # a missing cell is NaN (for the imputer), not unknown
    strict = FeatureEncoder(["x", "c"], {"c": ["a", "b"]})
    problems = {}
    X = strict.encode(read(path, text_columns=["c"]), problems)
    assert list(problems) == [1] and "category 'zz'" in problems[1]
    assert np.isnan(X[1]).any()


def test_unknown_is_case_sensitive(tmp_path):
    encoder = FeatureEncoder(["c"], {"c": ["Red", "blue"]})
    with pytest.raises(NntrainError, match="category 'red' was not in the training data"):
        read_table(write_rows(tmp_path / "q.csv", ["c"], [["Red"], ["red"]]), encoder=encoder, with_target=False)


# --- the validate report -------------------------------------------------------------------------


def test_validate_lists_every_column_with_its_role(cli, tmp_path):
    n = 60
    rng = np.random.default_rng(11)
    a = np.round(rng.normal(size=n), 3)
    island = [["Biscoe", "Dream", "Torgersen"][i % 3] for i in range(n)]
    sex = [None if i % 10 == 0 else ["f", "m"][i % 2] for i in range(n)]
    bill = [None if i in (4, 8) else round(float(v), 2) for i, v in enumerate(rng.normal(40, 5, size=n))]
    path = tmp_path / "penguins.csv"
    write_rows(path, ["", "sample_id", "species", "island", "bill", "a", "sex", "comments"], [
        [i, 1000 + i * 7, ["A", "B"][int(v > 0)], isl, cell(b), cell(v), cell(s), "" if i % 3 else f"note {i}"]
        for i, (v, isl, s, b) in enumerate(zip(a, island, sex, bill))
    ])
    config = table_config(tmp_path, {
        "dataset": str(path), "target": "species", "missing": "impute",
        "columns": {"id": "sample_id", "ignore": ["comments"]},
    })
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert report_header(result.stderr) == "columns (8; 4 features, 7 inputs after encoding):"
    report = report_lines(result.stderr)
    assert list(report) == ["unnamed_1", "sample_id", "species", "island", "bill", "a", "sex", "comments"]
    assert report["unnamed_1"] == "ignored: number (no name in the header: row names?)"
    assert report["sample_id"].startswith("id: ")  # docs/config.md shows a numeric id as 'id: number'
    assert report["species"].startswith("target: category")
    assert report["island"] == "feature: category (3 values)"
    assert report["bill"] == "feature: number, 2 missing"
    assert report["a"] == "feature: number"
    assert report["sex"] == "feature: category (2 values), 6 missing"
    assert report["comments"].startswith("ignored: ") and report["comments"].endswith(", 40 missing")


def test_column_report_unit(tmp_path):
    path = write_columns(tmp_path / "t.csv", {"k": [f"r{i}" for i in range(5)], "x": [1.0, None, 3.0, 4.0, 5.0], "c": list("ababa"), "y": list("pqpqp")})
    table = read(path, text_columns=["y", "k"])
    plans = plan_columns(table, "y", Roles(id="k"))
    assert [(p.name, p.role, p.kind, p.missing) for p in plans] == [
        ("k", "id", "text", 0), ("x", "feature", "number", 1), ("c", "feature", "category", 0), ("y", "target", "category", 0),
    ]
    lines = column_report(plans)
    assert lines[:3] == ["  k  id: text", "  x  feature: number, 1 missing", "  c  feature: category (2 values)"]
    assert lines[3].startswith("  y  target: category")
    numeric = plan_columns(read(path, text_columns=["k"]), "x", Roles(id="k", ignore=["y"]))
    assert [(p.name, p.role) for p in numeric] == [("k", "id"), ("x", "target"), ("c", "feature"), ("y", "ignored")]
    assert column_report(numeric)[1] == "  x  target: number, 1 missing"


# --- the example raw table: configs/tables/customers_raw.yaml -----------------------------------

REPO = Path(__file__).resolve().parent.parent
NNTRAIN = [sys.executable, "-c", "from nntrain.cli import main; main()"]


def test_example_raw_table_is_what_make_py_writes():
    done = subprocess.run([sys.executable, str(REPO / "datasets" / "tables" / "make.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_docs_column_report_is_what_validate_prints():
    """docs/config.md shows `nntrain validate configs/tables/customers_raw.yaml`'s column report verbatim."""
    done = subprocess.run(
        [*NNTRAIN, "validate", "configs/tables/customers_raw.yaml"],
        capture_output=True, text=True, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    docs = (REPO / "docs" / "config.md").read_text()
    shown = docs.split("$ nntrain validate configs/tables/customers_raw.yaml > /dev/null\n", 1)[1].split("```", 1)[0]
    assert shown == done.stderr


def test_example_raw_table_trains_on_roles_and_predicts_with_ids(tmp_path):
    """The raw export trains without its row numbers, IDs, dates or notes; predict gives every id back, in order."""
    from nntrain.api import fit

    summary = fit(REPO / "configs" / "tables" / "customers_raw.yaml", overrides=["train.epochs=15"], runs_root=tmp_path)
    assert summary["status"] == "completed" and summary["final"]["test"]["roc_auc"] > 0.7, summary["final"]
    with np.load(Path(summary["run_dir"]) / "checkpoints" / "last.npz", allow_pickle=False) as ckpt:
        inputs = ckpt["data.features"].tolist()
    assert not any(n.startswith(("unnamed_1", "customer_id", "signup_date", "notes")) for n in inputs)
    assert "region=04" in inputs and "monthly_spend:missing" in inputs and len(inputs) == 13
    out = tmp_path / "p.jsonl"
    done = subprocess.run(
        [*NNTRAIN, "predict", summary["run_dir"], str(REPO / "datasets" / "tables" / "customers_raw.csv"),
         "--json", "-o", str(out)], capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["customer_id"] for r in records] == [f"c{10000 + 7 * i}" for i in range(600)]
    assert [r["line"] for r in records] == list(range(2, 602)) and all(r["class"] in ("no", "yes") for r in records)


def test_eval_data_finds_the_default_target_beside_an_unnamed_index(tmp_path):
    """A run on an R-style export (unnamed row numbers, target last by default) evaluates the same export."""
    rows = [",a,b,y"] + [f"{i + 1},{i * 7 % 11},{i * 3 % 5},{i % 2}" for i in range(60)]
    (tmp_path / "t.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "c.yaml").write_text("data: {dataset: t.csv}\nmodel: {layers: [linear: 4, relu, linear: 2]}\ntrain: {epochs: 1}\n")
    fit = subprocess.run([*NNTRAIN, "fit", "c.yaml", "--run-dir", "r", "-q"], cwd=tmp_path, capture_output=True, text=True)
    assert fit.returncode == 0, fit.stderr
    done = subprocess.run([*NNTRAIN, "eval", "r", "--data", "t.csv", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["samples"] == 60
