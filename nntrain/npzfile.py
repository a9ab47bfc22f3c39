"""Reading .npz and .npy files that nntrain did not necessarily write: never unpickling, every member checked.

This is the one place where nntrain decodes such files (checkpoints, splits.npz, --weights,
.npz data files, X.npy / y.npy data). Whatever the decoders raise on damaged or crafted
bytes becomes an NntrainError naming the file and the member, and `check_members` checks
what the members hold against a declared spec, so callers get either plain, well-formed
arrays or a message.
"""

from __future__ import annotations

import fnmatch
import math
import os
import stat
import struct
import tokenize
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import NntrainError

PLAIN_KINDS = "biufU"  # the dtype kinds nntrain writes and reads: booleans, numbers, Unicode text

_REFUSED = {
    "O": "Python objects",
    "c": "complex numbers",
    "V": "records or raw bytes",
    "M": "dates",
    "m": "time spans",
    "S": "byte strings (nntrain stores text as Unicode)",
}

# What zipfile, zlib and numpy's .npy header parser raise on damaged or crafted bytes (a fuzzing
# campaign met most of them). Each means the file cannot be read, none is a bug of nntrain.
# MemoryError is not among them: sizes are checked against the file before anything is allocated.
_DECODE_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    tokenize.TokenError,
    SyntaxError,
    ValueError,  # UnicodeDecodeError too
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    OverflowError,
    RuntimeError,  # NotImplementedError (compression method), encrypted members, RecursionError
    EOFError,
    OSError,
    struct.error,
)

_CHUNK = 2**20  # bytes read per call: a member is never held twice in memory, only 1 MiB of it


@contextmanager
def _decoding(what: str):
    """Turn any decoding failure inside the block into NntrainError(f"{what}: <the failure>")."""
    try:
        yield
    except _DECODE_ERRORS as e:
        name = type(e).__name__ if type(e).__module__ == "builtins" else f"{type(e).__module__}.{type(e).__name__}"
        raise NntrainError(f"{what}: {name}: {e}") from None


class NpyHeader(NamedTuple):
    """What an .npy file's header says, checked against the file (see `_read_header`)."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    offset: int  # where the data starts


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_header(f, size: int, what: str) -> NpyHeader:
    """The header of the .npy at f's position (f is left at the data), which holds `size` bytes in all.

    Checked: the magic string and a version nntrain reads (1.0, 2.0), a header numpy can parse,
    a plain dtype (PLAIN_KINDS), sizes >= 0, and exactly as many data bytes as the shape needs.
    """
    start = f.tell()
    version = np.lib.format.read_magic(f)
    if version not in _HEADER_READERS:
        raise NntrainError(f"{what}: .npy format version {version[0]}.{version[1]} is not supported (1.0, 2.0 are)")
    shape, fortran, dtype = _HEADER_READERS[version](f)
    if dtype.kind not in PLAIN_KINDS:
        problem = f"it holds {_REFUSED.get(dtype.kind, 'data of another kind')} (dtype {dtype})"
        why = ", which nntrain never unpickles" if dtype.hasobject else "; nntrain reads only real numbers and Unicode text"
        raise NntrainError(f"{what}: {problem}{why}")
    if any(n < 0 for n in shape):
        raise NntrainError(f"{what}: its header gives the shape {shape}, with a negative size")
    offset = f.tell()
    need, have = math.prod(shape) * dtype.itemsize, size - (offset - start)
    if have < need:
        raise NntrainError(f"{what}: it is truncated: the header promises {need} bytes of data (shape {shape}), there are {have}")
    if have > need:
        raise NntrainError(f"{what}: {have - need} bytes follow the {need} bytes of data its header describes")
    return NpyHeader(tuple(shape), fortran, dtype, offset)


def _read_array(f, size: int, what: str) -> np.ndarray:
    """The .npy at f's position, `size` bytes in all, read whole after `_read_header`'s checks; text valid Unicode."""
    header = _read_header(f, size, what)
    flat = np.empty(math.prod(header.shape), header.dtype)
    if flat.nbytes:
        view, done = memoryview(flat.view(np.uint8)), 0
        while done < len(view):
            n = f.readinto(view[done : done + _CHUNK])
            if not n:
                raise EOFError(f"the data ends after {done} of {len(view)} bytes")
            done += n
    f.read(1)  # reaching the end of a zip member makes zipfile check its CRC-32 (flipped bits in stored data)
    if header.dtype.kind == "U" and flat.nbytes:  # else str() raises SystemError (> U+10FFFF), printing fails (surrogates)
        codes = flat.view(np.dtype(np.uint32).newbyteorder(header.dtype.byteorder))
        bad = (codes > 0x10FFFF) | ((codes >= 0xD800) & (codes < 0xE000))
        if bad.any():
            raise NntrainError(f"{what}: its text holds U+{int(codes[bad][0]):04X}, which is not a Unicode character")
    return flat.reshape(header.shape, order="F" if header.fortran else "C")


def _existing(path) -> Path:
    """`path` as a Path when it names a regular file; NntrainError naming it otherwise.

    A path the system refuses to look up (a name too long, a loop of links) is an error that
    says so, never an OSError.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise NntrainError(f"'{path}' does not exist") from None
    except OSError as e:
        raise NntrainError(f"'{path}': {e.strerror or e}") from None
    except ValueError as e:  # an embedded NUL character
        raise NntrainError(f"'{path}' is not a valid path: {e}") from None
    if not stat.S_ISREG(mode):
        raise NntrainError(f"'{path}' is not a file")
    return path


def load_npz(path, members=None) -> dict[str, np.ndarray]:
    """The arrays of an .npz by name (all, or only the names in `members`), each read whole.

    Checked: the file is a zip archive whose members are all `<name>.npy`, each name once; every
    member read passes `_read_header`'s checks and decodes whole (CRC included, text valid
    Unicode). Nothing is ever unpickled. Any failure is an NntrainError naming the file and member.
    """
    path = _existing(path)
    if not zipfile.is_zipfile(path):
        raise NntrainError(f"'{path}' is not an .npz file (not a zip archive: truncated, or another format)")
    arrays, seen = {}, set()
    with _decoding(f"'{path}' is not a readable .npz"), zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            what = f"'{path}' is not a readable .npz of plain arrays (member '{info.filename}')"
            if name == info.filename:
                raise NntrainError(f"{what}: not an .npy array")
            if name in seen:
                raise NntrainError(f"{what}: it appears twice")
            seen.add(name)
            if members is None or name in members:
                with _decoding(what), archive.open(info) as f:
                    arrays[name] = _read_array(f, info.file_size, what)
    return arrays


def load_npy(path) -> np.ndarray:
    """The array of an .npy file, read whole; checked as each member of `load_npz`."""
    path = _existing(path)
    what = f"'{path}' is not a readable .npy array"
    with _decoding(what), open(path, "rb") as f:
        return _read_array(f, os.fstat(f.fileno()).st_size, what)


def npy_header(path) -> NpyHeader:
    """The checked header of an .npy file (see `_read_header`), for reading its rows later."""
    path = _existing(path)
    what = f"'{path}' is not a readable .npy array"
    with _decoding(what), open(path, "rb") as f:
        return _read_header(f, os.fstat(f.fileno()).st_size, what)


# --- what the members must hold -------------------------------------------------------------


_VALUES = {  # values rule -> (which values pass, what they must be)
    "any": (None, ""),
    "finite": (np.isfinite, "finite"),
    "nonnegative": (lambda a: np.isfinite(a) & (a >= 0), "a finite number >= 0"),
    "positive": (lambda a: np.isfinite(a) & (a > 0), "a finite number > 0"),
    # Counters (epochs, steps): far below int64's overflow when incremented, and exact as floats.
    "count": (lambda a: (a >= 0) & (a <= MAX_COUNT), "an integer from 0 to 2**53"),
}
MAX_COUNT = 2**53

_KIND_WORDS = {"f": "float", "iu": "integer", "biuf": "numeric", "biufU": "numeric or text", "U": "text"}


@dataclass(frozen=True)
class Member:
    """What one member of a file (or every member a glob pattern matches) must be.

    kinds: the dtype kinds allowed ("f" floats, "iu" integers, "biuf" numbers, "U" text).
    shape: a tuple with one rule per axis, a list of such tuples (any one may fit), or None (any
      shape). A rule is an int (that size), None (any size) or a name: every member using the
      name must have the same size there (e.g. scale offsets, factors and feature names).
    required: the member must be there.
    values: "any", "finite", "nonnegative", "positive" or "count" (see _VALUES); not checked for text.
    """

    kinds: str
    shape: tuple | list[tuple] | None = ()
    required: bool = False
    values: str = "any"

    def describe(self) -> str:
        """E.g. 'a 2-D numeric array', 'an integer scalar', 'a 1-D integer array of shape (2,)'."""
        kind = _KIND_WORDS.get(self.kinds, f"dtype kind {self.kinds!r}")
        shapes = self.shape if isinstance(self.shape, list) else [self.shape]
        if self.shape is None:
            text = f"{kind} array"
        elif shapes == [()]:
            text = f"{kind} scalar"
        else:
            fixed = [s for s in shapes if any(isinstance(n, int) for n in s)]
            dims = [len(s) for s in shapes]
            if len(dims) > 2 and dims == list(range(dims[0], dims[0] + len(dims))):
                axes = f"{dims[0]}-D to {dims[-1]}-D"
            else:
                axes = " or ".join(f"{d}-D" for d in dims)
            text = f"{axes} {kind} array" + (f" of shape {fixed[0]}" if fixed else "")
        return ("an " if text[0] in "aeiou" else "a ") + text


def _and(names) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def check_members(
    path, arrays: dict, spec: dict[str, Member], closed: bool = False, sizes: dict | None = None
) -> dict[str, int]:
    """Check the arrays read from `path` against `spec` ({name or glob pattern: Member}; a name takes
    the first entry that matches it). Arrays may also be NpyHeaders (shape and dtype only).

    Checked: every required member is there; each member's dtype kind, shape and values; named
    sizes agree across members (and with `sizes`, {name: (size, where it comes from)}); with
    `closed`, that no member is outside the spec. Returns the named sizes found.
    """
    missing = [k for k, m in spec.items() if m.required and k not in arrays]
    if missing:
        required = [k for k, m in spec.items() if m.required]
        raise NntrainError(f"'{path}' is incomplete: it has no {_and(missing)}; it needs {_and(required)}")
    bound = dict(sizes or {})
    for key, a in arrays.items():
        member = next((m for pattern, m in spec.items() if fnmatch.fnmatchcase(key, pattern)), None)
        if member is None:
            if closed:
                raise NntrainError(f"'{path}' has a member '{key}', which is not one nntrain writes")
            continue
        _check(path, key, a, member, bound)
    return {name: size for name, (size, _) in bound.items()}


def _check(path, key: str, a, member: Member, bound: dict) -> None:
    """One member against its Member; named sizes seen first are recorded in `bound`."""
    shapes = None if member.shape is None else member.shape if isinstance(member.shape, list) else [member.shape]
    fixed_fit = lambda s: len(s) == len(a.shape) and all(not isinstance(n, int) or n == m for n, m in zip(s, a.shape))
    fits = [s for s in shapes or [] if fixed_fit(s)]
    if a.dtype.kind not in member.kinds or (shapes is not None and not fits):
        raise NntrainError(f"'{path}': {key} must be {member.describe()}, got shape {a.shape} dtype {a.dtype}")
    for rule, size in zip(fits[0] if fits else (), a.shape):
        if isinstance(rule, str):
            if rule in bound and bound[rule][0] != size:
                raise NntrainError(f"'{path}': {bound[rule][1]} has {bound[rule][0]} {rule} but {key} has {size}")
            bound.setdefault(rule, (size, key))
    passes, must = _VALUES[member.values]
    if passes is not None and isinstance(a, np.ndarray) and a.dtype.kind in "biuf":
        ok = passes(a)
        if not ok.all():
            if a.ndim == 0:
                raise NntrainError(f"'{path}': {key} is {a.item()}; it must be {must}")
            index = tuple(int(i) for i in np.unravel_index(int(np.argmin(ok)), a.shape))
            where = index[0] if a.ndim == 1 else index
            raise NntrainError(f"'{path}': {key} holds {a[index]} at index {where}; every value must be {must}")
