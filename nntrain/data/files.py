"""Readers for user data files: tables (CSV, Parquet, Feather) with named columns, and NPZ with arrays X and y.

Features come out as X: (rows, features) float64 (an .npz of images: rows of their pixels,
see `read_arrays`); targets as y: (rows,) or (rows, k), a string array when the labels are not
numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from ..engine.registry import did_you_mean
from ..errors import NntrainError
from ..npzfile import Member, check_members, load_npy, load_npz
from .arrays import X_MEMBER
from .columns import ColumnPlan, FeatureEncoder, Roles, plan_columns
from .shapes import sample_shape_of
from .table import NUMBER, TABLE_SUFFIXES, Column, Table, bools, cells_of, float64s, header_names, read


FILE_SUFFIXES = (*TABLE_SUFFIXES, ".npz", ".txt")  # .txt: a plain text for a language model (data.text)


def is_data_file(path) -> bool:
    return str(path).lower().endswith(FILE_SUFFIXES)


@dataclass
class TableOptions:
    """What data.* says of reading a table file: target, roles, missing values, unknown categories, delimiter."""

    target: str | int | None = None
    missing: str = "error"  # "error" | "drop" | "impute"
    roles: Roles = field(default_factory=Roles)
    unknown: str = "error"  # "error" | "ignore"
    delimiter: str | None = None  # None: detected
    indicators: bool = False  # data.impute.indicators
    constants: dict[str, object] = field(default_factory=dict)  # category column -> its constant fill value

    @classmethod
    def of(cls, data) -> "TableOptions":
        """From a DataConfig."""
        impute = data.impute
        constants = {}
        if impute is not None:
            # Only category columns use these (a constant category is added to the column's categories).
            constants = {n: _category_constant(r) for n, r in impute.columns.items() if r.strategy == "constant"}
            if impute.categorical.strategy == "constant":
                constants["*"] = _category_constant(impute.categorical)
        delimiter = data.delimiter
        return cls(
            data.target, data.missing, Roles.of(data), data.unknown,
            None if delimiter == "auto" else delimiter, bool(impute and impute.indicators), constants,
        )


def _category_constant(rule) -> str:
    """The category a constant rule fills in: its value as text, or 'missing' (impute_rules' default too)."""
    return "missing" if rule.value is None else str(rule.value)


@dataclass
class TableData:
    """A table file read for nntrain: encoded features (NaN where missing), raw target, and what reading found."""

    X: np.ndarray  # (rows, features) float64
    y: np.ndarray | None  # (rows,) numbers, or strings for text labels; None without a target
    encoder: FeatureEncoder
    dropped: int = 0
    plans: list[ColumnPlan] = field(default_factory=list)  # every column's role (training files)
    notes: list[str] = field(default_factory=list)
    ids: np.ndarray | None = None  # the id column's cells, as text
    table: Table | None = None  # for line numbers of rows


def _target_name(names: list[str], target, path, unnamed=()) -> str:
    if target is None:
        if names[-1] in unnamed:
            raise NntrainError(
                f"{path}: the target is the last column by default, and it has no name in the header"
                " (a comma at the end of the header line?); name it, or set data.target",
                "data.target",
            )
        return names[-1]
    if isinstance(target, int):
        if not -len(names) <= target < len(names):
            raise NntrainError(f"column index {target} is out of range for {path} ({len(names)} columns)", "data.target")
        return names[target % len(names)]
    if target not in names:
        raise NntrainError(
            f"no column named '{target}' in {path}{did_you_mean(target, names)}; columns: {', '.join(names)}",
            "data.target",
        )
    return target


def read_table(
    path: Path,
    target=None,
    missing: str = "error",
    encoder: FeatureEncoder | None = None,
    with_target: bool = True,
    options: TableOptions | None = None,
    problems: dict | None = None,
) -> TableData:
    """A table file: features encoded by `encoder` (fitted here when None, from the columns' roles) and the target.

    With an encoder (a saved run's), its columns are looked up by name and other columns are
    ignored; the target is `target`, else the one column left over (an id column aside).
    Columns nntrain named itself (x0, x1, ...) may also come unnamed, in order, the target
    last. Without `with_target` (predict) no target is read. `problems` (predict): rows that
    cannot be encoded are recorded there ({row: message}) instead of being an error.
    """
    options = options or TableOptions(target, missing)
    roles = options.roles
    names, unnamed = header_names(path, options.delimiter)
    target_name = None
    if encoder is None:
        target_name = _target_name(names, options.target, path, unnamed)
    elif with_target:
        features = set(encoder.columns)
        if not features <= set(names) and not (encoder.unnamed and len(names) == len(encoder.columns) + 1):
            raise NntrainError(f"{path} has columns {names}; the model needs the features {encoder.columns}")
        if not features <= set(names):
            target_name = names[-1]
        else:
            rest = [h for h in names if h not in features and h != roles.id and h not in roles.ignore and h not in unnamed]
            if options.target is None and len(rest) != 1:
                raise NntrainError(f"{path}: cannot tell the target column among {rest or 'no other columns'}")
            target_name = _target_name(names, options.target if options.target is not None else rest[0], path)
    text = set(encoder.text_columns() if encoder is not None else roles.categorical)
    text |= {n for n in (target_name, roles.id) if n is not None}
    table = read(path, options.delimiter, text)
    if encoder is not None and not table.has(encoder.columns):
        if not (encoder.unnamed and len(table.names) == len(encoder.columns) + with_target):
            raise NntrainError(f"{path} has columns {table.names}; the model needs the features {encoder.columns}")
        for column, name in zip(table.columns, [*encoder.columns, "target"]):
            column.name = name
        target_name = "target" if with_target else None
    notes, dropped = [], 0
    if target_name is not None:
        gaps = table.column(target_name).missing
        if gaps.any():
            if options.missing == "error":
                raise NntrainError(
                    f"{table.where(int(np.argmax(gaps)))}, column '{target_name}': the target is missing"
                    " (set data.missing: drop to skip such rows)"
                )
            notes.append(f"{path}: dropped {int(gaps.sum())} rows without a target ('{target_name}')")
            dropped += int(gaps.sum())
            table = table.select(~gaps)
    plans = plan_columns(table, target_name, roles) if encoder is None else []
    features = encoder.columns if encoder is not None else [p.name for p in plans if p.role == "feature"]
    if options.missing != "impute":
        table, gone, note = _missing_rows(table, features, options.missing, problems)
        dropped += gone
        notes += [note] if note else []
    if encoder is None:
        constants = {p.name: options.constants.get(p.name, options.constants.get("*")) for p in plans if p.kind == "category"}
        constants = {k: v for k, v in constants.items() if v is not None}
        encoder = FeatureEncoder.fit(table, plans, options.indicators, constants, options.unknown)
    X = encoder.encode(table, problems)
    y = None
    if target_name is not None:
        column = table.column(target_name)
        y = target_values(column, table)
    ids = cells_of(table.column(roles.id)) if roles.id is not None and roles.id in table.names else None
    return TableData(X, y, encoder, dropped, plans, notes, ids, table)


def _missing_rows(table: Table, features: list[str], missing: str, problems: dict | None) -> tuple[Table, int, str]:
    """(table, rows dropped, a note): without rows that have a missing feature (data.missing: drop), or an error.

    With `problems` (predict), such rows are recorded as problems and kept (as NaN).
    """
    gaps = {name: table.column(name).missing for name in features}
    gaps = {name: g for name, g in gaps.items() if g.any()}
    if not gaps:
        return table, 0, ""
    any_gap = np.logical_or.reduce(list(gaps.values()))
    if problems is not None:
        for r in np.flatnonzero(any_gap):
            first = next(name for name, g in gaps.items() if g[r])
            problems.setdefault(int(r), f"column '{first}': missing value (the run's data.missing is {missing}, not impute)")
        return table, 0, ""
    if missing == "drop":
        kept = table.select(~any_gap)
        if not len(kept):
            raise NntrainError(f"{table.path}: every row has a missing value ({_gap_counts(gaps)})")
        gone = int(any_gap.sum())
        return kept, gone, f"{table.path}: dropped {gone} rows with missing values (data.missing: drop); missing in {_gap_counts(gaps)}"
    r = int(np.argmax(any_gap))
    first = next(name for name, g in gaps.items() if g[r])
    raise NntrainError(
        f"{table.where(r)}, column '{first}': missing value (set data.missing: drop to skip such rows, or impute to"
        f" fill them; missing in {_gap_counts(gaps)})"
    )


def _gap_counts(gaps: dict[str, np.ndarray]) -> str:
    """'Comments 290 rows, Sex 11 rows': the columns with missing cells, most first."""
    counts = sorted(((int(g.sum()), name) for name, g in gaps.items()), reverse=True)
    shown = ", ".join(f"{name} {n} row{'s' if n != 1 else ''}" for n, name in counts[:10])
    return shown + (f", and {len(counts) - 10} more columns" if len(counts) > 10 else "")


EXACT = 2**53  # float64 holds every whole number of smaller magnitude exactly, and not every larger one


def target_values(column: Column, table: Table) -> np.ndarray:
    """Numbers when every label is a number (then they must be finite), else the text labels.

    The numbers are float64, unless one of them is too large for float64 to hold every whole
    number around it (|v| >= 2**53: 10**30 and 10**30 + 1 are one float). Then they are exact
    Python numbers in an object array: whole numbers as int (read from the text, digit for
    digit), others as float. No two labels that differ in the file become the same.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    text = column.text()
    if not bools(pc.match_substring_regex(text, NUMBER.pattern, ignore_case=True), null=True).all():
        return cells_of(column)
    try:
        values = float64s(pc.cast(text, pa.float64()))
    except pa.ArrowInvalid:  # a spelling pyarrow does not read ('Infinity')
        values = np.array([float(c) for c in cells_of(column).tolist()])
    finite = np.isfinite(values)
    if not finite.all():
        r = int(np.argmin(finite))
        raise NntrainError(f"{table.where(r)}, column '{column.name}': '{text[r].as_py()}' is not a finite number")
    if len(values) and np.abs(values).max() >= EXACT:
        return np.array([_exact(c) for c in cells_of(column).tolist()], dtype=object)
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


def first_non_finite_row(X: np.ndarray, chunk_bytes: int = 2**20) -> int | None:
    """The first row of X with a NaN or infinity, or None; checked in chunks (no X-sized temporary)."""
    chunk = max(1, chunk_bytes // max(1, X.shape[1]))
    for start in range(0, len(X), chunk):
        finite = np.isfinite(X[start : start + chunk]).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


NPZ_MEMBERS = {  # what a data .npz holds; other arrays in it are ignored
    "X": X_MEMBER,  # (rows, features), (rows, height, width) or (rows, channels, height, width)
    "y": Member("biufU", [("rows",), ("rows", None)], required=True, values="finite"),
    # Sequences (rows, steps, ...) padded after their last real step: each one's real length, 1 .. steps.
    "lengths": Member("iu", ("rows",), values="positive"),
}


def read_text_column(path: Path, column: str, target=None, delimiter: str | None = None, with_target: bool = True,
                     missing: str = "error"):
    """(texts (rows,) str, raw target or None) of a table whose `column` holds text: a text classifier's data.

    The target is `target` (a name or index), else the last column other than `column`: numbers
    or labels as in any table. A missing text cell is the empty text; a missing target is an
    error naming its line, or (`missing` "drop") drops the row. Other columns are not read.
    """
    names, unnamed = header_names(path, delimiter)
    if column not in names:
        raise NntrainError(f"no column named '{column}' in {path}{did_you_mean(column, names)}; columns: {', '.join(names)}", "data.text.column")
    target_name = None
    if with_target:
        others = [n for n in names if n != column]
        if not others:
            raise NntrainError(f"{path} has only its text column '{column}'; a target column is needed", "data.target")
        target_name = _target_name(others if target is None else names, target, path, unnamed)
        if target_name == column:
            raise NntrainError(f"'{column}' is the text column; the target must be another", "data.target")
    table = read(path, delimiter, {column})
    texts = cells_of(table.column(column))
    y = None
    if target_name is not None:
        cells = table.column(target_name)
        y = cells_of(cells) if cells.kind != "number" else np.asarray(cells.values, dtype=np.float64)
        absent = np.isnan(y) if y.dtype.kind == "f" else (np.char.strip(y) == "")
        if absent.any() and missing != "drop":
            raise NntrainError(
                f"{table.where(int(np.argmax(absent)))}, column '{target_name}': the target is missing; fill it, or set"
                " data.missing: drop",
                "data.missing",
            )
        texts, y = texts[~absent], y[~absent]
    return texts, y


@dataclass
class ArrayData:
    """The arrays of an .npz (or an .npy of X alone): X as rows, y, and the shape of one sample."""

    X: np.ndarray  # (rows, prod(sample_shape)): a view of the file's X, flattened in C order
    y: np.ndarray | None  # (rows,) or (rows, k); None when not read (predict) or not there (.npy)
    sample_shape: tuple[int, ...]  # (features,), or (channels, height, width) for images
    lengths: np.ndarray | None = None  # (rows,) int64: sequences' real lengths (see read_arrays)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Arrays `X` as rows (rows, features) and `y` (rows,) or (rows, k) from an .npz, checked (see `read_arrays`)."""
    data = read_arrays(path)
    return data.X, data.y, [f"x{j}" for j in range(data.X.shape[1])]


def read_arrays(path: Path, with_target: bool = True) -> ArrayData:
    """X (2-D to 4-D, finite numbers) and, `with_target`, y of an .npz, or X of an .npy; checked (NPZ_MEMBERS).

    X (N, H, W) is N one-channel images, sample shape (1, H, W); X (N, C, H, W) has shape
    (C, H, W). Integers become float64; float32 stays float32 (half the memory). An .npz may
    hold `lengths` (N,): the real length of each sequence X[i] (steps on axis 1, padded after
    them), 1 .. X.shape[1]; it is read with X (predict included).
    """
    if str(path).lower().endswith(".npy"):
        arrays = {"X": load_npy(path)}
        check_members(path, arrays, {"X": X_MEMBER})
    else:
        spec = NPZ_MEMBERS if with_target else {k: NPZ_MEMBERS[k] for k in ("X", "lengths")}
        arrays = load_npz(path, members=spec)
        check_members(path, arrays, spec)
    X, y, lengths = arrays["X"], arrays.get("y"), arrays.get("lengths")
    if not len(X):
        raise NntrainError(f"{path} has no rows; X has shape {X.shape}")
    if lengths is not None:
        if X.ndim not in (2, 3):
            raise NntrainError(f"{path}: 'lengths' are for sequences, X of (rows, steps) or (rows, steps, features); X has shape {X.shape}")
        if len(lengths) != len(X):
            raise NntrainError(f"{path}: 'lengths' has {len(lengths)} entries for the {len(X)} rows of X")
        if int(lengths.max()) > X.shape[1]:
            row = int(np.argmax(lengths > X.shape[1]))
            raise NntrainError(
                f"{path}: 'lengths' gives row {row} {int(lengths[row])} steps, but X's sequences have {X.shape[1]}"
                f" (X has shape {X.shape}: steps on axis 1)"
            )
        lengths = lengths.astype(np.int64)
    shape = sample_shape_of(X.shape)
    X = np.ascontiguousarray(X).reshape(len(X), -1)  # rows in C order: a view of a C-order array
    if X.dtype.kind != "f":
        X = X.astype(np.float64)
    row = first_non_finite_row(X)
    if row is not None:
        raise NntrainError(f"{path}: X has a NaN or infinite value in row {row}")
    if y is None:
        pass
    elif y.dtype.kind in "iu" and y.size and max(abs(int(y.min())), abs(int(y.max()))) >= EXACT:
        pass  # integers that float64 would round (2**53 + 1 -> 2**53) stay integers: labels are never changed
    elif y.dtype.kind != "U":
        y = y.astype(np.float64)
    return ArrayData(X, y, shape, lengths)
