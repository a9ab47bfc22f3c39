"""y <- a * x + b * y in place, without temporaries: BLAS's scal and axpy, from the library numpy uses.

An optimizer's update is a few elementwise passes over every parameter, and at small batch
sizes those passes cost about as much as the matrix products: their cost is memory traffic.
NumPy has no fused multiply-add, so `p -= lr * v` takes two passes through a temporary
(`lr * v`, then the subtraction); BLAS's axpy (y <- a x + y) takes one. OpenBLAS also splits
scal (y <- b y) and axpy over its threads for long vectors, where a numpy ufunc runs on one core.

NumPy's wheels ship OpenBLAS with renamed symbols (`scipy_cblas_saxpy64_`, 64-bit integers);
they are looked up once with ctypes. Where they are not found (a numpy built against another
BLAS, a platform without that library), `axpby` does the same operations in the same order
with numpy calls, so results agree to the rounding of a fused multiply-add at most.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

# Symbol prefixes, tried in order: numpy's bundled OpenBLAS (ILP64, renamed), then a plain ILP64 build.
_PREFIXES = ("scipy_cblas_", "cblas_")
_TYPES = {np.dtype(np.float32): ("s", ctypes.c_float), np.dtype(np.float64): ("d", ctypes.c_double)}


def _bundled_libraries() -> list[Path]:
    """The BLAS libraries inside numpy's installation (numpy.libs on Linux and Windows, .dylibs on macOS)."""
    root = Path(np.__file__).resolve().parent
    found = []
    for folder in (root.parent / "numpy.libs", root / ".dylibs"):
        if folder.is_dir():
            found += sorted(p for p in folder.iterdir() if "openblas" in p.name.lower())
    return found


@functools.cache
def kernel(dtype) -> tuple | None:
    """(scal, axpy) C functions for `dtype` (64-bit integer arguments), or None where there are none."""
    if np.dtype(dtype) not in _TYPES:
        return None
    letter, scalar = _TYPES[np.dtype(dtype)]
    integer, pointer = ctypes.c_int64, ctypes.c_void_p
    for path in _bundled_libraries():
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        for prefix in _PREFIXES:
            scal = getattr(library, f"{prefix}{letter}scal64_", None)
            axpy = getattr(library, f"{prefix}{letter}axpy64_", None)
            if scal is not None and axpy is not None:
                scal.argtypes = [integer, scalar, pointer, integer]
                axpy.argtypes = [integer, scalar, pointer, integer, pointer, integer]
                scal.restype = axpy.restype = None
                return scal, axpy
    return None


# id -> (the array, kept alive so that the id stays its, its address). A packed optimizer step
# passes three arrays (gradients, values, a slot); the bound keeps at most a few temporaries alive.
_ADDRESSES: dict[int, tuple[np.ndarray, int]] = {}
ADDRESSES_KEPT = 8


def _address(a: np.ndarray) -> int:
    """a's data address, looked up once per array: an optimizer passes the same flat arrays every step,
    and `a.ctypes.data` costs about a microsecond a call."""
    known = _ADDRESSES.get(id(a))
    if known is not None and known[0] is a:
        return known[1]
    if not a.flags.c_contiguous:
        raise ValueError("axpby needs C-contiguous arrays")
    if len(_ADDRESSES) >= ADDRESSES_KEPT:
        _ADDRESSES.clear()
    _ADDRESSES[id(a)] = (a, a.ctypes.data)
    return _ADDRESSES[id(a)][1]


def axpby(a: float, x: np.ndarray, b: float, y: np.ndarray) -> None:
    """y <- a * x + b * y in place, for C-contiguous arrays of one size and float dtype.

    Computed as `y *= b` (skipped for b = 1), then `y += a * x`: by BLAS's scal and axpy where
    they are found (OpenBLAS spreads both over its threads; its one-pass axpby extension, single
    threaded, measured slower in an optimizer step: 127 against 110 us for 235k floats), else by
    numpy in the same order (rounding may differ by a fused multiply-add).
    """
    if x.size != y.size or x.dtype != y.dtype:
        raise ValueError("axpby needs two C-contiguous arrays of one size and dtype")
    found = kernel(x.dtype)
    if found is not None and x.size:
        scal, axpy = found
        n, px, py = x.size, _address(x), _address(y)
        if b != 1:
            scal(n, b, py, 1)
        axpy(n, a, px, 1, py, 1)
        return
    if not (x.flags.c_contiguous and y.flags.c_contiguous):
        raise ValueError("axpby needs two C-contiguous arrays of one size and dtype")
    if b != 1:
        y *= b
    y += x if a == 1 else x * a
