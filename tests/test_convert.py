"""`nntrain datasets convert` (nntrain/data/convert.py): a table into X.npy / y.npy, a batch of rows at a time."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nntrain.cli import app
from nntrain.data.columns import Roles
from nntrain.data.convert import convert
from nntrain.data.files import TableOptions, read_table
from nntrain.errors import NntrainError

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def customers(path: Path, rows: int = 200, late_category: bool = True) -> Path:
    """A table with an id, a text column whose last category appears only in the last rows, a gap-free target."""
    rng = np.random.default_rng(0)
    lines = ["customer_id,age,plan,spend,churned"]
    for i in range(rows):
        plan = "enterprise" if late_category and i >= rows - 3 else ["basic", "pro", "team"][i % 3]
        lines.append(f"c{i:05d},{20 + (i * 7) % 50},{plan},{rng.normal(50, 10):.3f},{'yes' if i % 4 == 0 else 'no'}")
    return write(path, "\n".join(lines) + "\n")


def test_convert_equals_reading_the_whole_table(tmp_path):
    """Batches of 16 rows give the same X and y as one read; a category first seen in the last batch is kept."""
    path = customers(tmp_path / "c.csv")
    roles = Roles(id="customer_id")
    result = convert(path, tmp_path / "out", "churned", roles, dtype="float64", rows_per_batch=16)
    whole = read_table(path, options=TableOptions(target="churned", roles=roles))
    X, y = np.load(tmp_path / "out" / "X.npy"), np.load(tmp_path / "out" / "y.npy")
    assert X.dtype == np.float64 and X.shape == whole.X.shape == (200, 6)
    np.testing.assert_array_equal(X, whole.X)
    assert y.tolist() == whole.y.tolist()
    assert result["features"] == whole.encoder.names
    assert "plan=enterprise" in result["features"]
    info = json.loads((tmp_path / "out" / "features.json").read_text())
    assert info["rows"] == 200 and info["features"] == whole.encoder.names and info["target"] == "churned"


def test_convert_numeric_labels_stream_with_dropped_rows(tmp_path):
    """Number labels are written a batch at a time: rows with a gap (one in the target) are left out of X and y alike."""
    lines = ["a,b,price"] + [f"{i},{i % 7}," + ("" if i == 41 else f"{i * 0.5}") for i in range(100)]
    path = write(tmp_path / "p.csv", "\n".join(lines).replace("\n17,3,", "\n,3,") + "\n")
    convert(path, tmp_path / "out", "price", missing="drop", dtype="float64", rows_per_batch=16)
    whole = read_table(path, options=TableOptions(target="price", missing="drop"))
    X, y = np.load(tmp_path / "out" / "X.npy"), np.load(tmp_path / "out" / "y.npy")
    assert y.dtype == np.float64 and len(y) == len(X) == 98
    np.testing.assert_array_equal(X, whole.X)
    np.testing.assert_array_equal(y, whole.y)
    assert 41 * 0.5 not in y and 17 * 0.5 not in y


def test_convert_parquet_and_float32(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    csv_path = customers(tmp_path / "c.csv", late_category=False)
    pq.write_table(pcsv.read_csv(csv_path), tmp_path / "c.parquet")
    convert(csv_path, tmp_path / "a", "churned", Roles(ignore=["customer_id"]))
    convert(tmp_path / "c.parquet", tmp_path / "b", "churned", Roles(ignore=["customer_id"]), rows_per_batch=50)
    a, b = np.load(tmp_path / "a" / "X.npy"), np.load(tmp_path / "b" / "X.npy")
    assert a.dtype == np.float32 and a.shape == (200, 5)
    np.testing.assert_array_equal(a, b)
    assert np.load(tmp_path / "a" / "y.npy").tolist() == np.load(tmp_path / "b" / "y.npy").tolist()
    assert pa is not None


def test_cli_convert_then_train_from_disk(tmp_path):
    path = customers(tmp_path / "c.csv", late_category=False)
    out = tmp_path / "disk"
    result = runner.invoke(app, ["datasets", "convert", str(path), str(out), "--target", "churned", "--id", "customer_id"])
    assert result.exit_code == 0, result.output
    assert f"dataset: {{X: {out / 'X.npy'}, y: {out / 'y.npy'}}}" in result.stdout
    assert "customer_id" in result.stderr and "id:" in result.stderr  # the column report
    config = write(
        tmp_path / "disk.yaml",
        f"data:\n  dataset: {{X: {out / 'X.npy'}, y: {out / 'y.npy'}}}\nmodel:\n  layers: [linear: 8, relu, linear: 2]\n"
        "train: {epochs: 2, batch_size: 16}\n",
    )
    fit = runner.invoke(app, ["fit", str(config), "--runs-root", str(tmp_path / "runs"), "--quiet"])
    assert fit.exit_code == 0, fit.output


def test_convert_refuses_what_fit_refuses(tmp_path):
    """The guards apply: a text ID column is refused until declared."""
    path = customers(tmp_path / "c.csv")
    result = runner.invoke(app, ["datasets", "convert", str(path), str(tmp_path / "o"), "--target", "churned"])
    assert result.exit_code == 2 and "customer_id" in result.stderr and "--id 'customer_id'" in result.stderr
    assert "data.columns" not in result.stderr  # convert's options, not config keys
    assert not (tmp_path / "o" / "X.npy").exists()


def test_convert_names_its_options_and_shows_dates(tmp_path):
    """The guards' hints name convert's options; a date column left out is shown as dates, not text."""
    path = tmp_path / "d.csv"
    path.write_text("when,x,y\n" + "".join(f"2024-01-{d:02d},{d % 3},{d % 2}\n" for d in range(1, 21)))
    refused = runner.invoke(app, ["datasets", "convert", str(path), str(tmp_path / "o"), "--target", "y"])
    assert refused.exit_code == 2
    assert "holds dates" in refused.stderr and "--ignore 'when'" in refused.stderr and "--categorical 'when'" in refused.stderr
    typo = runner.invoke(app, ["datasets", "convert", str(path), str(tmp_path / "o"), "--target", "y", "--ignore", "wen"])
    assert typo.exit_code == 2 and "--ignore: no column named 'wen'" in typo.stderr and "did you mean 'when'" in typo.stderr
    done = runner.invoke(app, ["datasets", "convert", str(path), str(tmp_path / "o"), "--target", "y", "--ignore", "when"])
    assert done.exit_code == 0, done.stderr
    assert re.search(r"when\s+ignored: date", done.stderr)


def test_convert_missing_values(tmp_path):
    path = write(tmp_path / "m.csv", "a,b,y\n" + "".join(f"{i * 3 % 7},{'' if i == 5 else i % 4},{i % 2}\n" for i in range(40)))
    with pytest.raises(NntrainError, match=r"m.csv, line 7: a missing value"):
        convert(path, tmp_path / "o")
    result = convert(path, tmp_path / "o", missing="drop", rows_per_batch=8)
    assert result["rows"] == 39 and np.load(tmp_path / "o" / "X.npy").shape == (39, 2)


def test_convert_names_the_line_of_a_bad_row_in_a_later_batch(tmp_path):
    rows = "".join(f"{i * 3 % 7},{i % 5},{i % 2}\n" for i in range(30_000))
    path = write(tmp_path / "bad.csv", "a,b,y\n" + rows + "1,2\n")
    with pytest.raises(NntrainError, match=r"bad.csv, line 30002: 2 fields, the header has 3"):
        convert(path, tmp_path / "o")
    assert not (tmp_path / "o" / "X.npy").exists()  # nothing half-written is left


def test_convert_bad_options_exit_2(tmp_path):
    path = customers(tmp_path / "c.csv")
    result = runner.invoke(app, ["datasets", "convert", str(path), str(tmp_path / "o"), "--missing", "impute"])
    assert result.exit_code == 2 and "--missing 'impute' is not one of: error, drop" in result.stderr


# The peak is VmHWM: ru_maxrss survives exec, so a child of a large pytest process would report
# the parent's size at the fork instead of its own.
PEAK = """
import sys
from pathlib import Path
from nntrain.data.convert import convert
convert(Path(sys.argv[1]), Path(sys.argv[2]))
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def _peak_kib(path: Path, out: Path) -> int:
    done = subprocess.run([sys.executable, "-c", PEAK, str(path), str(out)], capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1])


def _wide_csv(path: Path, megabytes: int) -> Path:
    """40 number columns and a label, about `megabytes` MB: one 1 MB block of rows, repeated."""
    rng = np.random.default_rng(1)
    block = "".join(",".join(f"{v:.5f}" for v in row) + f",{i % 3}\n" for i, row in enumerate(rng.normal(size=(1400, 40))))
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(40)) + ",label\n")
        for _ in range(int(megabytes * 2**20 / len(block))):
            f.write(block)
    return path


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from Linux's /proc")
def test_convert_memory_does_not_grow_with_the_file(tmp_path):
    """A file larger than the whole converting process's peak memory converts; 6 times the data, the same peak.

    pyarrow's CSV reader reads some tens of 1 MB blocks ahead (measured: the first batch of a 20 MB
    file costs 21 MB less than a 240 MB file's), so the smaller file is larger than that window.
    (Measured: 139-149 MiB for both 40 MB and 240 MB of CSV; most of it is numpy and pyarrow.)
    """
    small, large = _wide_csv(tmp_path / "small.csv", 40), _wide_csv(tmp_path / "large.csv", 240)
    small_peak, large_peak = _peak_kib(small, tmp_path / "s"), _peak_kib(large, tmp_path / "l")
    size = large.stat().st_size / 1024
    assert large_peak < size, (large_peak, size)  # the file was never held whole
    assert large_peak - small_peak < 0.1 * (size - small.stat().st_size / 1024), (small_peak, large_peak)
    X = np.load(tmp_path / "l" / "X.npy", mmap_mode="r")
    assert X.shape[1] == 40 and X.shape[0] == len(np.load(tmp_path / "l" / "y.npy"))
