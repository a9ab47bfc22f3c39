"""`nntrain datasets convert`: a table file, however large, into the on-disk rows that train in bounded memory.

The file is read twice, a batch of rows at a time: first to find every category of the
category columns (and the columns' roles and guards, from the first batch), then to encode
each batch and append it to X.npy. The result is `{X: X.npy, y: y.npy}`, which `data.dataset`
reads batch by batch; `features.json` records the encoded input names.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from ..fileio import AtomicStream, activity, atomic_write, make_dir
from .columns import FeatureEncoder, Roles, plan_columns
from .files import _target_name, target_values
from .table import Column, Table, batches, header_names


def _numeric(column: Column) -> Column:
    """A column typed as text in a batch where it had no number at all (all missing) is still a number column."""
    if column.kind == "text":
        column.kind = "text-number"
    return column


def convert(
    path: Path,
    out: Path,
    target=None,
    roles: Roles | None = None,
    missing: str = "error",
    delimiter: str | None = None,
    dtype: str = "float32",
    rows_per_batch: int = 65536,
) -> dict:
    """Write out/X.npy (rows, inputs) as `dtype`, out/y.npy (the target) and out/features.json; return a summary."""
    roles = roles or Roles()
    names, unnamed = header_names(path, delimiter)
    target_name = _target_name(names, target, path, unnamed)
    text = set(roles.categorical) | {target_name} | ({roles.id} if roles.id else set())
    plans, categories, kept, found, numbers = None, {}, 0, {}, True
    for table in batches(path, delimiter, text, rows_per_batch):
        if plans is None:
            plans = plan_columns(table, target_name, roles)  # roles and guards, judged on the first batch
            features = [p for p in plans if p.role == "feature"]
            categories = {p.name: set() for p in features if p.kind == "category"}
        for name, seen in categories.items():
            column = table.column(name)
            values = column.values if column.kind == "text" else column.text()
            seen.update(v for v in values.unique().to_pylist() if v is not None)
            if len(seen) > roles.max_categories and not roles.declared(name):
                raise NntrainError(
                    f"{path}: text column '{name}' has more than {roles.max_categories} distinct values"
                    f" (data.columns.max_categories); list it in data.columns.ignore, or in data.columns.categorical",
                    "data.columns",
                )
        gaps = _gaps(table, [p.name for p in features] + [target_name])
        if gaps.any() and missing == "error":
            r = int(np.argmax(gaps))
            raise NntrainError(f"{table.where(r)}: a missing value (use --missing drop to skip such rows)")
        kept += int((~gaps).sum())
        if numbers:  # numeric labels stream into y.npy; text labels are held until the end
            rows = table.select(~gaps) if gaps.any() else table
            numbers = target_values(rows.column(target_name), rows).dtype == np.float64
        found = {p.name: p for p in features}
    if plans is None or not kept:
        raise NntrainError(f"{path}: no rows to convert")
    encoder = FeatureEncoder([p.name for p in features], {n: sorted(v) for n, v in categories.items()})
    if not out.is_dir():
        make_dir(out, "creating the output folder", parents=True)
    width = len(encoder.names)
    header = _npy_header((kept, width), np.dtype(dtype))
    labels, written = [], 0
    with activity(f"converting {path}"), AtomicStream(out / "X.npy") as X_file, AtomicStream(out / "y.npy") as y_file:
        X_file.write(header)
        if numbers:
            y_file.write(_npy_header((kept,), np.dtype(np.float64)))
        for table in batches(path, delimiter, text | set(categories), rows_per_batch):
            for name in found:
                if name not in categories:
                    _numeric(table.column(name))
            gaps = _gaps(table, list(found) + [target_name])
            if gaps.any():
                table = table.select(~gaps)
                if not len(table):
                    continue
            X = encoder.encode(table)
            X_file.write(np.ascontiguousarray(X, dtype=dtype).tobytes())
            y = target_values(table.column(target_name), table)
            if not numbers:
                labels.append(y)
            elif y.dtype == np.float64:
                y_file.write(y.tobytes())
            else:
                raise NntrainError(f"{path} changed while it was converted (its labels were numbers, then text)")
            written += len(X)
        if written != kept:
            raise NntrainError(f"{path} changed while it was converted ({kept} rows, then {written})")
        if not numbers:
            y = np.concatenate(labels)
            if y.dtype == object:  # labels beyond float64's exact integers: kept as text, exactly
                y = y.astype(str)
            np.save(y_file, y, allow_pickle=False)
    info = {"source": str(path), "rows": int(kept), "features": encoder.names, "target": target_name, "dtype": dtype}
    atomic_write(out / "features.json", (json.dumps(info, indent=1) + "\n").encode(), f"converting {path}")
    return {**info, "X": str(out / "X.npy"), "y": str(out / "y.npy"), "plans": plans}


def _gaps(table: Table, names: list[str]) -> np.ndarray:
    gaps = np.zeros(len(table), dtype=bool)
    for name in names:
        gaps |= table.column(name).missing
    return gaps


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The .npy header for a C-order array of `shape` and `dtype` (its rows follow it as raw bytes)."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    return buffer.getvalue()
