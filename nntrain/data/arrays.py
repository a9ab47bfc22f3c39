"""Feature matrices that stay on disk: .npy files read row by row, and several files as one.

Both support what training needs of X: `shape`, `len()`, and `X[rows]` for an index array,
which returns the rows as an in-memory array in the order asked.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from ..npzfile import Member, check_members, npy_header
from .shapes import ARRAY_NDIMS, sample_shape_of

# X of a data file: rows of features, or of images with or without a channel axis (see `shapes`).
X_MEMBER = Member("biuf", [("rows", *[None] * (n - 1)) for n in ARRAY_NDIMS], required=True)


class DiskRows:
    """An .npy file left on disk as rows; X[rows] reads just those rows (os.pread) into memory.

    The file holds X of shape (N, features), (N, height, width) or (N, channels, height, width);
    `shape` is always the rows' (N, prod(sample_shape)), and `sample_shape` what one sample is
    (`shapes.sample_shape_of`). A sample's numbers lie together in a C-order file, so a row is
    one run of bytes whatever the shape.

    Reading rows explicitly, instead of through a memory map, keeps the process's memory
    bounded by what is asked for: a mapped file's pages count towards resident memory once
    touched (and the kernel maps 64 KiB around every random row), so a shuffled epoch over
    a mapped file ends up holding the whole file.
    """

    def __init__(self, path: Path):
        header = npy_header(path)
        check_members(path, {"X": header}, {"X": X_MEMBER})
        shape, dtype = header.shape, header.dtype
        # Fortran order lays the bytes out as C order only when at most one axis has more than one entry.
        if header.fortran and sum(n > 1 for n in shape) > 1:
            raise NntrainError(f"{path} is stored column by column (Fortran order); save it with np.save(np.ascontiguousarray(X))")
        self.sample_shape = sample_shape_of(shape)
        self.path, self.dtype, self.offset = Path(path), dtype, header.offset
        self.shape = (shape[0], math.prod(shape[1:]))
        self.row_bytes = dtype.itemsize * self.shape[1]
        self.fd = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(len(self))[rows] if not isinstance(rows, np.ndarray) else rows
        if self.fd is None:
            self.fd = os.open(self.path, os.O_RDONLY)
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        # Runs of consecutive rows are read with one call each; the rows land sorted, then go back in order.
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        for first, last in zip(np.r_[0, breaks], np.r_[breaks, len(wanted)]):
            view = memoryview(out[first:last]).cast("B")
            done = os.preadv(self.fd, [view], self.offset + int(wanted[first]) * self.row_bytes)
            if done != len(view):
                raise NntrainError(f"{self.path}: could not read rows {wanted[first]}..{wanted[last - 1]} (file changed?)")
        if not self.dtype.isnative:
            out = out.astype(self.dtype.newbyteorder("="))
        result = np.empty_like(out)
        result[order] = out
        return result

    def __del__(self):
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)


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
