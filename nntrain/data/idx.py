"""IDX files, the format of MNIST and Fashion-MNIST: a reader that checks everything, and a writer.

An IDX file is a 4-byte magic number -- two zero bytes, a dtype code, the number of
dimensions -- then one big-endian uint32 per dimension, then the values, big-endian, in C
order. The files are usually gzip-compressed; `read_idx` recognises gzip by its magic
bytes (1f 8b), not by the file name. Every problem (not an IDX file, unknown dtype code,
truncated payload, bytes after the payload, damaged gzip stream) is an NntrainError that
names the file and says what is wrong.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import NntrainError
from ..fileio import atomic_write

GZIP_MAGIC = b"\x1f\x8b"

# dtype code -> big-endian numpy dtype, as in the IDX specification.
DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
CODES: dict[str, int] = {dtype.newbyteorder("=").str[1:]: code for code, dtype in DTYPES.items()}  # "u1" -> 0x08
MAX_NDIM = 4
_TYPE_NAMES = "uint8, int8, int16, int32, float32, float64"


def _read_bytes(path: Path) -> tuple[bytes, bool]:
    """The file's (decompressed) content and whether it was gzip-compressed."""
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == GZIP_MAGIC
            f.seek(0)
            if not compressed:
                return f.read(), False
            try:
                with gzip.GzipFile(fileobj=f, mode="rb") as z:
                    return z.read(), True
            except EOFError:
                raise NntrainError(
                    f"{path}: the gzip stream is truncated (the file ends before the end of the compressed data;"
                    " an interrupted download?)"
                ) from None
            except (gzip.BadGzipFile, zlib.error) as e:
                raise NntrainError(f"{path}: corrupt gzip data ({e})") from None
    except FileNotFoundError:
        raise NntrainError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise NntrainError(f"{path} is a directory, not an IDX file") from None
    except OSError as e:
        raise NntrainError(f"cannot read {path}: {e}") from None


def read_idx(path) -> np.ndarray:
    """The array in an IDX file (gzip or plain): C-contiguous, native byte order, writable."""
    path = Path(path)
    data, compressed = _read_bytes(path)
    what = "gzip-compressed IDX file" if compressed else "IDX file"
    if not data:
        raise NntrainError(f"{path} is empty{' once decompressed' if compressed else ''}; expected an {what}")
    if len(data) < 4:
        raise NntrainError(f"{path} is too short for an IDX header ({len(data)} bytes; the magic number alone is 4)")
    zero1, zero2, code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0:
        hint = "" if compressed else " (if it is compressed, it is not gzip)"
        raise NntrainError(
            f"{path}: bad magic number 0x{data[:4].hex()}; an IDX file starts with two zero bytes,"
            f" a dtype code and the number of dimensions{hint}"
        )
    if code not in DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in DTYPES)
        raise NntrainError(f"{path}: unknown IDX dtype code 0x{code:02X} (known codes: {known})")
    if not 1 <= ndim <= MAX_NDIM:
        raise NntrainError(f"{path}: IDX header says {ndim} dimensions; nntrain reads 1 to {MAX_NDIM}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise NntrainError(
            f"{path}: truncated header: {ndim} dimensions need {header} header bytes, the {what} has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header
    if payload < expected:
        raise NntrainError(
            f"{path}: truncated: shape {shape} of {dtype.newbyteorder('=').name} needs {expected} bytes of data,"
            f" the {what} has {payload} (an interrupted download?)"
        )
    if payload > expected:
        raise NntrainError(
            f"{path}: {payload - expected} bytes of trailing data after the {expected} bytes that shape {shape}"
            f" of {dtype.newbyteorder('=').name} needs; the header does not match the file"
        )
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header).reshape(shape)
    return np.ascontiguousarray(array.astype(dtype.newbyteorder("="), copy=True))


def write_idx(path, array, compress: bool = True) -> None:
    """Write `array` (1 to 4 dimensions; uint8, int8, int16, int32, float32 or float64) as an IDX file.

    The write is atomic (temporary file, fsync, rename). With compress=True the file is
    gzip-compressed with a zero timestamp, so the same array always gives the same bytes.
    """
    path = Path(path)
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str[1:] if array.dtype.kind in "uif" else None
    if key not in CODES:
        raise NntrainError(f"cannot write {path}: dtype {array.dtype} has no IDX code (supported: {_TYPE_NAMES})")
    if not 1 <= array.ndim <= MAX_NDIM:
        raise NntrainError(f"cannot write {path}: an IDX array has 1 to {MAX_NDIM} dimensions, got shape {array.shape}")
    if any(n >= 2**32 for n in array.shape):
        raise NntrainError(f"cannot write {path}: dimension too large for IDX in shape {array.shape}")
    code = CODES[key]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=DTYPES[code]).tobytes()
    if compress:
        raw = gzip.compress(raw, mtime=0)
    atomic_write(path, raw)  # a refused write is a WriteError naming the file
