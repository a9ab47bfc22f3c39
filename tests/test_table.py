"""Table files read through pyarrow (nntrain/data/table.py): delimiters, gzip, Parquet and Feather, line numbers, missing markers."""

from __future__ import annotations

import csv
import functools
import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from conftest import fit_json, table_config
from nntrain.data import table as table_module
from nntrain.data.files import TableOptions, read_table
from nntrain.data.table import header_names, read, sniff_delimiter
from nntrain.errors import NntrainError


# --- helpers -------------------------------------------------------------------------------------


def write_text(path, text: str):
    path.write_text(text, newline="")
    return path


def pets_columns(n=120, seed=0):
    """Columns of a small classification table: two numbers, a text column, a text label (float64 as repr)."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(size=n), 6)
    w = np.round(rng.normal(size=n) * 3 + 10, 6)
    colour = [["red", "green", "blue"][i % 3] for i in range(n)]
    kind = ["cat" if (a > 0) == (c == "red") else "dog" for a, c in zip(x, colour)]
    return {"x": x, "colour": colour, "weight": w, "kind": kind}


def write_csv_columns(path, columns: dict, delimiter=","):
    names = list(columns)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(names)
        for row in zip(*columns.values()):
            writer.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    return path


def arrow_table(columns: dict) -> pa.Table:
    return pa.table({k: pa.array(list(v) if not isinstance(v, np.ndarray) else v) for k, v in columns.items()})


def write_parquet(path, columns: dict):
    pq.write_table(arrow_table(columns) if isinstance(columns, dict) else columns, path)
    return path


def write_feather(path, columns: dict):
    feather.write_feather(arrow_table(columns) if isinstance(columns, dict) else columns, path)
    return path


write_config = functools.partial(table_config, epochs=3, hidden=8, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9})


# --- delimiters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_detected(tmp_path, delimiter):
    path = write_csv_columns(tmp_path / "d.csv", pets_columns(30), delimiter)
    assert sniff_delimiter(path) == delimiter
    data = read_table(path, "kind")
    reference = read_table(write_csv_columns(tmp_path / "ref.csv", pets_columns(30)), "kind")
    assert data.encoder == reference.encoder
    np.testing.assert_array_equal(data.X, reference.X)
    np.testing.assert_array_equal(data.y, reference.y)
    assert header_names(path)[0] == ["x", "colour", "weight", "kind"]


def test_a_tsv_file_is_read_with_tabs(tmp_path):
    path = write_csv_columns(tmp_path / "d.tsv", pets_columns(30), "\t")
    data = read_table(path, "kind")
    assert data.encoder.names == ["x", "colour=blue", "colour=green", "colour=red", "weight"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_an_explicit_delimiter_is_used(tmp_path, delimiter):
    path = write_csv_columns(tmp_path / "d.csv", pets_columns(30), delimiter)
    data = read_table(path, options=TableOptions(target="kind", delimiter=delimiter))
    assert data.encoder.columns == ["x", "colour", "weight"]
    assert len(data.X) == 30
    assert read(path, delimiter).delimiter == delimiter


def test_an_explicit_delimiter_beats_detection(tmp_path):
    """Every line splits into more columns with ';', which auto chooses; data.delimiter ',' is obeyed."""
    rows = ["code;part;kind,y"] + [f"a;{i % 3};c,{i % 2}" for i in range(12)]
    path = write_text(tmp_path / "t.csv", "\n".join(rows) + "\n")
    assert sniff_delimiter(path) == ";"
    assert read(path).names == ["code", "part", "kind,y"]
    data = read_table(path, options=TableOptions(target="y", delimiter=","))
    assert data.encoder.categories == {"code;part;kind": ["a;0;c", "a;1;c", "a;2;c"]}
    np.testing.assert_array_equal(data.y, [i % 2 for i in range(12)])


def test_a_config_delimiter_reaches_the_reader(cli, tmp_path):
    path = write_csv_columns(tmp_path / "d.csv", pets_columns(60), "|")
    config = write_config(tmp_path, {"dataset": str(path), "target": "kind", "delimiter": "|"})
    result = cli("validate", config)
    assert result.exit_code == 0, result.output
    assert "colour" in result.stderr and "feature: category (3 values)" in result.stderr


def test_a_semicolon_file_read_with_commas_gives_a_hint(cli, tmp_path):
    path = write_csv_columns(tmp_path / "semi.csv", pets_columns(30), ";")
    with pytest.raises(NntrainError, match=r"the header is one column, 'x;colour;weight;kind', which holds ';': set data.delimiter: \";\""):
        read_table(path, options=TableOptions(target="kind", delimiter=","))
    config = write_config(tmp_path, {"dataset": str(path), "delimiter": ","})
    result = cli("validate", config)
    assert result.exit_code == 2
    assert 'set data.delimiter: ";"' in result.stderr and "semi.csv" in result.stderr


def test_a_tab_file_read_with_commas_gives_the_escaped_hint(tmp_path):
    path = write_csv_columns(tmp_path / "tab.csv", pets_columns(10), "\t")
    with pytest.raises(NntrainError) as error:
        read(path, ",")
    assert 'set data.delimiter: "\\t"' in str(error.value)


# --- gzip ----------------------------------------------------------------------------------------


def test_csv_gz_reads_as_the_same_csv(tmp_path):
    columns = pets_columns(50)
    plain = read_table(write_csv_columns(tmp_path / "p.csv", columns), "kind")
    packed = read_table(write_csv_columns(tmp_path / "p.csv.gz", columns), "kind")
    assert packed.encoder == plain.encoder
    np.testing.assert_array_equal(packed.X, plain.X)
    np.testing.assert_array_equal(packed.y, plain.y)


def test_csv_gz_errors_name_the_decompressed_line(tmp_path):
    text = "a,b,y\n\n1,2,0\n3,,1\n"
    path = tmp_path / "g.csv.gz"
    with gzip.open(path, "wt", newline="") as f:
        f.write(text)
    with pytest.raises(NntrainError, match=r"g\.csv\.gz, line 4, column 'b': missing value"):
        read_table(path)


# --- Parquet and Feather -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "feather", "arrow", "pq"])
def test_parquet_and_feather_read_as_the_same_csv(tmp_path, fmt):
    columns = pets_columns(80)
    csv_data = read_table(write_csv_columns(tmp_path / "p.csv", columns), "kind")
    path = tmp_path / f"p.{fmt}"
    (write_parquet if fmt in ("parquet", "pq") else write_feather)(path, columns)
    data = read_table(path, "kind")
    assert data.encoder == csv_data.encoder
    assert data.encoder.names == ["x", "colour=blue", "colour=green", "colour=red", "weight"]
    np.testing.assert_array_equal(data.X, csv_data.X)
    np.testing.assert_array_equal(data.y, csv_data.y)
    assert [(p.name, p.role, p.kind) for p in data.plans] == [(p.name, p.role, p.kind) for p in csv_data.plans]


def test_integer_and_boolean_columns_are_numbers(tmp_path):
    table = pa.table({"n": pa.array([1, 2, 3, 4], pa.int32()), "b": [True, False, True, None], "y": [0.5, 1.5, 2.5, 3.5]})
    path = write_parquet(tmp_path / "t.parquet", table)
    data = read_table(path, missing="drop")
    np.testing.assert_array_equal(data.X, [[1, 1], [2, 0], [3, 1]])
    np.testing.assert_array_equal(data.y, [0.5, 1.5, 2.5])


def test_an_arrow_ipc_stream_file_is_read(tmp_path):
    """docs/config.md: `.feather`, `.arrow`, `.ipc` are 'Feather v2 / Arrow IPC (file or stream)'."""
    columns = pets_columns(30)
    table = arrow_table(columns)
    path = tmp_path / "s.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert header_names(path)[0] == list(columns)
    data = read_table(path, "kind")
    reference = read_table(write_csv_columns(tmp_path / "p.csv", columns), "kind")
    np.testing.assert_array_equal(data.X, reference.X)


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
def test_fit_on_parquet_and_feather_gives_the_csv_metrics(cli, tmp_path, fmt):
    columns = pets_columns(160, seed=3)
    csv_path = write_csv_columns(tmp_path / "p.csv", columns)
    other = tmp_path / f"p.{fmt}"
    (write_parquet if fmt == "parquet" else write_feather)(other, columns)
    summaries = []
    for path in (csv_path, other):
        config = write_config(tmp_path, {"dataset": str(path), "target": "kind"}, name=f"{path.suffix[1:]}.yaml")
        summary, _ = fit_json(cli, config, tmp_path / f"run-{path.suffix[1:]}")
        summaries.append(summary)
        with np.load(tmp_path / f"run-{path.suffix[1:]}" / "checkpoints" / "last.npz", allow_pickle=False) as ckpt:
            assert ckpt["data.features"].tolist() == ["x", "colour=blue", "colour=green", "colour=red", "weight"]
    assert summaries[0]["final"] == summaries[1]["final"]
    # predict reads the other format too, with the same outputs
    outputs = [cli("predict", tmp_path / f"run-{p.suffix[1:]}", p) for p in (csv_path, other)]
    assert all(o.exit_code == 0 for o in outputs), [o.output for o in outputs]
    assert outputs[0].stdout == outputs[1].stdout


@pytest.mark.parametrize("fmt", ["parquet", "feather"])
def test_parquet_and_feather_errors_name_the_row(tmp_path, fmt):
    write = write_parquet if fmt == "parquet" else write_feather
    gap = write(tmp_path / f"gap.{fmt}", {"a": [1.0, 2.0, 3.0, 4.0], "b": [1.0, 2.0, None, 4.0], "y": [0, 1, 0, 1]})
    with pytest.raises(NntrainError, match=rf"gap\.{fmt}, row 3, column 'b': missing value"):
        read_table(gap)
    inf = write(tmp_path / f"inf.{fmt}", {"a": [1.0, 2.0, 3.0, float("inf")], "y": [0, 1, 0, 1]})
    with pytest.raises(NntrainError, match=rf"inf\.{fmt}, row 4, column 'a': 'inf' is not a finite number"):
        read_table(inf)
    target = write(tmp_path / f"t.{fmt}", {"a": [1.0, 2.0, 3.0], "y": ["p", None, "q"]})
    with pytest.raises(NntrainError, match=rf"t\.{fmt}, row 2, column 'y': the target is missing"):
        read_table(target)


def test_parquet_errors_name_the_row_through_the_cli(cli, tmp_path):
    path = write_parquet(tmp_path / "gap.parquet", {"a": [1.0, 2.0, 3.0, None] * 5, "y": [0, 1] * 10})
    config = write_config(tmp_path, {"dataset": str(path)})
    result = cli("fit", config, "--run-dir", tmp_path / "run")
    assert result.exit_code == 2
    assert "gap.parquet, row 4, column 'a': missing value" in result.stderr
    assert not (tmp_path / "run").exists()


def test_predict_on_parquet_names_rows(cli, tmp_path):
    columns = pets_columns(90)
    config = write_config(tmp_path, {"dataset": str(write_csv_columns(tmp_path / "p.csv", columns)), "target": "kind"})
    fit_json(cli, config, tmp_path / "run")
    query = write_parquet(tmp_path / "q.parquet", {"x": [0.1, 0.2, 0.3], "colour": ["red", "pink", "blue"], "weight": [1.0, 2.0, 3.0]})
    result = cli("predict", tmp_path / "run", query)
    assert result.exit_code == 2
    assert "q.parquet, row 2: column 'colour': category 'pink' was not in the training data" in result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 4 and lines[2].startswith(",")  # the row keeps its place, with empty predictions


# --- line numbers --------------------------------------------------------------------------------


def test_lines_count_blank_lines_and_multi_line_fields(tmp_path):
    text = 'a,b,y\n\n1,"two\nlines",0\n\n3,z,1\n\n5,w,0\n'
    #       1     2 3         4      5 6     7 8
    path = write_text(tmp_path / "m.csv", text)
    table = read(path)
    assert len(table) == 3
    assert table.lines([0, 1, 2]) == [3, 6, 8]
    assert table.where(2) == f"{path}, line 8"
    assert table.column("b").values.to_pylist() == ["two\nlines", "z", "w"]


def test_errors_name_the_line_after_a_multi_line_field(tmp_path):
    path = write_text(tmp_path / "m.csv", 'a,b,y\n1,"x\ny",0\n\n3,z,1\n,w,0\n')
    with pytest.raises(NntrainError, match=r"m\.csv, line 6, column 'a': missing value"):
        read_table(path)


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_lines_with_crlf_endings_and_gzip(tmp_path, suffix):
    raw = b'a,b,y\r\n\r\n1,"x\r\ny",0\r\n3,z,1\r\n,w,0\r\n'
    path = tmp_path / f"crlf{suffix}"
    path.write_bytes(gzip.compress(raw) if suffix.endswith(".gz") else raw)
    assert read(path).lines([0, 1, 2]) == [3, 5, 6]
    with pytest.raises(NntrainError, match=rf"crlf{re.escape(suffix)}, line 6, column 'a': missing value"):
        read_table(path)


def test_lines_with_blank_lines_before_the_header(tmp_path):
    path = write_text(tmp_path / "b.csv", "\n\na,y\n1,0\n\n2,1\n")
    table = read(path)
    assert table.names == ["a", "y"]
    assert table.lines([0, 1]) == [4, 6]


def test_a_row_of_empty_cells_is_skipped_and_lines_stay_right(tmp_path):
    path = write_text(tmp_path / "e.csv", "a,b,y\n1,2,0\n,,\n3,,1\n")
    with pytest.raises(NntrainError, match=r"e\.csv, line 4, column 'b': missing value"):
        read_table(path)
    data = read_table(path, missing="drop")
    assert data.dropped == 1 and len(data.X) == 1


def test_a_line_of_spaces_is_read_by_the_python_fallback(tmp_path, monkeypatch):
    calls = []
    fallback = table_module._read_csv_python

    def spy(*args, **kwargs):
        calls.append(args[0])
        return fallback(*args, **kwargs)

    monkeypatch.setattr(table_module, "_read_csv_python", spy)
    path = write_text(tmp_path / "s.csv", "a,b,y\n1,2,0\n   \n3,4,1\n\t \n5,,0\n")
    table = read(path)
    assert calls == [path]
    assert len(table) == 3
    assert table.lines([0, 1, 2]) == [2, 4, 6]
    with pytest.raises(NntrainError, match=r"s\.csv, line 6, column 'b': missing value"):
        read_table(path)
    data = read_table(path, missing="drop")
    np.testing.assert_array_equal(data.X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(data.y, [0, 1])


def test_the_fast_path_reads_plain_numbers_without_the_fallback(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the Python reader was used")

    monkeypatch.setattr(table_module, "_read_csv_python", refuse)
    path = write_text(tmp_path / "n.csv", "a,b,y\n1,2,0\n\n3,4,1\n")
    table = read(path)
    assert [c.kind for c in table.columns] == ["number", "number", "number"]
    assert table.lines([0, 1]) == [2, 4]


def test_a_wrong_number_of_fields_names_the_line(tmp_path):
    path = write_text(tmp_path / "w.csv", "a,b,y\n1,2,0\n\n3,4\n")
    with pytest.raises(NntrainError, match=r"w\.csv, line 4: 2 fields, the header has 3"):
        read(path)


# --- missing markers -----------------------------------------------------------------------------


@pytest.mark.parametrize("marker", ["nULL", "Na", "nA", "NoNe", "n/A", "nAn", "NULL", "?", ""])
def test_missing_markers_in_any_case_are_missing(tmp_path, marker):
    path = write_text(tmp_path / "m.csv", f"a,b,c,y\n1,2,x,0\n3,{marker},y,1\n5,6,{marker},0\n7,8,x,1\n")
    table = read(path)
    b = table.column("b")
    assert b.kind in ("number", "text-number")
    assert b.missing.tolist() == [False, True, False, False]
    assert table.column("c").missing.tolist() == [False, False, True, False]
    with pytest.raises(NntrainError, match=r"line 3, column 'b': missing value"):
        read_table(path)
    data = read_table(path, missing="drop")
    assert data.dropped == 2
    np.testing.assert_array_equal(data.X[:, 0], [1, 7])
    assert data.encoder.categories == {"c": ["x"]}


def test_mixed_spellings_of_missing_markers_in_one_file(tmp_path):
    path = write_text(tmp_path / "m.csv", "a,b,y\n1,nULL,0\n3,Na,1\n4,5,0\n6,NoNe,1\n")
    np.testing.assert_array_equal(read(path).column("b").missing, [True, True, False, True])


def test_a_missing_marker_is_not_a_category(tmp_path):
    path = write_text(tmp_path / "m.csv", "c,y\nred,0\nnUlL,1\nblue,0\nN/a,1\n")
    data = read_table(path, missing="drop")
    assert data.encoder.categories == {"c": ["blue", "red"]}
    assert data.dropped == 2


# --- names ---------------------------------------------------------------------------------------


def test_an_unnamed_first_column_is_named_and_ignored(tmp_path):
    rows = [",a,b,y"] + [f"{i},{i * 0.3:.2f},{(i * 7) % 5},{i % 2}" for i in range(12)]
    path = write_text(tmp_path / "u.csv", "\n".join(rows) + "\n")
    names, unnamed = header_names(path)
    assert names == ["unnamed_1", "a", "b", "y"] and unnamed == {"unnamed_1"}
    table = read(path)
    assert table.names == ["unnamed_1", "a", "b", "y"]
    assert [c.unnamed for c in table.columns] == [True, False, False, False]
    data = read_table(path)
    assert data.encoder.columns == ["a", "b"]
    plan = {p.name: p for p in data.plans}
    assert plan["unnamed_1"].role == "ignored"
    assert data.X.shape == (12, 2)


def test_a_column_named_unnamed_by_the_user_is_an_ordinary_column(tmp_path):
    rows = ["unnamed_1,a,y"] + [f"{(i * 3) % 7},{i * 0.3:.2f},{i % 2}" for i in range(12)]
    data = read_table(write_text(tmp_path / "u.csv", "\n".join(rows) + "\n"))
    assert data.encoder.columns == ["unnamed_1", "a"]


def test_spaces_around_cells_and_names_are_ignored(tmp_path):
    path = write_text(tmp_path / "s.csv", " a , c ,y\n 1 , red ,0\n2,blue , 1\n")
    data = read_table(path)
    assert data.encoder.columns == ["a", "c"]
    assert data.encoder.categories == {"c": ["blue", "red"]}
    np.testing.assert_array_equal(data.X, [[1, 0, 1], [2, 1, 0]])


def test_a_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffa,y\n1,0\n2,1\n".encode("utf-8"))
    assert read(path).names == ["a", "y"]


def test_a_repeated_name_is_an_error(tmp_path):
    with pytest.raises(NntrainError, match=r"the header names \['a'\] more than once"):
        read(write_text(tmp_path / "r.csv", "a,a,y\n1,2,0\n"))


def test_a_stray_word_in_a_number_column_names_the_line(tmp_path):
    path = write_text(tmp_path / "stray.csv", "size,y\n1,0\n\n2,1\nlarge,0\n3,1\n")
    with pytest.raises(NntrainError, match=r"stray\.csv, line 5, column 'size': 'large' is not a number"):
        read_table(path)


def test_infinity_in_a_csv_is_an_error(tmp_path):
    path = write_text(tmp_path / "i.csv", "a,y\n1,0\n-inf,1\n")
    with pytest.raises(NntrainError, match=r"i\.csv, line 3, column 'a': '-inf' is not a finite number"):
        read_table(path)


PANDAS_SPY = """
import sys
from pathlib import Path
from nntrain.data.columns import Roles
from nntrain.data.files import TableOptions, read_table
options = TableOptions(target="y", roles=Roles(categorical=["code"]), missing="impute")
for name in ("t.csv", "t.parquet", "t.feather"):
    data = read_table(Path(sys.argv[1]) / name, options=options)
    assert data.X.shape[0] == 3, data.X.shape
print("read", Path(sys.argv[2]).exists())
import pyarrow as pa
pa.array([1])  # what pyarrow's own conversions do: the stand-in must notice
print("pa.array", Path(sys.argv[2]).exists())
"""


def test_reading_a_table_never_makes_pyarrow_import_pandas(tmp_path):
    """pyarrow imports pandas (~0.2 s) from pa.array, pa.scalar, to_numpy where it is installed; nntrain avoids them.

    A stand-in `pandas` package records that it was imported (and then fails, as if absent).
    """
    marker = tmp_path / "pandas-imported"
    (tmp_path / "stub" / "pandas").mkdir(parents=True)
    (tmp_path / "stub" / "pandas" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nraise ImportError('stand-in')\n"
    )
    path = tmp_path / "t.csv"
    path.write_text("a,colour,code,y\n1,red,04,x\n,blue,05,y\n3, red ,NA,x\n")
    arrow = pa.table({"a": [1.0, None, 3.0], "colour": ["red", "blue", "red"], "code": [4, 5, None], "y": ["x", "y", "x"]})
    pq.write_table(arrow, tmp_path / "t.parquet")
    feather.write_feather(arrow, tmp_path / "t.feather")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "stub"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", PANDAS_SPY, str(tmp_path), str(marker)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["read False", "pa.array True"]


def test_parquet_integer_labels_beyond_float64_stay_exact(tmp_path):
    """uint64 labels near 2**64 are three classes, named digit for digit (a float cast would merge them)."""
    labels = [2**64 - 1 - i % 3 for i in range(30)]
    pq.write_table(pa.table({"x": [float(i * 7 % 11) for i in range(30)], "y": pa.array(labels, pa.uint64())}), tmp_path / "u.parquet")
    data = read_table(tmp_path / "u.parquet")
    assert data.y.dtype == object and data.y.tolist() == labels


def test_a_huge_cell_is_shortened_in_messages(tmp_path):
    path = write_text(tmp_path / "h.csv", "a,y\n" + "".join(f"{i % 7},{i % 2}\n" for i in range(10)) + "x" * 100_000 + ",1\n")
    with pytest.raises(NntrainError, match=r"line 12, column 'a': 'x+'\.\.\.'x+' \(100,000 characters\) is not a number") as e:
        read_table(path)
    assert len(str(e.value)) < 400


@pytest.mark.parametrize("values", [[[1.0, 2.0]] * 3, [{"a": 1}] * 3, np.arange(3).astype("datetime64[s]")])
def test_predict_rows_with_cells_that_are_no_numbers_at_all_are_problems(tmp_path, values):
    """Lists, structs or dates where the model needs numbers: each row is reported, none crashes."""
    from nntrain.data.columns import FeatureEncoder

    pq.write_table(pa.table({"x": pa.array(values), "z": [1.0, 2.0, 3.0]}), tmp_path / "p.parquet")
    problems = {}
    data = read_table(tmp_path / "p.parquet", encoder=FeatureEncoder(["x", "z"]), with_target=False, problems=problems)
    assert sorted(problems) == [0, 1, 2] and "column 'x' holds values of type" in problems[0]
    assert np.isnan(data.X[:, 0]).all() and data.X[:, 1].tolist() == [1.0, 2.0, 3.0]
