"""Readers for user data files: CSV (optionally gzipped) with a header row, and NPZ with arrays X and y.

Features come out as X: (rows, features) float64; targets as y: (rows,) or (rows, k), a
string array when the labels are not numbers.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections import Counter
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from ..engine.registry import did_you_mean
from ..errors import NntrainError
from ..npzfile import Member, check_members, load_npz


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


def _target_column(header: list[str], target, path, position: dict[str, int] | None = None) -> int:
    if target is None:
        return len(header) - 1
    if isinstance(target, int):
        if not -len(header) <= target < len(header):
            raise NntrainError(f"column index {target} is out of range for {path} ({len(header)} columns)", "data.target")
        return target % len(header)
    position = position if position is not None else {h: j for j, h in enumerate(header)}
    if target not in position:
        raise NntrainError(
            f"no column named '{target}' in {path}{did_you_mean(target, header)}; columns: {', '.join(header)}",
            "data.target",
        )
    return position[target]


MISSING = ("", "na", "n/a", "nan", "null", "none", "?")  # cells read as missing, case-insensitive


@dataclass
class FeatureEncoder:
    """How a file's feature columns become the network's input.

    Numeric columns pass through; text columns are one-hot encoded over their sorted
    categories. The encoder is fitted on the training file and saved with the run, so
    eval and predict encode new files exactly the same way.
    """

    columns: list[str]  # raw feature column names, in input order
    categories: dict[str, list[str]] = field(default_factory=dict)  # text column -> categories

    @property
    def names(self) -> list[str]:
        """Input feature names after encoding: `col` or `col=category`."""
        return [n for c in self.columns for n in ([f"{c}={v}" for v in self.categories[c]] if c in self.categories else [c])]

    @property
    def unnamed(self) -> bool:
        """Columns named x0, x1, ... by nntrain (generators, .npz), not by the user."""
        return self.columns == [f"x{j}" for j in range(len(self.columns))]

    def encode(self, cells: np.ndarray, lines: np.ndarray, path) -> np.ndarray:
        """cells: (rows, columns) text -> (rows, len(names)) float64; unknown categories are errors."""
        if not self.categories and cells.shape[1]:
            try:  # all columns numeric: one conversion for the whole table (files may have 10,000s of columns)
                values = cells.astype(np.float64)
            except ValueError:
                values = None
            if values is not None and np.isfinite(values).all():
                return values
        blocks = []
        for j, column in enumerate(self.columns):
            if column in self.categories:
                index = {c: i for i, c in enumerate(self.categories[column])}
                known = np.isin(cells[:, j], self.categories[column])
                if not known.all():
                    r = int(np.argmin(known))
                    raise NntrainError(
                        f"{path}, line {lines[r]}, column '{column}': category '{cells[r, j]}' was not in the training"
                        f" data; known: {', '.join(self.categories[column])}"
                    )
                onehot = np.zeros((len(cells), len(index)))
                onehot[np.arange(len(cells)), [index[v] for v in cells[:, j]]] = 1
                blocks.append(onehot)
            else:
                blocks.append(_numbers(cells[:, j], lines, path, column)[:, None])
        return np.hstack(blocks) if blocks else np.empty((len(cells), 0))

    @classmethod
    def fit(cls, cells: np.ndarray, lines: np.ndarray, columns: list[str], path) -> "FeatureEncoder":
        """Text columns are those where most cells are not numbers; a stray word in a numeric column is an error."""
        categories = {}
        try:  # every cell a number: no text columns, one conversion for the whole table
            cells.astype(np.float64)
            return cls(list(columns), categories)
        except ValueError:
            pass
        for j, column in enumerate(columns):
            numeric = _parses(cells[:, j])
            if not numeric.all() and numeric.mean() < 0.5:
                categories[column] = sorted(set(cells[:, j].tolist()))
        return cls(list(columns), categories)

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {"data.columns": np.array(self.columns, dtype=np.str_)}
        for j, column in enumerate(self.columns):
            if column in self.categories:
                state[f"data.categories.{j}"] = np.array(self.categories[column], dtype=np.str_)
        return state

    @classmethod
    def from_state(cls, state: dict) -> "FeatureEncoder":
        columns = [str(c) for c in state["data.columns"]]
        categories = {
            c: [str(v) for v in state[f"data.categories.{j}"]] for j, c in enumerate(columns) if f"data.categories.{j}" in state
        }
        return cls(columns, categories)


@dataclass
class Table:
    """A CSV file read for nntrain: encoded features, raw target, the encoder, rows dropped as missing."""

    X: np.ndarray  # (rows, features) float64
    y: np.ndarray | None  # (rows,) numbers, or strings for text labels; None without a target
    encoder: FeatureEncoder
    dropped: int = 0


def _parses(cells: np.ndarray) -> np.ndarray:
    """Which cells are numbers (finite or not)."""
    try:
        cells.astype(np.float64)
        return np.ones(len(cells), dtype=bool)
    except ValueError:
        pass
    out = np.empty(len(cells), dtype=bool)
    for i, c in enumerate(cells.tolist()):  # only on the slow path: a column with text in it
        try:
            float(c)
            out[i] = True
        except ValueError:
            out[i] = False
    return out


def _numbers(cells: np.ndarray, lines: np.ndarray, path, column: str) -> np.ndarray:
    """A column of finite numbers, or an error naming the first bad cell's line."""
    ok = _parses(cells)
    if not ok.all():
        r = int(np.argmin(ok))
        raise NntrainError(f"{path}, line {lines[r]}, column '{column}': '{cells[r]}' is not a number")
    values = cells.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.all():
        r = int(np.argmin(finite))
        raise NntrainError(f"{path}, line {lines[r]}, column '{column}': '{cells[r]}' is not a finite number")
    return values


def _csv_rows(path: Path):
    """(line number, fields) of every row of a CSV file, as csv.reader parses it.

    The one place where reading the file can fail: a damaged gzip stream, text that is not
    UTF-8, a NUL byte, a field beyond the csv module's limit, a refused read. Each becomes an
    NntrainError that names the file, and the line where it is known.
    """
    line = 0  # lines handed to the csv reader so far

    def lines(f):
        nonlocal line
        for text in f:
            line += 1
            if "\0" in text:
                raise NntrainError(
                    f"{path}, line {line}: a NUL byte, which UTF-8 text does not hold (a UTF-16 file? not a CSV file?);"
                    " save the file as UTF-8"
                )
            yield text

    try:
        with _open_text(path) as f:
            reader = csv.reader(lines(f))
            for row in reader:
                yield reader.line_num, row
    except UnicodeDecodeError as e:
        where = _undecodable_line(path)
        raise NntrainError(
            f"{path}{f', line {where}' if where else ''}: not UTF-8 text (byte 0x{e.object[e.start]:02x}: {e.reason});"
            " save the file as UTF-8"
        ) from None
    except (zlib.error, gzip.BadGzipFile, EOFError) as e:
        raise NntrainError(f"{path}: the gzip data is damaged or truncated ({e}); a .csv.gz file must be gzip-compressed CSV text") from None
    except csv.Error as e:
        reason = str(e)
        if "field limit" in reason:
            reason = (
                f"a field is longer than {csv.field_size_limit():,} characters"
                " (a quote \" that opens a field and is never closed?)"
            )
        raise NntrainError(f"{path}, line {line}: {reason}") from None
    except OSError as e:
        raise NntrainError(f"cannot read {path}: {e.strerror or e}") from None


def _undecodable_line(path: Path) -> int | None:
    """The line (1-based, as an editor counts) holding the first byte that is not UTF-8; None if it cannot be told."""
    try:
        opener = gzip.open if str(path).lower().endswith(".gz") else open
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):  # a UTF-8 sequence never holds a newline byte
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    return number
    except (OSError, EOFError, zlib.error):
        pass
    return None


def _read_cells(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(header, cells (rows, columns) stripped text, line number of each row) of a CSV file."""
    rows, lines = [], []
    with closing(_csv_rows(path)) as reader:  # closed (and the file with it) also when a row is an error
        header, last = _header(reader, path)
        width = len(header)
        for line, row in reader:
            first, last = last + 1, line  # a quoted field may span lines: the row runs from line `first` to `line`
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != width:
                if line > first and any("\n" in c or "\r" in c for c in row):
                    raise NntrainError(
                        f"{path}, line {first}: {len(row)} fields, the header has {width}; a quoted field runs from"
                        f" there to line {line} (a quote \" that opens a field and is never closed?)"
                    )
                raise NntrainError(f"{path}, line {line}: {len(row)} fields, the header has {width}")
            rows.append(row)
            lines.append(line)
    if not rows:
        raise NntrainError(f"{path} has a header but no data rows")
    cells = np.char.strip(np.array(rows, dtype=np.str_))
    return header, cells, np.array(lines)


def _missing_rows(cells: np.ndarray, lines: np.ndarray, columns: list[str], path, missing: str) -> np.ndarray:
    """Rows to keep: all of them, or with missing='drop' those without a missing cell."""
    is_missing = np.isin(np.char.lower(cells), MISSING)
    if not is_missing.any():
        return np.ones(len(cells), dtype=bool)
    if missing == "drop":
        return ~is_missing.any(axis=1)
    r, j = (int(i) for i in np.argwhere(is_missing)[0])
    raise NntrainError(
        f"{path}, line {lines[r]}, column '{columns[j]}': missing value '{cells[r, j]}'"
        " (set data.missing: drop to skip rows with missing values)"
    )


def read_table(
    path: Path, target=None, missing: str = "error", encoder: FeatureEncoder | None = None, with_target: bool = True
) -> Table:
    """A CSV with a header row: features encoded by `encoder` (fitted here when None) and the target.

    With an encoder (a saved run's), its columns are looked up by name and other columns are
    ignored; the target is `target`, else the one column left over. Columns nntrain named
    itself (x0, x1, ...) may also come unnamed, in order, the target last. Without
    `with_target` (predict) no target is read.
    """
    header, cells, lines = _read_cells(path)
    position = {h: j for j, h in enumerate(header)}  # names are unique (_header): lookups stay linear in the columns
    if encoder is None:
        col = _target_column(header, target, path, position)
        features = [h for j, h in enumerate(header) if j != col]
    else:
        features = encoder.columns
        if not all(c in position for c in features):
            if not (encoder.unnamed and len(header) == len(features) + with_target):
                raise NntrainError(f"{path} has columns {header}; the model needs the features {features}")
            header = [*features, "target"][: len(header)]
            position = {h: j for j, h in enumerate(header)}
            target = "target" if with_target else None
        col = None
        if with_target:
            wanted = set(features)
            rest = [h for h in header if h not in wanted]
            if target is None and len(rest) != 1:
                raise NntrainError(f"{path}: cannot tell the target column among {rest or 'no other columns'}")
            col = _target_column(header, target if target is not None else rest[0], path, position)
    columns = [position[c] for c in features]
    used = columns + ([col] if col is not None else [])
    keep = _missing_rows(cells[:, used], lines, [header[j] for j in used], path, missing)
    cells, lines = cells[keep], lines[keep]
    if not len(cells):
        raise NntrainError(f"{path}: every row has a missing value")
    feature_cells = cells[:, columns]
    if encoder is None:
        encoder = FeatureEncoder.fit(feature_cells, lines, features, path)
    X = encoder.encode(feature_cells, lines, path)
    y = None if col is None else _target(cells[:, col], lines, path, header[col])
    return Table(X, y, encoder, int((~keep).sum()))


EXACT = 2**53  # float64 holds every whole number of smaller magnitude exactly, and not every larger one


def _target(cells: np.ndarray, lines: np.ndarray, path, column: str) -> np.ndarray:
    """Numbers when every label is a number (then they must be finite), else the text labels.

    The numbers are float64, unless one of them is too large for float64 to hold every whole
    number around it (|v| >= 2**53: 10**30 and 10**30 + 1 are one float). Then they are exact
    Python numbers in an object array: whole numbers as int (read from the text, digit for
    digit), others as float. No two labels that differ in the file become the same.
    """
    if not _parses(cells).all():
        return cells
    values = _numbers(cells, lines, path, column)
    if len(values) and np.abs(values).max() >= EXACT:
        return np.array([_exact(c) for c in cells.tolist()], dtype=object)
    return values


def _exact(cell: str) -> int | float:
    """The number a (finite) cell holds: an int when it is a whole number (exact, however large), else a float."""
    try:
        d = Decimal(cell)
    except InvalidOperation:  # a form float() reads and Decimal does not
        return float(cell)
    return int(d) if d == d.to_integral_value() else float(d)


def read_csv(path: Path, target=None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) of a CSV: the short form of `read_table` for training files."""
    table = read_table(path, target)
    return table.X, table.y, table.encoder.names


def _header(rows, path) -> tuple[list[str], int]:
    """The first row that is not a blank line, stripped, and its line: one non-empty name per column, each name once.

    Blank lines (no field, or one of only spaces) before it are skipped. A row of empty
    fields (`,,`) is not a blank line but a header without names, and an error.
    """
    for line, row in rows:
        if len(row) <= 1 and not "".join(row).strip():
            continue
        header = [h.strip() for h in row]
        if not any(header):
            raise NntrainError(f"{path}, line {line}: the header row has no column names; a CSV needs a header row naming every column")
        unnamed = [j for j, h in enumerate(header) if not h]
        if unnamed:
            j = unnamed[0]
            if j == 0:
                why = " (a row-number column, as R's write.csv and pandas' to_csv write, would leak the row order into the model)"
            elif j == len(header) - 1:
                why = " (a comma at the end of the header line?)"
            else:
                why = ""
            raise NntrainError(f"{path}: column {j + 1} has no name in the header{why}; name it, or drop it")
        repeated = sorted(h for h, n in Counter(header).items() if n > 1)
        if repeated:
            raise NntrainError(f"{path}: the header names {repeated} more than once; column names must be unique")
        return header, line
    raise NntrainError(f"{path} is empty; a CSV needs a header row and data rows")


def first_non_finite_row(X: np.ndarray, chunk_bytes: int = 2**20) -> int | None:
    """The first row of X with a NaN or infinity, or None; checked in chunks (no X-sized temporary)."""
    chunk = max(1, chunk_bytes // max(1, X.shape[1]))
    for start in range(0, len(X), chunk):
        finite = np.isfinite(X[start : start + chunk]).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


NPZ_MEMBERS = {  # what a data .npz holds; other arrays in it are ignored
    "X": Member("biuf", ("rows", None), required=True),
    "y": Member("biufU", [("rows",), ("rows", None)], required=True, values="finite"),
}


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Arrays `X` (rows, features) and `y` (rows,) or (rows, k) from an .npz, checked (NPZ_MEMBERS, X finite)."""
    arrays = load_npz(path, members=NPZ_MEMBERS)
    check_members(path, arrays, NPZ_MEMBERS)
    X, y = arrays["X"], arrays["y"]
    if not len(X):
        raise NntrainError(f"{path} has no rows; X has shape {X.shape}")
    if X.dtype.kind != "f":  # integers become float64; float32 stays float32 (half the memory)
        X = X.astype(np.float64)
    row = first_non_finite_row(X)
    if row is not None:
        raise NntrainError(f"{path}: X has a NaN or infinite value in row {row}")
    if y.dtype.kind in "iu" and y.size and max(abs(int(y.min())), abs(int(y.max()))) >= EXACT:
        pass  # integers that float64 would round (2**53 + 1 -> 2**53) stay integers: labels are never changed
    elif y.dtype.kind != "U":
        y = y.astype(np.float64)
    return X, y, [f"x{j}" for j in range(X.shape[1])]
