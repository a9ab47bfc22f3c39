"""y <- a * x + b * y in place and in one pass over memory: BLAS's axpby, from the library numpy uses.

An optimizer's update is a few elementwise passes over every parameter, and at small batch
sizes those passes cost about as much as the matrix products: their cost is memory traffic.
NumPy has no fused multiply-add, so `v = momentum * v + g` takes two passes (`v *= momentum;
v += g`) and `p -= lr * v` two more, through a temporary. BLAS's ?axpby does each in one.

NumPy's wheels ship OpenBLAS with renamed symbols (`scipy_cblas_saxpby64_`, 64-bit integers);
they are looked up once with ctypes. Where they are not found (a numpy built against another
BLAS, a platform without that library), `Axpby` does the same arithmetic with numpy calls, so
results agree to the rounding of a fused multiply-add at most.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import numpy as np

# (symbol, integer type): numpy's bundled OpenBLAS first (ILP64, renamed), then common builds.
_SYMBOLS = (("scipy_cblas_{t}axpby64_", ctypes.c_int64), ("cblas_{t}axpby64_", ctypes.c_int64))
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
    """(C function, integer type, scalar type) of ?axpby for `dtype`, or None where there is none."""
    if np.dtype(dtype) not in _TYPES:
        return None
    letter, scalar = _TYPES[np.dtype(dtype)]
    for path in _bundled_libraries():
        try:
            library = ctypes.CDLL(str(path))
        except OSError:
            continue
        for pattern, integer in _SYMBOLS:
            function = getattr(library, pattern.format(t=letter), None)
            if function is not None:
                function.argtypes = [integer, scalar, ctypes.c_void_p, integer, scalar, ctypes.c_void_p, integer]
                function.restype = None
                return function, integer, scalar
    return None


class Axpby:
    """y <- a * x + b * y for two fixed arrays: contiguous, same size and float dtype; y is written in place.

    Bound to the arrays once (their addresses are taken here), so that each call costs little
    more than the pass itself. Without BLAS: `y *= b` (skipped for b = 1), then `y += a * x`
    through a reused temporary (`y += x` for a = 1) -- the order a plain numpy update uses.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray):
        if x.size != y.size or x.dtype != y.dtype or not (x.flags.c_contiguous and y.flags.c_contiguous):
            raise ValueError("Axpby needs two C-contiguous arrays of one size and dtype")
        self.x, self.y = x.reshape(-1), y.reshape(-1)
        found = kernel(x.dtype)
        self._blas = None
        if found is not None and x.size:
            function, _, _ = found
            n, px, py = x.size, self.x.ctypes.data, self.y.ctypes.data
            self._blas = lambda a, b: function(n, a, px, 1, b, py, 1)
        self._tmp = None

    @property
    def uses_blas(self) -> bool:
        return self._blas is not None

    def __call__(self, a: float, b: float) -> None:
        if self._blas is not None:
            self._blas(a, b)
            return
        if b != 1:
            self.y *= b
        if a == 1:
            self.y += self.x
        else:
            if self._tmp is None:
                self._tmp = np.empty_like(self.x)
            self.y += np.multiply(self.x, a, out=self._tmp)
