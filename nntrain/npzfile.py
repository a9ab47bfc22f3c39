"""Reading .npz and .npy files that nntrain did not necessarily write: never unpickling, every member checked."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import NntrainError


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an .npz, never unpickling; NntrainError if the file is missing or unreadable."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise NntrainError(f"'{path}' is not an .npz file (not a zip archive: truncated, or another format)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise NntrainError(f"'{path}' does not exist") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise NntrainError(f"'{path}' is not a readable checkpoint ({type(e).__name__}: {e})") from None
