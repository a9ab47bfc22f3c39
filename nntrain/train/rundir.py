"""The run directory: config.yaml, metrics.csv, summary.json, splits.npz and atomic checkpoints.

A run directory is created once and never written into again except by `--resume`.
Every file that replaces an older version (checkpoints, summary) is written to a
temporary file in the same directory, flushed, fsynced, renamed over the old one and the
directory fsynced, so a crash leaves either the old file or the new one, never a torn one.
Checkpoints are plain .npz files, read with allow_pickle=False.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from ..fileio import atomic_write
from ..npzfile import load_npz  # noqa: F401 - where checkpoints and splits are read


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def text_array(text: str) -> np.ndarray:
    """A string as a 0-d unicode array: stored in .npz without pickle."""
    return np.array(text, dtype=np.str_)


def new_directory(root: Path, stem: str, path: Path | None, what: str, hint: str = "") -> Path:
    """Create `path` (refused if it exists), or root/<stem>-<YYYYmmdd-HHMMSS>, with -2, -3, ... when taken."""
    if path is not None:
        path = Path(path)
        if path.exists():
            raise NntrainError(f"{what} '{path}' already exists{hint}")
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(root) / f"{stem}-{stamp}"
        n = 2
        while path.exists():  # two started in the same second
            path = Path(root) / f"{stem}-{stamp}-{n}"
            n += 1
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise NntrainError(f"{what} '{path}' already exists{hint}") from None
    except OSError as e:
        raise NntrainError(f"cannot create {what} '{path}': {e}") from None
    return path


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
    def create(cls, root: Path, name: str, path: Path | None = None) -> "RunDir":
        """A new directory: `path` if given (refused if it exists), else root/<name>-<YYYYmmdd-HHMMSS>."""
        path = new_directory(root, name, path, "run directory", "; nntrain never writes into an old run")
        (path / "checkpoints").mkdir()
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        run = cls(path)
        if not run.config_file.is_file():
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
        atomic_write(self.summary_file, (json.dumps(summary, indent=2) + "\n").encode())


class MetricsLog:
    """metrics.csv, one row per epoch, flushed as written so a killed run keeps its history."""

    def __init__(self, path: Path, columns: list[str], keep_until: int | None = None):
        self.path, self.columns = Path(path), columns
        rows = []
        if keep_until is not None and self.path.exists():
            # Resuming: drop rows after the checkpoint's epoch (written before a crash).
            rows = [r for r in read_metrics(self.path) if r.get("epoch", "").isdigit() and int(r["epoch"]) <= keep_until]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path, text.getvalue().encode())
        self.file = open(self.path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=columns, extrasaction="ignore")

    def write(self, row: dict) -> None:
        self.writer.writerow({k: _fmt(v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def read_metrics(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
