"""Where the engine's speed machinery lives: reused arrays, packed parameters.

Layers and losses have one code path: they ask the arena for the arrays they write their
results into (`Arena.empty`) and for read-only constants (`ones`, `zero`, `arange`). Outside
a training step every `empty` is a new array, so evaluation, gradcheck, predict and code that
calls a layer directly keep what they are given. Inside one (`Network.loss_and_grad` while
`Network.reuse_arrays` is on: the trainer's batch loop) the arena hands back the array it
handed out for the same owner, name, shape and dtype the step before, so a batch of the same
size as the previous one allocates nothing. The price is the contract: such an array is valid
until the next training step overwrites it, which the batch loop respects (it uses each
batch's outputs before the next batch starts).

`pack_parameters` makes every parameter (and every gradient) a view of one flat array, so an
optimizer updates them all with one call per operation (`contiguous_views`).
"""

from __future__ import annotations

import math

import numpy as np

MAX_ARRAYS = 512
ZERO_ARRAY_MAX = 2**17  # a flood of batch sizes (never within one epoch) starts over rather than grow


class Arena:
    """Arrays handed out by owner, name, shape and dtype; reused only while `reusing` is on."""

    def __init__(self):
        self.reusing = False
        self._arrays: dict[tuple, np.ndarray] = {}
        self._constants: dict[tuple, np.ndarray] = {}

    def empty(self, owner, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """An uninitialized array: the one kept for (owner, name, shape, dtype) in a training step, else new."""
        if not self.reusing:
            return np.empty(shape, dtype)
        key = (id(owner), name, shape, dtype)
        array = self._arrays.get(key)
        if array is None:
            if len(self._arrays) >= MAX_ARRAYS:
                self._arrays.clear()
            array = self._arrays[key] = np.empty(shape, dtype)
        return array

    @property
    def kept(self) -> list[np.ndarray]:
        """The arrays kept for reuse now."""
        return list(self._arrays.values())

    def clear(self) -> None:
        """Drop the kept arrays (the constants stay: they are small and never written)."""
        self._arrays.clear()

    def _constant(self, key: tuple, make) -> np.ndarray:
        array = self._constants.get(key)
        if array is None:
            if len(self._constants) >= MAX_ARRAYS:
                self._constants.clear()
            array = self._constants[key] = make()
            array.flags.writeable = False
        return array

    def ones(self, n: int, dtype) -> np.ndarray:
        """A read-only vector of n ones (ones @ g sums g's rows through BLAS, faster than np.sum)."""
        return self._constant(("ones", n, np.dtype(dtype)), lambda: np.ones(n, dtype))

    def zero(self, shape: tuple[int, ...], dtype):
        """A zero for np.maximum(x, zero) (relu): a read-only array of zeros for arrays up to
        ZERO_ARRAY_MAX elements, where numpy's loop is faster against an array (1.6 against 2.8 us
        for 32 x 256 floats), the scalar 0 beyond, where reading a second array costs more (159
        against 223 us for 128 x 6 x 24 x 24; measured on 2 cores)."""
        if math.prod(shape) > ZERO_ARRAY_MAX:
            return np.dtype(dtype).type(0)
        return self._constant(("zeros", shape, np.dtype(dtype)), lambda: np.zeros(shape, dtype))

    def arange(self, n: int) -> np.ndarray:
        """np.arange(n), read-only (row indices for picking one entry per row)."""
        return self._constant(("arange", n), lambda: np.arange(n))


FRESH = Arena()  # the arena of a layer or loss outside a Network: never reuses, shares its constants


def pack_parameters(owners) -> None:
    """Make the owners' parameters consecutive views of one flat array, and their gradients of another.

    `owners`: objects with `params` and `grads` dicts (layers), in the order of `Network.params`.
    The values are copied, the dicts then hold the views, and nothing else changes: every
    parameter is still its own C-contiguous array, updated in place as before. Parameters of
    different dtypes are left as they are.
    """
    entries = [(owner, name) for owner in owners for name in owner.params]
    if not entries:
        return
    dtypes = {o.params[n].dtype for o, n in entries} | {o.grads[n].dtype for o, n in entries}
    if len(dtypes) != 1:
        return
    dtype = dtypes.pop()
    total = sum(o.params[n].size for o, n in entries)
    values, grads = np.empty(total, dtype), np.zeros(total, dtype)
    offset = 0
    for owner, name in entries:
        for flat, store in ((values, owner.params), (grads, owner.grads)):
            view = flat[offset : offset + store[name].size].reshape(store[name].shape)
            view[...] = store[name]
            store[name] = view
        offset += owner.params[name].size


def contiguous_views(arrays) -> np.ndarray | None:
    """The 1-D array that `arrays` tile in order (each a C-contiguous view, back to back), or None."""
    if not arrays:
        return None
    base = arrays[0].base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start = base.__array_interface__["data"][0]
    first = position = arrays[0].__array_interface__["data"][0]
    for a in arrays:
        if a.base is not base or a.dtype != base.dtype or not a.flags.c_contiguous:
            return None
        if a.__array_interface__["data"][0] != position:
            return None
        position += a.nbytes
    begin = (first - start) // base.itemsize
    return base[begin : begin + (position - first) // base.itemsize]
