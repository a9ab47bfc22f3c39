"""Feature matrices that stay on disk: .npy files read batch by batch, and several files as one.

Both support what training needs of X: `shape`, `len()`, and `X[rows]` for an index array,
which returns the rows as an in-memory array in the order asked.
"""

from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np

from ..errors import NntrainError

# Pages of a mapped file count towards the process's resident memory once read; after this
# many bytes the reader tells the kernel it does not need them, so memory stays bounded by
# the batch, not the file. (They remain in the page cache: a second epoch is still fast.)
RELEASE_EVERY = 256 * 2**20


class DiskRows:
    """A 2-D .npy file memory-mapped read-only; X[rows] gathers rows into memory."""

    def __init__(self, path: Path):
        try:
            self.array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise NntrainError(f"{path} is not a readable .npy array ({e})") from None
        if self.array.ndim != 2 or self.array.dtype.kind not in "biuf":
            raise NntrainError(f"{path}: X must be a 2-D numeric array, got shape {self.array.shape} {self.array.dtype}")
        self.path = path
        self.unreleased = 0

    shape = property(lambda self: self.array.shape)
    dtype = property(lambda self: self.array.dtype)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, rows) -> np.ndarray:
        out = np.asarray(self.array[rows])
        self.unreleased += out.nbytes
        if self.unreleased > RELEASE_EVERY:
            self.release()
        return out

    def release(self) -> None:
        """Drop this process's mapped pages (Linux / macOS; elsewhere a no-op)."""
        self.unreleased = 0
        mapped = getattr(self.array, "_mmap", None)
        if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
            mapped.madvise(mmap.MADV_DONTNEED)


class StackedRows:
    """Several row blocks (arrays or DiskRows) with the same width, indexed as one matrix."""

    def __init__(self, blocks: list):
        self.blocks = blocks
        self.starts = np.cumsum([0] + [len(b) for b in blocks])
        widths = {b.shape[1] for b in blocks}
        if len(widths) != 1:
            raise NntrainError(f"the data files have different numbers of features: {sorted(widths)}")
        self.shape = (int(self.starts[-1]), widths.pop())
        self.dtype = np.result_type(*(b.dtype for b in blocks))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(len(self))[rows] if not isinstance(rows, np.ndarray) else rows
        block = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for b in np.unique(block):
            mine = block == b
            out[mine] = self.blocks[b][rows[mine] - self.starts[b]]
        return out


def stack(blocks: list):
    """One matrix of `blocks`: concatenated when all are in memory, else a StackedRows view."""
    widths = sorted({b.shape[1] for b in blocks})
    if len(widths) > 1:
        raise NntrainError(f"the data files have different numbers of features: {widths}")
    if all(isinstance(b, np.ndarray) for b in blocks):
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    return blocks[0] if len(blocks) == 1 else StackedRows(blocks)


def in_memory(X) -> bool:
    return isinstance(X, np.ndarray)
