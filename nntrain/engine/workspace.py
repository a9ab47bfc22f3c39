"""Scratch arrays that the training loop reuses from batch to batch instead of allocating.

A layer or loss in workspace mode (its `workspace` is a dict, set by `Network.reuse_buffers`)
writes its training-time outputs and gradients into arrays it keeps here, one per name and
shape, so a batch of the same size as the previous one allocates nothing. The catch is the
contract: an array handed out in workspace mode is valid only until the same owner's next
call with the same name and shape overwrites it. Only the trainer's batch loop, which uses
each batch's outputs before the next batch starts, turns workspace mode on; everything else
(evaluation, gradcheck, predict, code calling layers directly) gets fresh arrays as always.
"""

from __future__ import annotations

import numpy as np

MAX_ARRAYS = 64  # per owner; a flood of batch sizes (never in one epoch) starts over rather than grow


def scratch(store: dict | None, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialized array of `shape` and `dtype`: the kept one in workspace mode, else a new one."""
    if store is None:
        return np.empty(shape, dtype)
    key = (name, shape)
    array = store.get(key)
    if array is None or array.dtype != dtype:
        if len(store) >= MAX_ARRAYS:
            store.clear()
        array = store[key] = np.empty(shape, dtype)
    return array


def _constant(store: dict, key: tuple, dtype, make) -> np.ndarray:
    """A read-only array made by make() once and kept in `store` under `key` (remade for another dtype)."""
    array = store.get(key)
    if array is None or (dtype is not None and array.dtype != dtype):
        if len(store) >= MAX_ARRAYS:
            store.clear()
        array = store[key] = make()
        array.flags.writeable = False
    return array


def zeros(store: dict, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A read-only array of zeros of `shape` (np.maximum against it is faster than against 0)."""
    return _constant(store, ("zeros", shape), dtype, lambda: np.zeros(shape, dtype))


def arange(store: dict | None, n: int) -> np.ndarray:
    """np.arange(n) (row indices for picking one entry per row), kept in `store` when there is one."""
    if store is None:
        return np.arange(n)
    return _constant(store, ("arange", n), None, lambda: np.arange(n))


def ones(store: dict, n: int, dtype) -> np.ndarray:
    """A read-only vector of n ones (ones @ g sums g's rows through BLAS, faster than np.sum)."""
    return _constant(store, ("ones", n), dtype, lambda: np.ones(n, dtype))
