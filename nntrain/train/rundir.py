"""The run directory: config.yaml, metrics.csv, summary.json, splits.npz and atomic checkpoints.

A run directory is created once and never written into again except by `--resume`.
Every write goes through nntrain.fileio: files that replace an older version (checkpoints,
summary) are written atomically (a temporary file, fsynced, renamed over the old one, the
directory fsynced), so a crash leaves either the old file or the new one, never a torn one;
metrics.csv is an append-only LineLog whose rows of an epoch that could not be checkpointed
are rolled back. A refused write is a WriteError naming the file.
Checkpoints are plain .npz files, read with allow_pickle=False.
"""

from __future__ import annotations

import csv
import errno
import io
import itertools
import json
import os
import re
import shutil
import stat
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import NntrainError, WriteError, shorten
from ..fileio import LineLog, atomic_write, fsync_dir, make_dir, read_text, remove_temp_files, temp_path


def save_npz(path: Path, arrays: dict[str, np.ndarray], what: str | None = None) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue(), what)


def text_array(text: str) -> np.ndarray:
    """A string as a 0-d unicode array: stored in .npz without pickle."""
    return np.array(text, dtype=np.str_)


def new_directory(root: Path, stem: str, path: Path | None, what: str, hint: str = "", fill=None) -> Path:
    """Create `path` (refused if it exists), or root/<stem>-<YYYYmmdd-HHMMSS>, with -2, -3, ... when taken.

    With `fill`, the directory is made under a temporary name beside it, `fill(folder)` writes its
    first files there, and it is then renamed into place: a kill leaves no directory or a complete
    one (a run directory always has its config.yaml). WriteError (exit 74, or 2 for a wrong path)
    when it cannot be created.
    """
    given = path is not None
    if given:
        candidates = iter([Path(path)])
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        candidates = (Path(root) / (f"{stem}-{stamp}" + (f"-{n}" if n > 1 else "")) for n in itertools.count(1))
    for path in candidates:
        if os.path.exists(path):  # os.path's exists is False for a path the system refuses (a name too long)
            if given:
                raise NntrainError(f"{what} '{path}' already exists{hint}")
            continue  # two started in the same second
        if fill is None:
            try:
                make_dir(path, f"creating the {what}", parents=True)
            except FileExistsError:
                raise NntrainError(f"{what} '{path}' already exists{hint}") from None
            return path
        if _fill_and_rename(path, fill, what):
            return path
        if given:
            raise NntrainError(f"{what} '{path}' already exists{hint}")


def _fill_and_rename(path: Path, fill, what: str) -> bool:
    """Build `path` as a temporary folder beside it and rename it into place; False when `path` appeared meanwhile."""
    try:
        make_dir(path.parent, f"creating the {what}", parents=True)
    except FileExistsError:
        pass
    folder = temp_path(path)
    make_dir(folder, f"creating the {what}")
    try:
        fill(folder)
        try:
            os.rename(folder, path)
        except OSError as e:
            if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise WriteError(path, e, f"creating the {what}") from None
    finally:
        if os.path.isdir(folder):  # not renamed: a failed write or a name taken meanwhile
            shutil.rmtree(folder, ignore_errors=True)
    fsync_dir(path.parent)
    return True


class RunDir:
    """Paths and writers of one run directory."""

    def __init__(self, path: Path):
        self.path = Path(path)

    config_file = property(lambda self: self.path / "config.yaml")
    metrics_file = property(lambda self: self.path / "metrics.csv")
    summary_file = property(lambda self: self.path / "summary.json")
    splits_file = property(lambda self: self.path / "splits.npz")
    checkpoints = property(lambda self: self.path / "checkpoints")

    @classmethod
    def create(cls, root: Path, name: str, path: Path | None, config_text: bytes) -> "RunDir":
        """A new directory holding config.yaml and checkpoints/: `path` if given (refused if it exists),
        else root/<name>-<YYYYmmdd-HHMMSS>. It appears complete or not at all (see new_directory)."""

        def fill(folder: Path) -> None:
            make_dir(folder / "checkpoints", "creating the run directory")
            atomic_write(folder / "config.yaml", config_text, "writing the run's config")

        return cls(new_directory(root, name, path, "run directory", "; nntrain never writes into an old run", fill))

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        """An existing run directory (one with a config.yaml); NntrainError naming `path` otherwise.

        A path the system refuses to look up (a name too long) is an NntrainError too, not an OSError.
        """
        run = cls(path)
        try:
            mode = os.stat(run.config_file).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        except OSError as e:
            raise NntrainError(f"'{path}': {e.strerror or e}") from None
        except ValueError as e:  # an embedded NUL character
            raise NntrainError(f"'{path}' is not a valid path: {e}") from None
        if mode is None or not stat.S_ISREG(mode):
            raise NntrainError(f"'{path}' is not a run directory (no config.yaml)")
        return run

    def checkpoint(self, which: str) -> Path:
        """'last', 'best', or a path to a .npz."""
        if which in ("last", "best"):
            return self.checkpoints / f"{which}.npz"
        return Path(which)

    def epoch_checkpoint(self, epoch: int) -> Path:
        return self.checkpoints / f"epoch-{epoch:04d}.npz"

    def checkpoint_files(self) -> list[Path]:
        return sorted(p for p in self.checkpoints.glob("*.npz") if re.fullmatch(r"last|best|epoch-\d+", p.stem))

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.summary_file, (json.dumps(summary, indent=2) + "\n").encode(), "writing the summary")

    def remove_temp_files(self) -> list[Path]:
        """Delete the temporary files of writes a kill cut short (.NAME.tmp-PID); only a resume calls this."""
        return remove_temp_files(self.path) + remove_temp_files(self.checkpoints)


class MetricsLog:
    """metrics.csv, one row per epoch, appended unbuffered so a killed run keeps its history.

    `write(row)` appends a row; `commit()` after the epoch's last.npz is written; `rollback()`
    drops the rows written since (their epoch has no checkpoint). Resuming (`keep_until`: the
    checkpoint's epoch) keeps the rows up to that epoch and drops later or torn ones.
    """

    def __init__(self, path: Path, columns: list[str], keep_until: int | None = None):
        self.path, self.columns = Path(path), columns
        rows = []
        if keep_until is not None and self.path.exists():
            # Resuming: drop rows after the checkpoint's epoch (written before a crash).
            rows = [r for r in read_metrics(self.path, columns) if int(r["epoch"]) <= keep_until]
        self.file = LineLog(self.path, csv_text(columns, rows, header=True))

    def write(self, row: dict) -> None:
        self.file.append(csv_text(self.columns, [{k: _fmt(v) for k, v in row.items()}]),
                         f"writing the metrics of epoch {row.get('epoch')}")  # fmt: skip

    def sync(self) -> None:
        self.file.sync("writing the metrics")

    def commit(self) -> None:
        self.file.commit()

    def rollback(self) -> None:
        self.file.rollback()

    def close(self) -> None:
        self.file.close()


def csv_text(columns: list[str], rows: list[dict], header: bool = False) -> str:
    """Rows as CSV text in `columns` order (other keys ignored), with the header line first if asked."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def read_csv(path: Path, what: str) -> tuple[list[str] | None, list[dict]]:
    """(header, rows) of a CSV file nntrain wrote into a run; NntrainError naming it when it cannot be read."""
    text = read_text(path, what)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return reader.fieldnames, list(reader)
    except csv.Error as e:
        raise NntrainError(f"cannot read {what} '{path}': {e}") from None


def read_summary(path: Path) -> dict | None:
    """A run's summary.json, or None when it has none yet (training has not ended once).

    NntrainError (exit 2) naming the file when it cannot be read or is not a JSON object.
    """
    if not os.path.lexists(path):
        return None
    try:
        summary = json.loads(read_text(path, "the run summary"))
    except ValueError as e:
        raise NntrainError(f"cannot read the run summary '{path}': {e}") from None
    if not isinstance(summary, dict):
        raise NntrainError(f"'{path}' is not a run summary (not a JSON object)")
    return summary


def metric_value(text) -> float | None:
    """A cell of metrics.csv as a number, None when it is empty or not one."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def refuse_inside_run(path: Path, runs, flag: str) -> None:
    """NntrainError when `path` would be written inside one of the run directories `runs` (or is one):
    a run directory holds what training wrote, nothing else."""
    target = Path(os.path.realpath(path))
    for run in runs:
        root = Path(os.path.realpath(run))
        if target == root or root in target.parents:
            raise NntrainError(f"'{path}' is inside the run directory {run}, which only training writes into; choose another {flag}")


def read_metrics(path: Path, columns: list[str] | None = None) -> list[dict]:
    """The complete rows of metrics.csv (a torn last line is skipped), as strings.

    With `columns`, a header that differs from them is an error (the file is not this run's).
    NntrainError (exit 2) naming the file when it cannot be read or is not UTF-8 CSV.
    """
    fields, rows = read_csv(path, "the metrics file")
    if fields is None:  # an empty file: no rows
        return []
    if columns is not None and list(fields) != list(columns):
        raise NntrainError(
            f"'{path}' is not this run's metrics file (columns {shorten(','.join(fields), 120)}, expected {shorten(','.join(columns), 120)});"
            " move it away to resume without the earlier rows"
        )
    return [
        r
        for r in rows
        if None not in r and all(v is not None for v in r.values()) and (r.get("epoch") or "").isdigit()
    ]

