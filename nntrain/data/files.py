"""Readers for user data files: CSV with a header row, and NPZ with arrays `X` and `y`.

Both return (X: (rows, features) float64, y: (rows,) or (rows, k), feature names).
y is a string array when the file's labels are not numbers.
"""

from __future__ import annotations

import csv
import gzip
import zipfile
from pathlib import Path

import numpy as np

from ..engine.registry import did_you_mean
from ..errors import NntrainError


CSV_SUFFIXES = (".csv", ".csv.gz")
FILE_SUFFIXES = (*CSV_SUFFIXES, ".npz")


def is_csv(path) -> bool:
    return str(path).lower().endswith(CSV_SUFFIXES)


def is_data_file(path) -> bool:
    return str(path).lower().endswith(FILE_SUFFIXES)


def _open_text(path: Path):
    """A CSV file for reading, gzip-compressed or not."""
    if str(path).lower().endswith(".gz"):
        return gzip.open(path, "rt", newline="", encoding="utf-8-sig")
    return open(path, newline="", encoding="utf-8-sig")


def _target_column(header: list[str], target, path) -> int:
    if target is None:
        return len(header) - 1
    if isinstance(target, int):
        if not -len(header) <= target < len(header):
            raise NntrainError(f"column index {target} is out of range for {path} ({len(header)} columns)", "data.target")
        return target % len(header)
    if target not in header:
        raise NntrainError(
            f"no column named '{target}' in {path}{did_you_mean(target, header)}; columns: {', '.join(header)}",
            "data.target",
        )
    return header.index(target)


def read_csv(path: Path, target=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numeric feature columns and a target column (by name, index, or the last one)."""
    with _open_text(path) as f:
        rows = csv.reader(f)
        header = _header(rows, path)
        col = _target_column(header, target, path)
        features = [h for j, h in enumerate(header) if j != col]
        X, y = [], []
        for row in rows:
            if not row or all(not c.strip() for c in row):
                continue
            line = rows.line_num
            if len(row) != len(header):
                raise NntrainError(f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
            values = []
            for j, cell in enumerate(row):
                if j == col:
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    raise NntrainError(
                        f"{path}, line {line}, column '{header[j]}': '{cell}' is not a number"
                        " (features must be numeric and not missing)"
                    ) from None
                if not np.isfinite(value):
                    raise NntrainError(f"{path}, line {line}, column '{header[j]}': '{cell}' is not a finite number")
                values.append(value)
            if not row[col].strip():
                raise NntrainError(f"{path}, line {line}: the target column '{header[col]}' is empty")
            if not _finite_or_text(row[col]):
                raise NntrainError(f"{path}, line {line}, column '{header[col]}': '{row[col]}' is not a finite number")
            X.append(values)
            y.append(row[col].strip())
    if not X:
        raise NntrainError(f"{path} has a header but no data rows")
    return np.array(X, dtype=np.float64), _parse_target(np.array(y)), features


def _header(rows, path) -> list[str]:
    """The first non-blank row, stripped."""
    for row in rows:
        if any(c.strip() for c in row):
            return [h.strip() for h in row]
    raise NntrainError(f"{path} is empty; a CSV needs a header row and data rows")


def _finite_or_text(cell: str) -> bool:
    """False for 'nan', 'inf' and friends: a label that parses as a number must be finite."""
    try:
        return bool(np.isfinite(float(cell)))
    except ValueError:
        return True


def _parse_target(y: np.ndarray) -> np.ndarray:
    """Numbers when every label is a number, else the strings themselves (class names)."""
    try:
        return y.astype(np.float64)
    except ValueError:
        return y


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Arrays `X` (rows, features) and `y` (rows,) from an .npz; never unpickles anything."""
    try:
        npz = np.load(path, allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            raise NntrainError(f"{path} holds a single array; an .npz needs the arrays 'X' and 'y' (np.savez)")
        with npz:
            missing = [k for k in ("X", "y") if k not in npz.files]
            if missing:
                raise NntrainError(f"{path} has arrays {npz.files}; it needs 'X' and 'y'")
            X, y = npz["X"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        raise NntrainError(f"{path} is not a readable .npz of plain arrays ({e})") from None
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise NntrainError(f"{path}: X must be a 2-D numeric array, got shape {X.shape} dtype {X.dtype}")
    if y.ndim not in (1, 2):
        raise NntrainError(f"{path}: y must be 1-D (labels or values) or 2-D (several targets), got shape {y.shape}")
    if len(y) != len(X):
        raise NntrainError(f"{path}: X has {len(X)} rows but y has {len(y)}")
    if y.dtype.kind not in "biufU":
        raise NntrainError(f"{path}: y must be numbers or strings, got dtype {y.dtype}")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        row = int(np.argwhere(~np.isfinite(X))[0][0])
        raise NntrainError(f"{path}: X has a NaN or infinite value in row {row}")
    if y.dtype.kind != "U":
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise NntrainError(f"{path}: y has a NaN or infinite value in row {int(np.argwhere(~np.isfinite(y))[0][0])}")
    return X, y, [f"x{j}" for j in range(X.shape[1])]


def read_features(path: Path, names: list[str]) -> np.ndarray:
    """Feature columns of a CSV for prediction: (rows, len(names)) float64.

    Columns are taken by name when the header has every training feature name (other
    columns, such as the target, are ignored). Features that had no names (a generator's
    or an .npz's x0, x1, ...) may also come as exactly len(names) columns, taken in order.
    """
    unnamed = names == [f"x{j}" for j in range(len(names))]
    with _open_text(path) as f:
        rows = csv.reader(f)
        header = _header(rows, path)
        if all(n in header for n in names):
            columns = [header.index(n) for n in names]
        elif unnamed and len(header) == len(names):
            columns = list(range(len(names)))
        else:
            raise NntrainError(f"{path} has columns {header}; the model needs the features {names}")
        X = []
        for row in rows:
            if not row or all(not c.strip() for c in row):
                continue
            try:
                values = [float(row[j]) for j in columns]
            except (ValueError, IndexError):
                values = [np.nan]
            if not np.isfinite(values).all():
                raise NntrainError(
                    f"{path}, line {rows.line_num}: expected finite numbers in columns {[header[j] for j in columns]}"
                )
            X.append(values)
    if not X:
        raise NntrainError(f"{path} has a header but no data rows")
    return np.array(X, dtype=np.float64)
