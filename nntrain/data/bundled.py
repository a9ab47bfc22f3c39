"""Small classic datasets shipped as gzip CSV files in the repository's datasets/ folder.

Each file has a header row; the target is the column named in `target`. Every read checks
the file's SHA-256, so a damaged or replaced file is an error, never silently other data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from .files import read_csv


def datasets_dir() -> Path:
    """Where the bundled files live: $NNTRAIN_DATASETS, else the datasets/ folder beside the package."""
    return Path(os.environ.get("NNTRAIN_DATASETS") or Path(__file__).resolve().parents[2] / "datasets")


@dataclass(frozen=True)
class BundledDataset:
    name: str
    file: str  # name of the .csv.gz in datasets_dir()
    sha256: str
    rows: int
    features: int
    task: str  # classification | regression
    target: str  # the target column's name
    description: str
    source: str
    license: str
    citation: str


BUNDLED: dict[str, BundledDataset] = {}


def read_bundled(name: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(X, y, feature names) of bundled dataset `name`, after checking the file's hash and shape."""
    info = BUNDLED[name]
    path = datasets_dir() / info.file
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        raise NntrainError(f"bundled dataset '{name}' is missing: cannot read {path} ({e})") from None
    if digest != info.sha256:
        raise NntrainError(f"bundled dataset file {path} is damaged or replaced: SHA-256 {digest}, expected {info.sha256}")
    X, y, features = read_csv(path, info.target)
    if X.shape != (info.rows, info.features):
        raise NntrainError(f"bundled dataset {path} has shape {X.shape}, expected {(info.rows, info.features)}")
    return X, y, features
